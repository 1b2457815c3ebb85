"""The input formats `opinionrec ingest` reads, in detection order.

A format module defines `FORMATS`, a list of `InputFormat`s; adding a format is adding a module here
and listing it in `_MODULES`.
"""

from __future__ import annotations

from pipelines.ingest.formats import (
    amazon,
    clinc,
    dong,
    huliu,
    mind,
    semeval,
    table,
    textdir,
    yelp,
)
from pipelines.ingest.formats.base import InputFormat, RawRecord, open_input, split_lines

# Detection order: specific formats first, the generic column-mapped tables last.
_MODULES = (amazon, yelp, mind, semeval, dong, huliu, clinc, textdir, table)

REGISTRY: dict[str, InputFormat] = {fmt.name: fmt for m in _MODULES for fmt in m.FORMATS}
FORMAT_NAMES = tuple(REGISTRY)

__all__ = ["FORMAT_NAMES", "REGISTRY", "InputFormat", "RawRecord", "open_input", "split_lines"]
