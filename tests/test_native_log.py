"""pipelines.native_log: TensorFlow's GPU-probing chatter is dropped, every other line of
descriptor 2 still reaches the terminal, even from a child process or a crashing one."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pipelines import native_log

REPO = Path(__file__).resolve().parents[1]
NOISE_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796306004.634410   31207 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.\n",
    b"E0000 00:00:1796306018.327866   31207 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n",
]


def _run(script: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_the_filter_drops_noise_lines_and_passes_everything_else(tmp_path):
    source = tmp_path / "in"
    source.write_bytes(b"".join(NOISE_LINES) + b"E0000 real.cc:1] a real native error\n"
                       + b"\rtraining 50%" + NOISE_LINES[2] + b"last words, no newline")
    sink = io.BytesIO()
    with source.open("rb") as f:
        native_log.filter_stream(f, sink)
    assert sink.getvalue() == (b"E0000 real.cc:1] a real native error\n\rtraining 50%"
                               b"last words, no newline")


def test_installed_filter_keeps_real_output_of_the_process_its_children_and_a_crash():
    noise = ", ".join(repr(line) for line in NOISE_LINES)
    result = _run(f"""
        import os, subprocess, sys
        from pipelines import native_log
        assert native_log.install()
        for line in ({noise}):
            os.write(2, line)
        os.write(2, b"E0000 native.cc:1] a real native error\\n")
        print("from python", file=sys.stderr)
        subprocess.run(["sh", "-c", "echo from a child >&2; printf %s {NOISE_LINES[1].decode()!r} >&2"])
        os.write(2, b"F0000 check.cc:9] Check failed: the last words\\n")
        os.abort()
    """)
    assert result.returncode != 0
    err = result.stderr.decode()
    for expected in ("a real native error", "from python", "from a child", "the last words"):
        assert expected in err
    assert "cuInit" not in err and "cuda drivers" not in err and "absl::InitializeLog" not in err


def test_the_switch_turns_the_filter_off():
    result = _run("""
        import os
        from pipelines import native_log
        print(native_log.install())
        os.write(2, b"E0000 x.cc:1] failed call to cuInit: shown on request\\n")
    """, env={native_log.ENV_SWITCH: "1"})
    assert result.stdout.decode().strip() == "False"
    assert "shown on request" in result.stderr.decode()


def test_tensorflow_on_a_machine_without_a_gpu_prints_no_cuda_errors():
    """The real thing: TensorFlow probing for a GPU (on a CPU-only machine it prints the cuInit
    failure) under the filter, as every `opinionrec` command runs."""
    result = _run("""
        from pipelines import native_log
        native_log.install()
        import tensorflow as tf
        print(len(tf.config.list_physical_devices("CPU")))
    """)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    err = result.stderr.decode()
    assert "cuInit" not in err and "cuda drivers" not in err, err
