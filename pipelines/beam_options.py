"""Beam pipeline options from the arguments the `opinionrec` command did not recognise.

Every Beam option passes through untouched, so the same job runs on Flink, Spark or Dataflow with
their usual flags (`--runner FlinkRunner --flink_master ...`, `--setup_file ./setup.py` to ship this
package to the workers). Two defaults differ from Beam's:

- the runner is the explicitly named `DirectRunner`: since Beam 2.68, leaving it unset makes Beam
  try to download the Prism runner binary first, which fails (slowly) offline;
- on the DirectRunner, `--direct_running_mode` is `in_memory`: on a small machine multi-processing
  costs more in serialisation than it gains (DESIGN.md "Beam").

And one fix: Beam's portable runner (the DirectRunner's `multi_processing` and `multi_threading`
modes) lost data sent to its workers; `keep_every_chunk_sent_to_workers` says how and mends it.
"""

from __future__ import annotations

from typing import Sequence

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)
from apache_beam.runners.portability.fn_api_runner import worker_handlers

DEFAULT_RUNNER = "DirectRunner"
DEFAULT_DIRECT_RUNNING_MODE = "in_memory"


def _has_flag(args: Sequence[str], flag: str) -> bool:
    """True when `--flag value` or `--flag=value` appears in `args`."""
    return any(arg == flag or arg.startswith(flag + "=") for arg in args)


def with_defaults(beam_args: Sequence[str]) -> list[str]:
    """`beam_args` plus our defaults for the options the user did not give."""
    args = list(beam_args)
    if not _has_flag(args, "--runner"):
        args.append(f"--runner={DEFAULT_RUNNER}")
    if not _has_flag(args, "--direct_running_mode"):
        args.append(f"--direct_running_mode={DEFAULT_DIRECT_RUNNING_MODE}")
    return args


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
    """`PipelineOptions` for a job: the user's Beam flags, with the defaults above filled in.

    Example:
        >>> options = pipeline_options(["--direct_num_workers", "2"])
        >>> runner_name(options)
        'DirectRunner'
    """
    keep_every_chunk_sent_to_workers()
    return PipelineOptions(with_defaults(beam_args))


def keep_every_chunk_sent_to_workers() -> None:
    """Turn off the time-based flush of the portable runner's data channel to its workers.

    Beam 2.77's FnApiRunner (the DirectRunner's `multi_processing` and `multi_threading` modes)
    writes a stage's input to a worker through an output stream that a background thread also
    flushes every `worker_handlers.DATA_BUFFER_TIME_LIMIT_MS` (1 s). The writes take no lock:
    chunks written between the flusher's read of the buffer and its clearing of it (it can wait
    there for room in the 100 MB send queue) are cleared unsent. The first flush comes 1 s
    after the stream opens, so only a write that takes longer loses data: a large input on a
    busy machine (10^5 reviews: 285 MB per worker). Such runs silently lost 256 to 65,000 of
    100,000 documents, in 7 of 83 runs while this was found (benchmarks/beam_join_loss.py).
    Without the timer the stream is flushed only by its writer, so nothing can be cleared
    unsent; the runner closes each stream after writing it whole, so no data waits on a timer.
    The module constant is read when a job's gRPC servers start, so setting it here covers
    every job built through `pipeline_options`.
    """
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


def runner_name(options: PipelineOptions) -> str:
    """The runner's name as the user gave it (a class name such as "FlinkRunner")."""
    runner = options.view_as(StandardOptions).runner
    if runner is None:
        return DEFAULT_RUNNER
    return runner if isinstance(runner, str) else type(runner).__name__


def is_single_process(options: PipelineOptions) -> bool:
    """True for the DirectRunner in memory with one worker: nothing runs in parallel, so a
    Reshuffle that only spreads work over workers is pure overhead there."""
    if runner_name(options) not in ("DirectRunner", "SwitchingDirectRunner"):
        return False
    direct = options.view_as(DirectOptions)
    return direct.direct_running_mode == "in_memory" and (direct.direct_num_workers or 1) <= 1


def describe(options: PipelineOptions) -> str:
    """A short description for logs: the runner and, for the DirectRunner, its mode and workers."""
    name = runner_name(options)
    if name in ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"):
        direct = options.view_as(DirectOptions)
        return f"{name} ({direct.direct_running_mode}, {direct.direct_num_workers} worker(s))"
    return name
