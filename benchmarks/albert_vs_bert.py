"""ALBERT against its BERT equivalent: parameters, checkpoint size, memory, speed, XLA and learning.

The comparison of `opinionrec compare` (pipelines/compare.py, albert_tf/comparison.py), run on an
existing pretraining-data workspace, side by side in one run:
  - parameters (total, embedding) of every named config, and `base` at the paper's 30000-token
    vocabulary (ALBERT ~12M, BERT ~109M);
  - on `small` at 32 x 128: checkpoint MB, peak RSS, training and inference tokens/s with XLA on
    and off, XLA compile time, the XLA forward pass as a fraction of the matmul peak;
  - `tiny` ALBERT and BERT pretrained for the same --minutes each: held-out MLM and SOP accuracy,
    learning curves;
  - ALBERT in mixed_bfloat16 (graph mode): speed and held-out accuracy in the same budget.

    python benchmarks/albert_vs_bert.py                      # 5 min per variant, ~32 minutes
    python benchmarks/albert_vs_bert.py --minutes 10 --workspace workspace

Takes about 3 x (--minutes + 2) minutes for the races plus ~11 minutes of speed measurements on
2 idle cores (it prints its estimate first). Writes benchmarks/results/albert_vs_bert.json, .md
and .html (learning curves, throughput).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import RESULTS, write_results  # noqa: E402
from benchmarks.real_corpus import DEFAULT_WORKSPACE, ensure_real_corpus  # noqa: E402
from pipelines.cli import configure_logging  # noqa: E402
from pipelines.compare import (  # noqa: E402
    CompareOptions,
    estimated_minutes,
    html_report,
    markdown_report,
    run_comparison,
)
from pipelines.workspace import Workspace  # noqa: E402

NAME = "albert_vs_bert"
log = logging.getLogger("benchmark")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default=None,
                        help="a workspace with `opinionrec pretraining-data` output (default: "
                        "the real review + news corpus of ../shared/data, built once into "
                        f"{DEFAULT_WORKSPACE} by benchmarks/real_corpus.py)")
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="training minutes per variant in the race (default: %(default)s)")
    parser.add_argument("--config", default="tiny", help="race config (default: %(default)s)")
    parser.add_argument("--speed-config", default="small",
                        help="speed config (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--no-bf16", action="store_true", help="skip the mixed_bfloat16 path")
    args = parser.parse_args(argv)
    configure_logging(False)

    if args.workspace is None:
        args.workspace = str(ensure_real_corpus(DEFAULT_WORKSPACE))
    data = Workspace(Path(args.workspace)).pretraining_data
    if not (data / "schema.json").exists():
        raise SystemExit(f"{data}: no schema.json; run `opinionrec pretraining-data --workspace "
                         f"{args.workspace}` first")
    options = CompareOptions(pretraining_data=str(data), config=args.config,
                             speed_config=args.speed_config, minutes=args.minutes,
                             batch_size=args.batch_size, bf16=not args.no_bf16)
    print(f"albert_vs_bert: about {estimated_minutes(options):.0f} minutes on 2 idle cores "
          f"({args.minutes:g} training minutes per variant)", flush=True)
    result = run_comparison(options)
    markdown = markdown_report(result)
    print(markdown)
    path = write_results(NAME, result, markdown)
    (RESULTS / f"{NAME}.html").write_text(html_report(result, "ALBERT vs BERT (benchmark)"))
    print(f"wrote {path}, {path.with_suffix('.md')} and {RESULTS / (NAME + '.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
