"""`opinionrec pretraining-data`: a Beam job turning the ingested documents into SOP/MLM instances.

docs (Parquet) -> per document: body sentences -> SentencePiece ids -> consecutive sentences packed
into chunks that fill the sequence length -> each chunk split at a sentence boundary into segments A
and B (a one-sentence chunk at a word boundary near its middle), swapped with probability 0.5
(seeded per document) -> `[CLS] A [SEP] B [SEP]` as a
tf.train.Example -> sharded TFRecords per split. Masking is not done here: it stays dynamic in
tf.data (`albert_tf.instances`), so every epoch masks other tokens.

Outputs under `<workspace>/pretraining_data/`:

- `train/instances-SSSSS-of-NNNNN.tfrecord`, `validation/...`: one tf.train.Example per instance
  with the features of `FEATURES` (unpadded);
- `schema.json`: feature names and dtypes, sequence length, vocabulary size, special token ids,
  the SentencePiece model's SHA-256, the options and the instance counts;
- `stats.json`: documents read = used + skipped (with reasons), documents and instances per split,
  SOP labels, tokens and truncations, taken from the job's Beam counters and checked against the
  files on disk.

The per-document work (`document_instances`) is plain Python; `run_pretraining_data_bare` runs it
in a loop without Beam, for tests and for the throughput benchmark. Workers never import TensorFlow
(`pipelines.tfexample` writes the Examples).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import struct
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines import workspace as ws_lib
from pipelines.beam_counts import NotReconciled, counter_values
from pipelines.corpus import split_key
from pipelines.fspath import RemotePath, as_path, remove_tree
from pipelines.records import TEXT_KINDS
from pipelines.tfexample import encode_example

log = logging.getLogger("opinionrec")

STAGE = "pretraining-data"
NAMESPACE = "opinionrec.pretraining_data"
SCHEMA_VERSION = "opinionrec.pretraining_data/1"
SPLITS = ("train", "validation")
SHARD_PREFIX = "instances"

# SOP labels, as albert_tf.pretraining uses them: 0 in order, 1 swapped, -1 a single segment (a
# chunk too short to cut, or any one-sentence chunk with `split_single_sentences` off: it trains
# masked-LM only).
IN_ORDER, SWAPPED, SINGLE_SEGMENT = 0, 1, -1
SOP_LABEL_NAMES = {IN_ORDER: "in_order", SWAPPED: "swapped", SINGLE_SEGMENT: "single_segment"}

# Why a document gave no instance.
SKIP_KIND = "kind_not_selected"
SKIP_NO_TEXT = "no_text"
SKIP_TOO_SHORT = "too_few_tokens"
SKIP_EVALUATION = "evaluation_split"
SKIP_REASONS = (SKIP_KIND, SKIP_EVALUATION, SKIP_NO_TEXT, SKIP_TOO_SHORT)
# Labelled documents an evaluation reads (split "test" / "validation", e.g. SemEval's test gold or
# SST-2's dev set) are not pretrained on by default: even unlabelled, their text would leak into
# the encoder that is later scored on them.
EVALUATION_SPLITS = ("test", "validation")

# The Example features of an instance: name -> (dtype, what it holds).
FEATURES: dict[str, tuple[str, str]] = {
    "token_ids": ("int64", "[CLS] A [SEP] B [SEP] (B empty for a single segment), unpadded"),
    "segment_ids": ("int64", "0 for [CLS] A [SEP], 1 for B [SEP]; same length as token_ids"),
    "sop_label": ("int64", "0 in order, 1 swapped (A follows B in the text), -1 single segment"),
    "doc_id": ("string", "the ingested document's id"),
    "kind": ("string", "the document's kind (review, news, labelled)"),
    "instance_index": ("int64", "position of the instance within its document"),
}
SPECIAL_PIECES = {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]",
                  "mask": "[MASK]"}  # albert_tf.tokenizer.SPECIAL_TOKENS


# === Per-document work (plain Python: no Beam, no TensorFlow) ===


@dataclass(frozen=True)
class InstanceOptions:
    """How documents become instances (the job's options that change its output)."""

    sequence_length: int = 128
    swap_probability: float = 0.5
    validation_fraction: float = 0.05
    seed: int = 0
    min_tokens: int = 5
    kinds: tuple[str, ...] = TEXT_KINDS
    include_evaluation_splits: bool = False
    # A one-sentence chunk of at least `min_split_tokens` tokens is cut at a word boundary into A
    # and B. ALBERT's segments are spans of text, not sentences; without these cuts the SST-2
    # sentences, short reviews and abstracts (3/4 of the real corpus) never train SOP.
    split_single_sentences: bool = True
    min_split_tokens: int = 8

    def __post_init__(self):
        if self.sequence_length < 5:
            raise ValueError("`sequence_length` must be at least 5 ([CLS] A [SEP] B [SEP]). "
                             f"Received: {self.sequence_length}")
        if not 0.0 <= self.swap_probability <= 1.0:
            raise ValueError(f"`swap_probability` must be within 0-1. Received: "
                             f"{self.swap_probability}")
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(f"`validation_fraction` must be within 0-1. Received: "
                             f"{self.validation_fraction}")
        if self.min_split_tokens < 2:
            raise ValueError("`min_split_tokens` must be at least 2 (a token for A and one for "
                             f"B). Received: {self.min_split_tokens}")

    @property
    def max_content_tokens(self) -> int:
        """Tokens of A and B together: the sequence length less [CLS] and two [SEP]."""
        return self.sequence_length - 3


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    @classmethod
    def from_processor(cls, processor) -> SpecialIds:
        ids = {name: processor.piece_to_id(piece) for name, piece in SPECIAL_PIECES.items()}
        missing = [SPECIAL_PIECES[n] for n, i in ids.items()
                   if i == processor.unk_id() and n != "unk"]
        if missing:
            raise ValueError(f"The SentencePiece model lacks ALBERT's special tokens {missing}: "
                             "train it with `opinionrec vocab`.")
        return cls(**ids)


@dataclass
class Instance:
    token_ids: list[int]
    segment_ids: list[int]
    sop_label: int
    doc_id: str
    kind: str
    instance_index: int

    def to_bytes(self) -> bytes:
        """The serialized tf.train.Example (see FEATURES), without TensorFlow."""
        return encode_example({
            "token_ids": ("int64", self.token_ids),
            "segment_ids": ("int64", self.segment_ids),
            "sop_label": ("int64", [self.sop_label]),
            "doc_id": ("bytes", [self.doc_id]),
            "kind": ("bytes", [self.kind]),
            "instance_index": ("int64", [self.instance_index]),
        })


@dataclass
class DocumentResult:
    """What one document gave: its split and instances, or the reason it was skipped."""

    doc_id: str
    split: str | None = None
    instances: list[Instance] = field(default_factory=list)
    skipped: str | None = None
    tokens: int = 0  # content tokens written (after truncation)
    truncated_tokens: int = 0
    truncated_sentences: int = 0


def load_sentencepiece(path: str | Path):
    """A SentencePieceProcessor from a local path or any Beam filesystem (gs://, ...)."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=as_path(path).read_bytes())


def body_sentences(doc: Mapping[str, Any]) -> list[str]:
    """The body sentences (the title is left out: a headline as segment B is a surface cue that
    lets SOP be solved without reading); the whole text when the document has no sentences."""
    sentences = doc.get("sentences")
    if sentences is None or len(sentences) == 0:
        text = doc.get("text") or ""
        return [text] if text.strip() else []
    return [s for s in sentences if s and s.strip()]


def seed_for(seed: int, doc_id: str) -> int:
    """A document's own random seed: stable across processes, runners and Python versions."""
    return int.from_bytes(hashlib.sha1(f"{seed}:{doc_id}".encode()).digest()[:8], "big")


def is_validation(key: str, fraction: float) -> bool:
    """The split by a document's `split_key` (its text: copies of a text share a side), the same
    hash as `pipelines.corpus.held_out`."""
    digest = hashlib.sha1(f"held-out:{key}".encode()).hexdigest()
    return int(digest[:8], 16) % 10_000 < int(fraction * 10_000)


def pack_chunks(sentence_ids: Sequence[Sequence[int]], max_tokens: int) -> list[list[list[int]]]:
    """Consecutive sentences grouped into chunks of at most `max_tokens` tokens.

    A sentence longer than `max_tokens` is cut to its first `max_tokens` tokens and makes a chunk
    of its own. Empty sentences are dropped.
    """
    chunks: list[list[list[int]]] = []
    chunk: list[list[int]] = []
    size = 0
    for ids in sentence_ids:
        ids = list(ids[:max_tokens])
        if not ids:
            continue
        if chunk and size + len(ids) > max_tokens:
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(ids)
        size += len(ids)
    if chunk:
        chunks.append(chunk)
    return chunks


def word_start_ids(processor) -> frozenset[int]:
    """The ids of the SentencePiece pieces that begin a word (those starting with "▁")."""
    return frozenset(i for i in range(processor.get_piece_size())
                     if processor.id_to_piece(i).startswith("\u2581"))


def within_sentence_cut(ids: Sequence[int], rng: random.Random,
                        word_starts: Collection[int]) -> int:
    """Where a one-sentence chunk is cut into A and B: a random word start in its middle half.

    Any position of the middle half when it has no word start (CJK text, where SentencePiece
    pieces rarely begin with "▁"), so that Chinese sentences are cut too.
    """
    low, high = max(1, len(ids) // 4), max(1, (3 * len(ids)) // 4)
    positions = range(low, min(high, len(ids) - 1) + 1)
    candidates = [p for p in positions if ids[p] in word_starts] or list(positions)
    return rng.choice(candidates)


def chunk_instance(chunk: Sequence[Sequence[int]], rng: random.Random, swap_probability: float,
                   special: SpecialIds, word_starts: Collection[int] | None = None,
                   min_split_tokens: int = 8) -> tuple[list[int], list[int], int]:
    """(token_ids, segment_ids, sop_label) of one chunk.

    Two or more sentences are cut at a random sentence boundary into A and B, swapped with
    `swap_probability` (label 1). One sentence is cut at a word boundary (`within_sentence_cut`)
    when `word_starts` is given and it has at least `min_split_tokens` tokens; otherwise it is a
    single segment `[CLS] A [SEP]` (label -1).
    """
    if len(chunk) > 1:
        cut = rng.randint(1, len(chunk) - 1)
        a = [t for ids in chunk[:cut] for t in ids]
        b = [t for ids in chunk[cut:] for t in ids]
    elif word_starts is not None and len(chunk[0]) >= min_split_tokens:
        cut = within_sentence_cut(chunk[0], rng, word_starts)
        a, b = list(chunk[0][:cut]), list(chunk[0][cut:])
    else:
        a, b = list(chunk[0]), []
    if not b:
        first, second, label = a, [], SINGLE_SEGMENT
    else:
        swapped = rng.random() < swap_probability
        first, second = (b, a) if swapped else (a, b)
        label = SWAPPED if swapped else IN_ORDER
    tokens = [special.cls, *first, special.sep]
    segments = [0] * len(tokens)
    if second:
        tokens += [*second, special.sep]
        segments += [1] * (len(second) + 1)
    return tokens, segments, label


def document_instances(doc: Mapping[str, Any], processor, special: SpecialIds,
                       options: InstanceOptions,
                       word_starts: Collection[int]) -> DocumentResult:
    """All instances of one document (the per-record function the Beam job and the bare loop run).

    `doc` needs `id`, `kind`, `text` and `sentences` (a canonical ingest row); `processor` is a
    `sentencepiece.SentencePieceProcessor`, `special` and `word_starts` its `SpecialIds` and
    `word_start_ids` (computed once by the caller).
    """
    doc_id = str(doc["id"])
    kind = str(doc.get("kind") or "")
    result = DocumentResult(doc_id)
    if kind not in options.kinds:
        result.skipped = SKIP_KIND
        return result
    if doc.get("split") in EVALUATION_SPLITS and not options.include_evaluation_splits:
        result.skipped = SKIP_EVALUATION
        return result
    sentences = body_sentences(doc)
    if not sentences:
        result.skipped = SKIP_NO_TEXT
        return result
    # One call per sentence: a list call starts a thread pool each time, ~3x slower here.
    encode = processor.encode
    sentence_ids = [ids for ids in (encode(s) for s in sentences) if ids]
    total = sum(len(ids) for ids in sentence_ids)
    if total == 0:
        result.skipped = SKIP_NO_TEXT
        return result
    if total < options.min_tokens:
        result.skipped = SKIP_TOO_SHORT
        return result
    limit = options.max_content_tokens
    for ids in sentence_ids:
        if len(ids) > limit:
            result.truncated_sentences += 1
            result.truncated_tokens += len(ids) - limit
    result.tokens = total - result.truncated_tokens
    in_validation = is_validation(split_key(doc.get("text") or ""), options.validation_fraction)
    result.split = "validation" if in_validation else "train"
    rng = random.Random(seed_for(options.seed, doc_id))
    cut_within = word_starts if options.split_single_sentences else None
    for index, chunk in enumerate(pack_chunks(sentence_ids, limit)):
        tokens, segments, label = chunk_instance(chunk, rng, options.swap_probability, special,
                                                 cut_within, options.min_split_tokens)
        result.instances.append(Instance(tokens, segments, label, doc_id, kind, index))
    return result


class StatCounts:
    """The counts stats.json reports, by name ("documents.read", "instances.train", ...)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = defaultdict(int)

    def add(self, result: DocumentResult) -> None:
        values = self.values
        values["documents.read"] += 1
        if result.skipped:
            values["documents.skipped"] += 1
            values[f"skipped.{result.skipped}"] += 1
            return
        split = result.split
        values["documents.used"] += 1
        values[f"documents.{split}"] += 1
        values[f"instances.{split}"] += len(result.instances)
        values[f"tokens.{split}"] += result.tokens
        values["truncated.tokens"] += result.truncated_tokens
        values["truncated.sentences"] += result.truncated_sentences
        for instance in result.instances:
            values[f"sop.{split}.{SOP_LABEL_NAMES[instance.sop_label]}"] += 1


def build_stats(counts: Mapping[str, int], runner: str, wall_s: float) -> dict[str, Any]:
    """stats.json from the counts: reconciling totals on top, then their breakdowns."""
    return {
        "documents_read": counts.get("documents.read", 0),
        "documents_used": counts.get("documents.used", 0),
        "documents_skipped": counts.get("documents.skipped", 0),
        "skipped_by_reason": {r: counts.get(f"skipped.{r}", 0) for r in SKIP_REASONS},
        "documents": {s: counts.get(f"documents.{s}", 0) for s in SPLITS},
        "instances": {s: counts.get(f"instances.{s}", 0) for s in SPLITS},
        "sop_labels": {s: {n: counts.get(f"sop.{s}.{n}", 0) for n in SOP_LABEL_NAMES.values()}
                       for s in SPLITS},
        "tokens": {s: counts.get(f"tokens.{s}", 0) for s in SPLITS},
        "truncated_sentences": counts.get("truncated.sentences", 0),
        "truncated_tokens": counts.get("truncated.tokens", 0),
        "runner": runner,
        "wall_s": round(wall_s, 2),
    }


@dataclass
class BareResult:
    """The output of `run_pretraining_data_bare`: instances per split, stats and phase times."""

    records: dict[str, list]  # serialized Examples (or `Instance`s), per split, document order
    stats: dict[str, Any]
    seconds: dict[str, float]  # "load", "instances", "encode", "write"


def run_pretraining_data_bare(
    docs: Iterable[Mapping[str, Any]],
    spm_path: str | Path,
    sequence_length: int = 128,
    swap_probability: float = 0.5,
    validation_fraction: float = 0.05,
    seed: int = 0,
    min_tokens: int = 5,
    kinds: Sequence[str] = TEXT_KINDS,
    serialize: bool = True,
    out_dir: str | Path | None = None,
    include_evaluation_splits: bool = False,
    split_single_sentences: bool = True,
    min_split_tokens: int = 8,
) -> BareResult:
    """The job's per-record functions in a plain Python loop (no Beam): the throughput baseline.

    `docs` are canonical ingest rows (dicts with `id`, `kind`, `text`, `sentences`). Returns the
    serialized tf.train.Examples of each split in document order (with `serialize=False`, the
    `Instance` objects instead), the same stats the job writes (`runner` "bare") and the seconds
    of each phase. With `out_dir`, also writes `<out_dir>/<split>/bare.tfrecord` with the framing
    Beam's TFRecord sink uses, so the loop does the job's whole work.
    """
    clock = time.perf_counter
    start = clock()
    options = InstanceOptions(sequence_length, swap_probability, validation_fraction, seed,
                              min_tokens, tuple(kinds), include_evaluation_splits,
                              split_single_sentences, min_split_tokens)
    processor = load_sentencepiece(spm_path)
    special = SpecialIds.from_processor(processor)
    word_starts = word_start_ids(processor)
    seconds = {"load": clock() - start}

    phase = clock()
    counts = StatCounts()
    instances: dict[str, list] = {s: [] for s in SPLITS}
    for doc in docs:
        result = document_instances(doc, processor, special, options, word_starts)
        counts.add(result)
        if result.split:
            instances[result.split].extend(result.instances)
    seconds["instances"] = clock() - phase

    phase = clock()
    records = {s: [i.to_bytes() for i in rows] for s, rows in instances.items()} if serialize \
        else instances
    seconds["encode"] = clock() - phase

    phase = clock()
    if out_dir is not None and serialize:
        from apache_beam.io.tfrecordio import _TFRecordUtil  # the sink's framing (CRC32C)

        for split, rows in records.items():
            (Path(out_dir) / split).mkdir(parents=True, exist_ok=True)
            with open(Path(out_dir) / split / "bare.tfrecord", "wb") as handle:
                for record in rows:
                    _TFRecordUtil.write_record(handle, record)
    seconds["write"] = clock() - phase
    stats = build_stats(counts.values, "bare", clock() - start)
    return BareResult(records, stats, {k: round(v, 4) for k, v in seconds.items()})


# === The Beam job ===


def _beam():
    import apache_beam as beam

    return beam


def make_instances_fn(spm_path: str, options: InstanceOptions):
    """The DoFn (built lazily so that importing this module does not import Beam)."""
    beam = _beam()
    from apache_beam.metrics import Metrics

    class MakeInstancesFn(beam.DoFn):
        """Document -> serialized instances, tagged "train" (main) or "validation"; counted.

        The SentencePiece model is loaded once per DoFn instance (`setup`); counts are summed per
        bundle and handed to Beam's counters in `finish_bundle`.
        """

        def __init__(self, spm_path: str, options: InstanceOptions):
            self._spm_path = spm_path
            self._options = options

        def setup(self):
            self._processor = load_sentencepiece(self._spm_path)
            self._special = SpecialIds.from_processor(self._processor)
            self._word_starts = word_start_ids(self._processor)
            self._counters: dict[str, Any] = {}

        def start_bundle(self):
            self._counts = StatCounts()

        def process(self, doc: Mapping[str, Any]) -> Iterator[Any]:
            result = document_instances(doc, self._processor, self._special, self._options,
                                        self._word_starts)
            self._counts.add(result)
            if result.split == "validation":
                for instance in result.instances:
                    yield beam.pvalue.TaggedOutput("validation", instance.to_bytes())
            elif result.split == "train":
                for instance in result.instances:
                    yield instance.to_bytes()

        def finish_bundle(self):
            for name, value in self._counts.values.items():
                if name not in self._counters:
                    self._counters[name] = Metrics.counter(NAMESPACE, name)
                self._counters[name].inc(value)
            self._counts = StatCounts()

    return MakeInstancesFn(spm_path, options)


def build_pipeline(pipeline, docs_pattern: str, spm_path: str, out_dir: str,
                   options: InstanceOptions, num_shards: int = 1) -> None:
    """read docs -> instances per split -> `<out_dir>/<split>/instances-*.tfrecord`."""
    beam = _beam()
    outputs = (
        pipeline
        | "ReadDocs" >> beam.io.ReadFromParquet(
            docs_pattern, columns=["id", "kind", "text", "sentences", "split"])
        | "MakeInstances" >> beam.ParDo(make_instances_fn(spm_path, options)).with_outputs(
            "validation", main="train")
    )
    for split in SPLITS:
        _ = outputs[split] | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
            f"{out_dir}/{split}/{SHARD_PREFIX}", file_name_suffix=".tfrecord",
            num_shards=max(0, num_shards))


def run_pipeline(docs_pattern: str, spm_path: str | Path, out_dir: str | Path,
                 options: InstanceOptions, beam_args: Sequence[str] = (),
                 num_shards: int = 1) -> dict[str, Any]:
    """Run the job (removing earlier outputs first); write and return stats.json and schema.json.

    Raises `NotReconciled` when the counts do not add up or disagree with the files on disk.
    """
    from pipelines import beam_options

    out_dir = as_path(out_dir)
    clear_outputs(out_dir)
    pipeline_options = beam_options.pipeline_options(beam_args)
    log.info("pretraining-data: running on %s", beam_options.describe(pipeline_options))
    start = time.perf_counter()
    beam = _beam()
    pipeline = beam.Pipeline(options=pipeline_options)
    build_pipeline(pipeline, docs_pattern, str(spm_path), str(out_dir), options, num_shards)
    result = pipeline.run()
    result.wait_until_finish()
    counts = {name: value for (_, name), value in counter_values(result, [NAMESPACE]).items()}
    stats = build_stats(counts, beam_options.runner_name(pipeline_options),
                        time.perf_counter() - start)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    problems = reconcile(stats, out_dir)
    if problems:
        raise NotReconciled(problems)
    schema = build_schema(spm_path, options, stats, out_dir)
    (out_dir / "schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    return stats


def clear_outputs(out_dir: Path | RemotePath) -> None:
    """Remove the previous run's outputs so that no stale shard survives beside new ones."""
    for split in SPLITS:
        remove_tree(out_dir / split)
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    for name in ("stats.json", "schema.json"):
        (out_dir / name).unlink(missing_ok=True)


def shard_files(out_dir: str | Path | RemotePath, split: str) -> list[Path | RemotePath]:
    return sorted((as_path(out_dir) / split).glob(f"{SHARD_PREFIX}-*.tfrecord"), key=str)


def count_tfrecords(path: Path | RemotePath) -> int:
    """Records in a TFRecord file, read from its framing (length, CRCs) without TensorFlow."""
    count = 0
    with path.open("rb") as handle:
        while True:
            header = handle.read(12)
            if not header:
                return count
            if len(header) < 12:
                raise ValueError(f"{path}: truncated TFRecord header after {count} records")
            (length,) = struct.unpack("<Q", header[:8])
            handle.seek(length + 4, 1)
            count += 1


def reconcile(stats: Mapping[str, Any], out_dir: Path | None = None) -> list[str]:
    """Everything that does not add up (empty when the run reconciles)."""
    problems = []
    read, used, skipped = (stats["documents_read"], stats["documents_used"],
                           stats["documents_skipped"])
    if read != used + skipped:
        problems.append(f"documents read {read} != used {used} + skipped {skipped}")
    if sum(stats["skipped_by_reason"].values()) != skipped:
        problems.append("skipped_by_reason does not sum to documents_skipped")
    if sum(stats["documents"].values()) != used:
        problems.append("documents per split do not sum to documents_used")
    for split in SPLITS:
        if sum(stats["sop_labels"][split].values()) != stats["instances"][split]:
            problems.append(f"{split}: SOP labels do not sum to the instances")
        if out_dir is not None:
            on_disk = sum(count_tfrecords(p) for p in shard_files(out_dir, split))
            if on_disk != stats["instances"][split]:
                problems.append(f"{split}: {on_disk} instances on disk, counters say "
                                f"{stats['instances'][split]}")
    return problems


def spm_fingerprint(spm_path: str | Path) -> str:
    """SHA-256 of the SentencePiece model bytes (`pretrain` checks its tokenizer against it)."""
    return hashlib.sha256(as_path(spm_path).read_bytes()).hexdigest()


def build_schema(spm_path: str | Path, options: InstanceOptions, stats: Mapping[str, Any],
                 out_dir: Path) -> dict[str, Any]:
    """schema.json: what the instance files hold, for `albert_tf.instances` and for people."""
    processor = load_sentencepiece(spm_path)
    special = SpecialIds.from_processor(processor)
    return {
        "format": SCHEMA_VERSION,
        "features": {name: {"dtype": dtype, "description": text}
                     for name, (dtype, text) in FEATURES.items()},
        "sequence_length": options.sequence_length,
        "vocabulary_size": processor.get_piece_size(),
        "special_token_ids": asdict(special),
        "sop_labels": {str(k): v for k, v in SOP_LABEL_NAMES.items()},
        "spm_model": {"path": str(spm_path), "sha256": spm_fingerprint(spm_path)},
        "options": {**asdict(options), "kinds": list(options.kinds)},
        "splits": {
            split: {
                "files": [str(p.relative_to(out_dir)) for p in shard_files(out_dir, split)],
                "documents": stats["documents"][split],
                "instances": stats["instances"][split],
                "tokens": stats["tokens"][split],
            }
            for split in SPLITS
        },
    }


# === The command ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--sequence-length", type=int, default=128,
                        help="tokens per instance with [CLS] and two [SEP]; `pretrain` pads to it "
                        "(default: %(default)s)")
    parser.add_argument("--sop-swap-probability", type=float, default=0.5,
                        help="chance that segments A and B are swapped (SOP label 1) "
                        "(default: %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=0.05,
                        help="fraction of documents in the validation split, by a hash of "
                        "their text, so copies of a text share a side (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds each document's segment cuts and swaps (default: %(default)s)")
    parser.add_argument("--min-tokens", type=int, default=5,
                        help="skip documents with fewer tokens (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(TEXT_KINDS),
                        help="document kinds to use, comma-separated (default: %(default)s)")
    parser.add_argument("--include-evaluation-splits", action="store_true",
                        help="also pretrain on labelled documents of the test and validation "
                        "splits (default: skipped, so that evaluations stay clean)")
    parser.add_argument("--split-single-sentences", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="cut a one-sentence chunk at a word boundary near its middle into "
                        "segments A and B, so that it trains SOP too (default: on; --no-split-"
                        "single-sentences leaves it a single segment, masked-LM only)")
    parser.add_argument("--min-split-tokens", type=int, default=8,
                        help="shortest one-sentence chunk that is cut (default: %(default)s)")
    parser.add_argument("--spm-model", default=None,
                        help="SentencePiece model (default: the vocab stage's spm.model; for "
                        "`pretrain --init-from-preset`, the preset's: assets/tokenizer/"
                        "vocabulary.spm of a keras-hub preset, spiece.model of a Hugging Face "
                        "ALBERT checkpoint)")
    parser.add_argument("--num-shards", type=int, default=1,
                        help="TFRecord files per split (default: %(default)s; 0 lets the runner "
                        "choose)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Run the job; 2 for bad options or missing inputs, 1 if the counts fail to reconcile."""
    ws = ws_lib.workspace_from_args(args)
    try:
        options = InstanceOptions(
            sequence_length=args.sequence_length,
            swap_probability=args.sop_swap_probability,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            min_tokens=args.min_tokens,
            kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
            include_evaluation_splits=args.include_evaluation_splits,
            split_single_sentences=args.split_single_sentences,
            min_split_tokens=args.min_split_tokens,
        )
    except ValueError as error:
        log.error("pretraining-data: %s", error)
        return 2
    spm_path = args.spm_model or str(ws.spm_model)
    if not args.spm_model and not ws.spm_model.exists():
        log.error("pretraining-data: no SentencePiece model at %s; run `opinionrec vocab` first",
                  ws.spm_model)
        return 2
    if not list(ws.docs.glob("*.parquet")):
        log.error("pretraining-data: no documents in %s; run `opinionrec ingest` first", ws.docs)
        return 2
    params = {**asdict(options), "kinds": list(options.kinds), "num_shards": args.num_shards,
              "spm_model": args.spm_model}
    inputs = {"ingest": "stage:ingest",
              "vocab": args.spm_model if args.spm_model else "stage:vocab"}
    out_dir = ws.pretraining_data
    if (out_dir / "schema.json").exists() and ws_lib.skip_if_fresh(args, ws, STAGE, params,
                                                                    inputs):
        return 0
    try:
        with ws_lib.stage_run(ws, STAGE, params, inputs) as record:
            stats = run_pipeline(str(ws.docs / "*.parquet"), spm_path, out_dir, options,
                                 beam_args, args.num_shards)
            record["summary"] = {k: stats[k] for k in (
                "documents_read", "documents_used", "documents_skipped", "instances")}
            print_summary(stats, out_dir)
    except NotReconciled as error:
        for problem in error.problems:
            log.error("pretraining-data: counts do not reconcile: %s", problem)
        return 1
    return 0


def print_summary(stats: Mapping[str, Any], out_dir: Path) -> None:
    reasons = ", ".join(f"{k} {v}" for k, v in stats["skipped_by_reason"].items() if v) or "none"
    lines = [(
        f"pretraining-data: read {stats['documents_read']} documents = used "
        f"{stats['documents_used']} + skipped {stats['documents_skipped']} ({reasons}) "
        f"[{stats['runner']}, {stats['wall_s']:.1f} s]"
    )]
    for split in SPLITS:
        sop = stats["sop_labels"][split]
        lines.append(
            f"  {split:<11} {stats['documents'][split]:>7} docs {stats['instances'][split]:>8} "
            f"instances ({sop['swapped']} swapped, {sop['single_segment']} single-segment), "
            f"{stats['tokens'][split]} tokens  {out_dir / split}/"
        )
    lines.append(f"  truncated   {stats['truncated_sentences']} over-long sentences "
                 f"({stats['truncated_tokens']} tokens dropped)")
    lines.append(f"  schema      {out_dir / 'schema.json'}")
    print("\n".join(lines))
