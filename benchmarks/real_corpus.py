"""The review + news pretraining corpus of ../shared/data, as a workspace the benchmarks share.

Amazon 2018 5-core reviews (All_Beauty, Gift_Cards, Magazine_Subscriptions), SemEval-2014/15/16
ABSA sentences, AG News, BBC News, MIND news and SST-2 training sentences -> `ingest` ->
`vocab` (SentencePiece 8k) -> `pretraining-data` (128 tokens, 5% of documents held out). Built
once (~1.5 minutes on 2 cores) and reused while its stage records are fresh.

`--chinese` adds Chinese text so that the vocabulary covers CJK and one encoder serves the Chinese
benchmarks too: the 62k online-shopping reviews (not an evaluation set) and THUCNews `dev.txt` (the
training file of its evaluation split; `test.txt` stays out), with a 12k vocabulary.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OPINIONREC_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_WORKSPACE = Path("/tmp/opinionrec-real-corpus")
BILINGUAL_WORKSPACE = Path("/tmp/opinionrec-bilingual-corpus")


def corpus_inputs(shared: Path = SHARED_DATA, chinese: bool = False) -> list[Path]:
    amazon = shared / "amazon-reviews-2018-5core-small"
    inputs = [
        amazon / "All_Beauty_5.json.gz", amazon / "Gift_Cards_5.json.gz",
        amazon / "Magazine_Subscriptions_5.json.gz",
        shared / "semeval2014-task4-absa", shared / "semeval2015-task12-absa",
        shared / "semeval2016-task5-absa-train", shared / "ag-news-test" / "test.csv",
        shared / "bbc-news-greene2006" / "bbc", shared / "mind-small-train-sample" / "news.tsv",
        shared / "sst2-glue" / "train_full.tsv",
    ]
    if chinese:
        inputs += [
            shared / "chinese-sentiment-sophonplus" / "online_shopping_10_cats.zip",
            shared / "thucnews-titles-10class" / "dev.txt",
        ]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise SystemExit(f"real corpus: missing {', '.join(missing)} (the datasets live in "
                         "../shared/data, or set OPINIONREC_SHARED_DATA)")
    return inputs


def ensure_real_corpus(workspace: Path | None = None, chinese: bool = False) -> Path:
    """Build (or keep, when fresh) the corpus workspace; return its path."""
    from pipelines import cli

    workspace = workspace or (BILINGUAL_WORKSPACE if chinese else DEFAULT_WORKSPACE)
    ws = str(workspace)
    inputs = [arg for path in corpus_inputs(chinese=chinese) for arg in ("--input", str(path))]
    vocabulary = "12000" if chinese else "8000"
    for stage in (["ingest", *inputs], ["vocab", "--vocabulary-size", vocabulary],
                  ["pretraining-data", "--sequence-length", "128",
                   "--validation-fraction", "0.05"]):
        if cli.main([stage[0], "--workspace", ws, "--if-stale", *stage[1:]]) != 0:
            raise SystemExit(f"real corpus: `opinionrec {stage[0]}` failed")
    return workspace


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None,
                        help=f"where to build it (default: {DEFAULT_WORKSPACE}, or "
                        f"{BILINGUAL_WORKSPACE} with --chinese)")
    parser.add_argument("--chinese", action="store_true",
                        help="add Chinese reviews and news titles; 12k vocabulary")
    args = parser.parse_args()
    print(ensure_real_corpus(args.workspace, chinese=args.chinese))
