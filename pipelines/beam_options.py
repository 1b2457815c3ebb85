"""Beam pipeline options from the arguments the `opinionrec` command did not recognise.

Every Beam option passes through untouched, so the same job runs on Flink, Spark or Dataflow with
their usual flags (`--runner FlinkRunner --flink_master ...`, `--setup_file ./setup.py` to ship this
package to the workers). Two defaults differ from Beam's:

- the runner is the explicitly named `DirectRunner`: since Beam 2.68, leaving it unset makes Beam
  try to download the Prism runner binary first, which fails (slowly) offline;
- on the DirectRunner, `--direct_running_mode` is `in_memory`: on a small machine multi-processing
  costs more in serialisation than it gains (DESIGN.md "Beam"), and it can lose data (below).
"""

from __future__ import annotations

import logging
from typing import Sequence

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

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
    options = PipelineOptions(with_defaults(beam_args))
    if (runner_name(options) in ("DirectRunner", "SwitchingDirectRunner")
            and options.view_as(DirectOptions).direct_running_mode == "multi_processing"):
        logging.getLogger("opinionrec").warning(
            "Beam: the DirectRunner's multi_processing mode can drop elements before a join, "
            "from run to run differently (benchmarks/beam_join_loss.py: 0 to 35,000 of 100,000 "
            "documents missing from a CoGroupByKey); the jobs count what they wrote and fail on a "
            "loss. The default in_memory mode lost none in any run.")
    return options


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
