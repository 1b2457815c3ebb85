"""CLINC150 (`data_full.json` and its siblings): one JSON object of splits, each a list of
[utterance, intent] pairs, read as one labelled document per utterance.

Records come in file order (the splits as the object lists them, then the pairs in order) with
`member` = the split's key ("train", "oos_val", ...). `label` is the intent ("oos" for the
out-of-scope parts), `labels` [intent, the key], `split` "train", "validation" or "test".
"""

from __future__ import annotations

import json
import re
from typing import Iterator, Sequence

from pipelines.ingest.formats.base import InputFormat, RawRecord, open_input
from pipelines.ingest.parsing import ParseFn, Rejected, make_document
from pipelines.records import (
    REJECT_INVALID_JSON,
    REJECT_MISSING_FIELD,
    REJECT_WRONG_TYPE,
    Document,
)

CLINC = "clinc"
# The keys of data_full.json / data_small.json / data_imbalanced.json / data_oos_plus.json.
_SPLIT_KEY = re.compile(rb'"(oos_)?(train|val|test)"\s*:\s*\[')


def split_name(key: str) -> str | None:
    """"oos_val" -> "validation"; "train" -> "train"; an unknown key -> None."""
    part = key.removeprefix("oos_")
    return {"train": "train", "val": "validation", "test": "test"}.get(part)


def is_clinc_file(name: str, head: Sequence[bytes]) -> bool:
    """A .json file whose first lines open an object with a train/val/test/oos_* list."""
    if not name.endswith(".json") or not head or not head[0].lstrip().startswith(b"{"):
        return False
    return any(_SPLIT_KEY.search(line) for line in head)


def split_clinc(path: str) -> Iterator[RawRecord]:
    """One (JSON-encoded [utterance, intent], split key) record per example, in file order.

    A file that is not a JSON object of lists yields its whole content as one record (rejected
    by the parser with the reason)."""
    with open_input(path) as handle:
        content = handle.read()
    try:
        data = json.loads(content)
    except ValueError:
        yield content, ""
        return
    if not isinstance(data, dict):
        yield content, ""
        return
    for key, examples in data.items():
        if not isinstance(examples, list):
            yield json.dumps(examples, ensure_ascii=False).encode("utf-8"), str(key)
            continue
        for example in examples:
            yield json.dumps(example, ensure_ascii=False).encode("utf-8"), str(key)


class ParseClincFn(ParseFn):
    """[utterance, intent] -> Document(kind="labelled", label=intent, split from the key)."""

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        if not member:
            raise Rejected(REJECT_INVALID_JSON, "the file is not a JSON object of split lists")
        try:
            example = json.loads(text)
        except ValueError as error:
            raise Rejected(REJECT_INVALID_JSON, str(error)) from None
        if not isinstance(example, list):
            kind = type(example).__name__
            raise Rejected(REJECT_WRONG_TYPE, f"{member}: expected [utterance, intent], got {kind}")
        if len(example) != 2 or not all(isinstance(v, str) for v in example):
            raise Rejected(
                REJECT_WRONG_TYPE, f"{member}: expected [utterance, intent], got {text[:60]!r}"
            )
        utterance, intent = example
        intent = intent.strip()
        if not intent:
            raise Rejected(REJECT_MISSING_FIELD, f"{member}: intent is empty")
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="labelled",
            text=self.clean_body(utterance, "utterance"),
            source=source,
            position=position,
            label=intent,
            labels=[intent, member],
            split=split_name(member),
        )


FORMATS = [
    InputFormat(
        name=CLINC,
        description="CLINC150 data_full.json: {train|val|test|oos_*: [[utterance, intent], ...]}",
        parser=ParseClincFn,
        output="docs",
        detect=is_clinc_file,
        split=split_clinc,
    ),
]
