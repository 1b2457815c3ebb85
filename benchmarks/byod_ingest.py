"""Bring-your-own data, measured: ingest on the variants other sources write, beside the standard
readers, on the real data of ../shared/data.

  - tables: the Amazon reviews of the three 5-core categories written by `DataFrame.to_csv(sep=
    "\\t")` (quoted fields with line breaks and doubled quotes), read by ingest's reader and by
    `pandas.read_csv`: rows, texts that equal pandas' cell for cell, rejects, and the time of each;
  - SemEval XML: the real files with every `id`/`rid` stripped, then with `from`/`to` stripped too:
    rejects, aspects, and the share of located spans equal to the annotated ones;
  - PII: every match of the bare-domain URL rule (`facebook.com/x`, no scheme) in all the text of
    ../shared/data, listed for a precision check by eye.

    python benchmarks/byod_ingest.py          # about a minute

Writes benchmarks/results/byod_ingest.json and byod_ingest.md.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402

from benchmarks._common import markdown_table, write_results  # noqa: E402
from pipelines.ingest.formats.semeval import ParseSemEvalFn, split_xml  # noqa: E402
from pipelines.ingest.formats.table import ParseTableFn  # noqa: E402
from pipelines.ingest.parsing import REJECTED_TAG, ParseOptions  # noqa: E402
from pipelines.ingest.pii import _BARE_URL  # noqa: E402
from pipelines.ingest.reading import ReadRecordsFn  # noqa: E402
from pipelines.records import clean_text  # noqa: E402

SHARED = Path(os.environ.get("OPINIONREC_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
AMAZON = ("All_Beauty_5", "Gift_Cards_5", "Magazine_Subscriptions_5")
SEMEVAL = ("semeval2014-task4-absa/Laptop_Train_v2.xml",
           "semeval2014-task4-absa/Restaurants_Train_v2.xml",
           "semeval2015-task12-absa/ABSA-15_Restaurants_Train_Final.xml",
           "semeval2016-task5-absa-train/ABSA16_Restaurants_Train_SB1_v2.xml")


def ingest_table(path: Path) -> list[Any]:
    """Every record as ingest reads and parses it: a document, or the reject reason."""
    read, parse = ReadRecordsFn("table"), ParseTableFn({}, ParseOptions(scrub_pii=False))
    read.setup()
    out = []
    for element in read.process(str(path)):
        (result,) = parse.process(element)
        out.append(result.value["reason"] if getattr(result, "tag", None) == REJECTED_TAG
                   else result)
    return out


def tables(work: Path) -> dict[str, Any]:
    rows = []
    for name in AMAZON:
        with gzip.open(SHARED / "amazon-reviews-2018-5core-small" / f"{name}.json.gz") as f:
            for line in f:
                review = json.loads(line)
                rows.append({"sentence": review.get("reviewText", ""),
                             "label": int(review["overall"] >= 4)})
    frame = pd.DataFrame(rows)
    path = work / "amazon_reviews.tsv"
    frame.to_csv(path, sep="\t", index=False)
    start = time.perf_counter()
    records = ingest_table(path)
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    back = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    pandas_s = time.perf_counter() - start
    docs = [r for r in records if isinstance(r, dict)]
    equal = sum(d["text"] == clean_text(t) for d, t in
                zip(records, back["sentence"]) if isinstance(d, dict))
    return {
        "rows_written_by_pandas": len(frame),
        "with_line_breaks": int(frame["sentence"].str.contains("\n").sum()),
        "with_quotes": int(frame["sentence"].str.contains('"').sum()),
        "physical_lines": len(path.read_bytes().splitlines()),
        "pandas_rows": len(back),
        "ingest_records": len(records),
        "ingest_accepted": len(docs),
        "ingest_rejected": dict(collections.Counter(r for r in records if isinstance(r, str))),
        "accepted_equal_to_pandas_row": equal,
        "pandas_empty_texts": int((back["sentence"].str.strip() == "").sum()),
        "ingest_read_parse_clean_s": round(ingest_s, 2),
        "pandas_read_s": round(pandas_s, 2),
    }


def _aspects(path: Path) -> tuple[list[Any], dict[str, int]]:
    fn = ParseSemEvalFn({})
    fn.setup()
    out = []
    for position, record in enumerate(split_xml(str(path))):
        raw, member = record if isinstance(record, tuple) else (record, None)
        (doc,) = fn.process((str(path), position, raw, member))
        out.append(None if getattr(doc, "tag", None) == REJECTED_TAG else doc["aspects"])
    counts = {k[1].removeprefix("step."): v for k, v in fn.counters._pending.items()
              if k[1].startswith("step.absa")}
    return out, counts


def semeval(work: Path) -> list[dict[str, Any]]:
    results = []
    for relative in SEMEVAL:
        source = SHARED / relative
        text = source.read_text(encoding="utf-8")
        no_ids, no_offsets = work / "no_ids.xml", work / "no_offsets.xml"
        no_ids.write_text(re.sub(r' (?:id|rid)="[^"]*"', "", text), encoding="utf-8")
        no_offsets.write_text(re.sub(r' (?:id|rid|from|to)="[^"]*"', "", text), encoding="utf-8")
        gold, _ = _aspects(source)
        stripped, _ = _aspects(no_ids)
        located, counts = _aspects(no_offsets)
        pairs = [(g, m) for gs, ms in zip(gold, located) if gs and ms
                 for g, m in zip(gs, ms) if g["term"]]
        results.append({
            "file": relative,
            "records": len(gold),
            "rejected_with_ids": sum(a is None for a in gold),
            "rejected_without_ids": sum(a is None for a in stripped),
            "aspects_with_ids": sum(len(a) for a in gold if a),
            "aspects_without_ids": sum(len(a) for a in stripped if a),
            "same_aspects_without_ids": gold == stripped,
            "terms": len(pairs),
            "located": sum(m["start"] >= 0 for _, m in pairs),
            "located_span_equal": sum(g == m for g, m in pairs),
            "counters": counts,
        })
    return results


def _texts(path: Path) -> list[str]:
    if path.suffix == ".gz":
        data = gzip.open(path).read()
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            data = b"\n".join(archive.read(n) for n in archive.namelist())
    else:
        data = path.read_bytes()
    return data.decode("utf-8", "replace").splitlines()


def bare_urls() -> dict[str, Any]:
    matches: collections.Counter = collections.Counter()
    lines = 0
    for path in sorted(p for p in SHARED.rglob("*") if p.is_file() and p.name != "SOURCE.md"):
        for line in _texts(path):
            lines += 1
            for match in _BARE_URL.finditer(line):
                matches[(path.relative_to(SHARED).parts[0], match.group(0))] += 1
    return {"lines": lines, "matches": sum(matches.values()), "distinct": len(matches),
            "listed": [{"dataset": d, "match": m, "count": c}
                       for (d, m), c in matches.most_common()]}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    if not SHARED.exists():
        print(f"{SHARED} not found (set OPINIONREC_SHARED_DATA)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        table = tables(Path(tmp))
        xml = semeval(Path(tmp))
    urls = bare_urls()
    md = ["## Tables: a pandas-written TSV of real reviews", "",
          markdown_table(["what", "value"], [[k, v] for k, v in table.items()]), "",
          "## SemEval XML without ids, then without offsets", "",
          markdown_table(["file", "records", "rejected (ids / none)", "aspects (ids / none)",
                          "same aspects", "terms located", "located = annotated"],
                         [[r["file"], r["records"],
                           f"{r['rejected_with_ids']} / {r['rejected_without_ids']}",
                           f"{r['aspects_with_ids']} / {r['aspects_without_ids']}",
                           r["same_aspects_without_ids"], f"{r['located']} / {r['terms']}",
                           f"{r['located_span_equal']} / {r['terms']} "
                           f"({100 * r['located_span_equal'] / max(r['terms'], 1):.2f}%)"]
                          for r in xml]), "",
          f"## Bare-domain URLs in {urls['lines']:,} lines of ../shared/data: "
          f"{urls['matches']} matches, {urls['distinct']} distinct", "",
          markdown_table(["dataset", "match", "count"],
                         [[u["dataset"], f"`{u['match']}`", u["count"]] for u in urls["listed"]])]
    markdown = "\n".join(md)
    print(markdown)
    write_results("byod_ingest", {"table": table, "semeval": xml, "bare_urls": urls}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
