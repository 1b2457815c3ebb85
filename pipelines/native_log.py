"""Drops the CUDA probing lines TensorFlow's native code prints on a machine without a GPU.

TensorFlow's C++ writes them to file descriptor 2 before absl logging is initialised, so
TF_CPP_MIN_LOG_LEVEL cannot silence them, and users read them as errors ("failed call to cuInit:
UNKNOWN ERROR (303)" on every stage). `install` puts a small filter process between descriptor 2
and the terminal; Python's own `sys.stderr` (logs, progress bars, tracebacks) keeps writing to
the terminal directly. The filter is a separate process so that what a crashing process writes
last (a native CHECK failure, a fatal signal) still gets through. `OPINIONREC_NATIVE_LOGS=1`
turns it off.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys

# Substrings of the native lines dropped: every one is about a GPU this machine does not have.
NOISE = (
    b"All log messages before absl::InitializeLog() is called are written to STDERR",
    b"Could not find cuda drivers on your machine",
    b"failed call to cuInit",
    b"Unable to register cuDNN factory",
    b"Unable to register cuFFT factory",
    b"Unable to register cuBLAS factory",
    b"computation placer already registered",
    b"TF-TRT Warning: Could not find TensorRT",
)
# How native log lines start (absl's "I0000 00:00:...", "WARNING: All log ..."): a partial line
# that may be one waits for its end; anything else (a progress bar's "\r...") passes at once.
_NATIVE_STARTS = (b"I0", b"W0", b"E0", b"F0", b"WARNING: All log")
_NATIVE_LINE = re.compile(rb"[IWEF]\d{4} |WARNING: All log")
ENV_SWITCH = "OPINIONREC_NATIVE_LOGS"
_installed: list[subprocess.Popen] = []


def is_noise(line: bytes) -> bool:
    return any(n in line for n in NOISE)


def _without_noise(line: bytes) -> bytes:
    """The line, or what came before a noise line that joined it (a progress bar's text)."""
    if not is_noise(line):
        return line + b"\n"
    start = _NATIVE_LINE.search(line)
    return line[:start.start()] if start else b""


def _may_be_native(partial: bytes) -> bool:
    return any(partial.startswith(s) or s.startswith(partial) for s in _NATIVE_STARTS)


def filter_stream(source, sink) -> None:
    """Copies `source` to `sink` (binary, unbuffered reads) without the noise lines."""
    pending = b""
    while True:
        chunk = os.read(source.fileno(), 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(_without_noise(line) for line in lines)
        if pending and not _may_be_native(pending):
            out, pending = out + pending, b""
        if out:
            sink.write(out)
            sink.flush()
    if pending:
        sink.write(_without_noise(pending).removesuffix(b"\n"))
        sink.flush()


def install() -> bool:
    """Routes descriptor 2 through the filter, once per process and not when the switch is set.
    Returns whether it did."""
    if _installed or os.environ.get(ENV_SWITCH) == "1":
        return False
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError):
        return False
    read_end, write_end = os.pipe()
    filter_process = subprocess.Popen(
        [sys.executable, "-S", "-c",
         "import sys; sys.path.insert(0, %r); from pipelines.native_log import filter_stream; "
         "filter_stream(sys.stdin.buffer, sys.stdout.buffer)" % _project_root()],
        stdin=read_end, stdout=real, stderr=real, close_fds=True,
        env={**os.environ, ENV_SWITCH: "1"},
    )
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    # Python's own writes go straight to the terminal, never through the filter.
    sys.stderr = open(real, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None)
                      or "utf-8", errors="backslashreplace", closefd=False)
    _installed.append(filter_process)
    atexit.register(_close, real)
    return True


def _close(real: int) -> None:
    """At exit: descriptor 2 back to the terminal, so the filter sees the end of its input (once
    child processes holding the pipe have exited too) and drains what is left."""
    try:
        os.dup2(real, 2)
        _installed[0].wait(timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
