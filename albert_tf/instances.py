"""The instances `opinionrec pretraining-data` writes, read, batched and masked in tf.data.

The job writes unpadded `[CLS] A [SEP] B [SEP]` token ids, segment ids and an SOP label per
tf.train.Example, under `<dir>/{train,validation}/*.tfrecord`, with `<dir>/schema.json` saying
the sequence length, vocabulary size, special token ids and SentencePiece fingerprint. Here:

- `load_instances` reads a split into memory in a canonical order (by document id, then position
  in the document), whatever the runner's sharding, so `example_order` gives a resumed run exactly
  the batches it would have seen;
- `instance_dataset` gathers batches in that order, masks them with keras-hub's
  `MaskedLMMaskGenerator` (dynamic: every epoch masks other tokens) and pads them to the
  sequence length, giving `(x, {"mlm", "sop"} labels, {"mlm", "sop"} weights)` for
  `AlbertPretrainer`.

This module knows the file layout only through `schema.json` and the feature names; it imports
neither Beam nor the pipelines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from albert_tf.pretraining import NO_SOP_LABEL, example_order, make_mask_generator

SCHEMA_FILE = "schema.json"
SPLITS = ("train", "validation")


def read_schema(directory: str | Path) -> dict:
    """The `schema.json` of a pretraining-data folder (FileNotFoundError when absent)."""
    path = Path(directory) / SCHEMA_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no {SCHEMA_FILE} in {directory}: run `opinionrec pretraining-data` first"
        )
    return json.loads(path.read_text())


def feature_spec() -> dict[str, tf.io.RaggedFeature | tf.io.FixedLenFeature]:
    """The `tf.io.parse_example` spec of an instance (token and segment ids come back ragged)."""
    return {
        "token_ids": tf.io.RaggedFeature(tf.int64),
        "segment_ids": tf.io.RaggedFeature(tf.int64),
        "sop_label": tf.io.FixedLenFeature([], tf.int64),
        "doc_id": tf.io.FixedLenFeature([], tf.string),
        "kind": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "instance_index": tf.io.FixedLenFeature([], tf.int64),
    }


def tfrecord_files(directory: str | Path, split: str) -> list[str]:
    """A split's TFRecord shards, sorted."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: {split!r}")
    return [str(p) for p in sorted((Path(directory) / split).glob("*.tfrecord"))]


def parsed_dataset(files: Iterable[str], batch_size: int = 4096) -> tf.data.Dataset:
    """Batches of parsed instances in file order (streaming; for inspection and loading)."""
    spec = feature_spec()
    ds = tf.data.TFRecordDataset(list(files)).batch(batch_size)
    return ds.map(lambda records: tf.io.parse_example(records, spec))


@dataclass
class Instances:
    """A split held in memory: ragged token and segment ids, SOP labels and document ids."""

    token_ids: tf.RaggedTensor  # int32 [instances, (length)]
    segment_ids: tf.RaggedTensor  # int32 [instances, (length)]
    sop_label: np.ndarray  # int32 [instances]: 0, 1 or NO_SOP_LABEL
    doc_id: np.ndarray  # bytes [instances]
    instance_index: np.ndarray  # int64 [instances]

    def __len__(self) -> int:
        return len(self.sop_label)

    @property
    def max_length(self) -> int:
        return int(tf.reduce_max(self.token_ids.row_lengths())) if len(self) else 0

    def take(self, count: int) -> Instances:
        """The first `count` instances (in canonical order)."""
        return Instances(self.token_ids[:count], self.segment_ids[:count],
                         self.sop_label[:count], self.doc_id[:count], self.instance_index[:count])

    @classmethod
    def from_parsed(cls, batches: Iterable[Mapping[str, tf.Tensor]]) -> Instances:
        """Collect parsed batches and sort them by (document id, position in the document)."""
        tokens, segments, lengths, labels, doc_ids, indices = [], [], [], [], [], []
        for batch in batches:
            tokens.append(batch["token_ids"].flat_values.numpy().astype(np.int32))
            segments.append(batch["segment_ids"].flat_values.numpy().astype(np.int32))
            lengths.append(batch["token_ids"].row_lengths().numpy())
            labels.append(batch["sop_label"].numpy().astype(np.int32))
            doc_ids.append(batch["doc_id"].numpy())
            indices.append(batch["instance_index"].numpy())
        if not labels:
            empty = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int32),
                                                     tf.zeros([0], tf.int64))
            return cls(empty, empty, np.zeros([0], np.int32), np.zeros([0], object),
                       np.zeros([0], np.int64))
        row_lengths = np.concatenate(lengths)
        doc_id = np.concatenate(doc_ids)
        instance_index = np.concatenate(indices)
        order = np.lexsort((instance_index, doc_id))
        token_ids = tf.RaggedTensor.from_row_lengths(np.concatenate(tokens), row_lengths)
        segment_ids = tf.RaggedTensor.from_row_lengths(np.concatenate(segments), row_lengths)
        return cls(
            tf.gather(token_ids, order), tf.gather(segment_ids, order),
            np.concatenate(labels)[order], doc_id[order], instance_index[order],
        )

    @classmethod
    def from_records(cls, records: Iterable[bytes]) -> Instances:
        """From serialized tf.train.Examples (e.g. what `run_pretraining_data_bare` returns)."""
        records = list(records)
        if not records:
            return cls.from_parsed([])
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(records, tf.string)).batch(4096)
        spec = feature_spec()
        return cls.from_parsed(ds.map(lambda r: tf.io.parse_example(r, spec)))


def load_instances(directory: str | Path, split: str) -> Instances:
    """A split of a pretraining-data folder, in canonical order; checked against its schema."""
    schema = read_schema(directory)
    files = tfrecord_files(directory, split)
    instances = Instances.from_parsed(parsed_dataset(files)) if files else \
        Instances.from_parsed([])
    expected = schema["splits"][split]["instances"]
    if len(instances) != expected:
        raise ValueError(f"{directory}/{split}: {len(instances)} instances on disk, schema.json "
                         f"says {expected}; run `opinionrec pretraining-data` again")
    if instances.max_length > schema["sequence_length"]:
        raise ValueError(f"{directory}/{split}: an instance of {instances.max_length} tokens "
                         f"exceeds the schema's sequence length {schema['sequence_length']}")
    return instances


def mask_generator_from_schema(schema: Mapping, sequence_length: int | None = None,
                               mask_selection_rate: float = 0.15, max_ngram: int = 1):
    """The masker for instances of this schema: special tokens are never masked; spans of up
    to `max_ngram` tokens with `max_ngram` > 1."""
    special = schema["special_token_ids"]
    return make_mask_generator(
        vocabulary_size=schema["vocabulary_size"],
        mask_token_id=special["mask"],
        unselectable_token_ids=sorted(set(special.values())),
        sequence_length=sequence_length or schema["sequence_length"],
        mask_selection_rate=mask_selection_rate,
        max_ngram=max_ngram,
    )


def masked_batch(masker, tokens: tf.RaggedTensor, segments: tf.RaggedTensor, label: tf.Tensor,
                 length: int, pad_id: int = 0):
    """`(x, {"mlm", "sop"} labels, {"mlm", "sop"} weights)` of ragged instances: masked, then
    padded to `length`; single-segment instances carry no SOP weight."""
    masked = masker(tokens)
    shape = [None, length]
    x = {
        "token_ids": masked["token_ids"].to_tensor(default_value=pad_id, shape=shape),
        "segment_ids": segments.to_tensor(default_value=0, shape=shape),
        "padding_mask": tf.sequence_mask(tokens.row_lengths(), length),
        "mask_positions": tf.cast(masked["mask_positions"], tf.int32),
    }
    y = {"mlm": masked["mask_ids"], "sop": tf.maximum(label, 0)}
    weights = {"mlm": masked["mask_weights"], "sop": tf.cast(label != NO_SOP_LABEL, tf.float32)}
    return x, y, weights


def instance_dataset(
    instances: Instances,
    masker,
    batch_size: int,
    sequence_length: int,
    pad_id: int = 0,
    seed: int = 0,
    start_step: int = 0,
    num_steps: int | None = None,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batches of `(x, {"mlm", "sop"} labels, {"mlm", "sop"} weights)` from step `start_step`.

    `x` holds `token_ids`, `segment_ids`, `padding_mask` (`[batch, sequence_length]`) and
    `mask_positions` (`[batch, masks]`). With `shuffle=True` the instances follow
    `example_order(seed)` (seeded epoch shuffles, a pure function of the step, for exact resumption)
    and every batch is full; with `shuffle=False` they are read once in order (for evaluation).
    """
    if instances.max_length > sequence_length:
        raise ValueError(f"`sequence_length` {sequence_length} is shorter than the longest "
                         f"instance ({instances.max_length} tokens). Received: {sequence_length}")
    if shuffle:
        if not len(instances):
            raise ValueError("No instances to train on.")
        num_steps = num_steps if num_steps is not None else 1
        order = example_order(len(instances), seed, start_step * batch_size,
                              num_steps * batch_size)
    else:
        order = np.arange(len(instances))
    token_ids, segment_ids = instances.token_ids, instances.segment_ids
    labels = tf.constant(instances.sop_label, tf.int32)

    def gather(index):
        return tf.gather(token_ids, index), tf.gather(segment_ids, index), tf.gather(labels, index)

    def mask_and_pad(tokens, segments, label):
        return masked_batch(masker, tokens, segments, label, sequence_length, pad_id)

    ds = tf.data.Dataset.from_tensor_slices(order)
    ds = ds.batch(batch_size, drop_remainder=shuffle).map(gather)
    ds = ds.map(mask_and_pad, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# === Length-bucketed batches (the default for pretraining) ===
#
# Most review and news instances are far shorter than the sequence length (on the real corpus of
# ../shared/data the median is 21 of 128 tokens): padding every batch to 128 spends ~3/4 of the
# compute on padding. Instead every instance goes to the smallest bucket length that holds it
# (16, 32, 64, ... up to the sequence length) and each batch holds one bucket, with as many rows
# as fit a fixed token budget (`batch_size * sequence_length` slots). XLA compiles one program per
# bucket. The plan of an epoch is a pure function of (seed, epoch), so a resumed run sees exactly
# the batches it would have.


def bucket_lengths(sequence_length: int, smallest: int = 16) -> list[int]:
    """Powers of two from `smallest` below `sequence_length`, then `sequence_length` itself."""
    lengths = []
    length = smallest
    while length < sequence_length:
        lengths.append(length)
        length *= 2
    return lengths + [sequence_length]


def swapped_orientation(tokens: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`[CLS] A [SEP] B [SEP]` -> `[CLS] B [SEP] A [SEP]` with its segment ids."""
    first_end = int((segments == 0).sum())  # [CLS] A [SEP]
    cls, first, sep = tokens[0], tokens[1 : first_end - 1], tokens[first_end - 1]
    second = tokens[first_end:-1]
    out = np.concatenate([[cls], second, [sep], first, [sep]]).astype(tokens.dtype)
    seg = np.concatenate([np.zeros(len(second) + 2), np.ones(len(first) + 1)])
    seg = seg.astype(segments.dtype)
    return out, seg


@dataclass
class BothOrders:
    """Each instance in text order (rows `0..n-1`) and swapped (rows `n..2n-1`), for SOP swaps
    drawn afresh every epoch. Single-segment instances are the same in both halves (label -1)."""

    token_ids: tf.RaggedTensor
    segment_ids: tf.RaggedTensor
    sop_label: np.ndarray  # [2n]: 0 in order, 1 swapped, -1 single segment
    lengths: np.ndarray  # [n]
    is_pair: np.ndarray  # [n] bool

    @classmethod
    def from_instances(cls, instances: Instances) -> BothOrders:
        tokens = instances.token_ids.numpy() if len(instances) else []
        segments = instances.segment_ids.numpy() if len(instances) else []
        in_order_t, in_order_s, swapped_t, swapped_s = [], [], [], []
        for t, s, label in zip(tokens, segments, instances.sop_label):
            t, s = np.asarray(t, np.int32), np.asarray(s, np.int32)
            if label == NO_SOP_LABEL:
                in_order_t.append(t), in_order_s.append(s)
                swapped_t.append(t), swapped_s.append(s)
                continue
            other_t, other_s = swapped_orientation(t, s)
            if label == 0:
                in_order_t.append(t), in_order_s.append(s)
                swapped_t.append(other_t), swapped_s.append(other_s)
            else:
                in_order_t.append(other_t), in_order_s.append(other_s)
                swapped_t.append(t), swapped_s.append(s)
        rows_t, rows_s = in_order_t + swapped_t, in_order_s + swapped_s
        lengths = np.array([len(t) for t in in_order_t], np.int64)
        is_pair = instances.sop_label != NO_SOP_LABEL
        row_lengths = np.concatenate([lengths, lengths])
        flat = (lambda rows: np.concatenate(rows) if rows else np.zeros([0], np.int32))
        labels = np.concatenate([np.where(is_pair, 0, NO_SOP_LABEL),
                                 np.where(is_pair, 1, NO_SOP_LABEL)]).astype(np.int32)
        return cls(
            tf.RaggedTensor.from_row_lengths(flat(rows_t), row_lengths),
            tf.RaggedTensor.from_row_lengths(flat(rows_s), row_lengths),
            labels, lengths, is_pair,
        )

    def __len__(self) -> int:
        return len(self.lengths)


def epoch_plan(lengths: np.ndarray, buckets: list[int], batch_tokens: int, seed: int, epoch: int,
               is_pair: np.ndarray | None = None, swap_probability: float = 0.5,
               ) -> list[tuple[int, np.ndarray]]:
    """One epoch's batches as (bucket index, row indices), a pure function of (seed, epoch).

    Instances are shuffled, grouped by bucket into batches of `batch_tokens // bucket` rows
    (remainders dropped: the next epoch's shuffle puts them elsewhere), and the batches shuffled.
    With `is_pair`, each pair instance is swapped with `swap_probability` (row index `+ n`).
    """
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    rows = order.copy()
    if is_pair is not None:
        swap = (rng.random(n) < swap_probability) & is_pair
        rows = np.where(swap[order], order + n, order)
    bucket_of = np.searchsorted(np.asarray(buckets), lengths[order])
    batches: list[tuple[int, np.ndarray]] = []
    for b, length in enumerate(buckets):
        chosen = rows[bucket_of == b]
        size = max(1, batch_tokens // length)
        batches += [(b, chosen[i * size : (i + 1) * size]) for i in range(len(chosen) // size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def planned_batches(lengths: np.ndarray, buckets: list[int], batch_tokens: int, seed: int,
                    start_step: int, num_steps: int, **plan_kwargs
                    ) -> list[tuple[int, np.ndarray]]:
    """Batches `start_step .. start_step + num_steps` of the endless sequence of epoch plans."""
    out: list[tuple[int, np.ndarray]] = []
    epoch, first = 0, 0
    while len(out) < num_steps:
        plan = epoch_plan(lengths, buckets, batch_tokens, seed, epoch, **plan_kwargs)
        if not plan:
            raise ValueError("No batch fits: fewer instances than one batch of any bucket.")
        if first + len(plan) > start_step:
            skip = max(0, start_step - first)
            out += plan[skip : skip + num_steps - len(out)]
        first += len(plan)
        epoch += 1
    return out


def bucketed_dataset(
    data: Instances | BothOrders,
    maskers: Mapping[int, object],
    batch_tokens: int,
    sequence_length: int,
    pad_id: int = 0,
    seed: int = 0,
    start_step: int = 0,
    num_steps: int | None = None,
    shuffle: bool = True,
    swap_probability: float = 0.5,
    teacher: tuple[np.ndarray, np.ndarray] | None = None,
) -> tf.data.Dataset:
    """Length-bucketed `(x, {"mlm", "sop"} labels, {"mlm", "sop"} weights)` batches.

    `maskers` maps each bucket length (`bucket_lengths(sequence_length)`) to a
    `MaskedLMMaskGenerator` with a mask count to match. With `shuffle=True` (training) batches
    follow `planned_batches` from `start_step`; given `BothOrders`, SOP swaps are redrawn every
    epoch. With `shuffle=False` (evaluation) every instance is read once, in order, by bucket.
    `teacher` = (embeddings [n, d], weights [n]) adds a `"teacher"` target per instance (for
    distillation; weight 0 where an instance has no teacher embedding).
    """
    buckets = sorted(maskers)
    if buckets[-1] < sequence_length:
        raise ValueError(f"The largest bucket {buckets[-1]} is shorter than `sequence_length` "
                         f"{sequence_length}.")
    if isinstance(data, BothOrders):
        token_ids, segment_ids, labels_np = data.token_ids, data.segment_ids, data.sop_label
        lengths, plan_kwargs = data.lengths, {"is_pair": data.is_pair,
                                              "swap_probability": swap_probability}
    else:
        token_ids, segment_ids, labels_np = data.token_ids, data.segment_ids, data.sop_label
        lengths, plan_kwargs = data.token_ids.row_lengths().numpy(), {}
    if len(lengths) and lengths.max() > sequence_length:
        raise ValueError(f"`sequence_length` {sequence_length} is shorter than the longest "
                         f"instance ({lengths.max()} tokens).")
    if shuffle:
        if not len(lengths):
            raise ValueError("No instances to train on.")
        plan = planned_batches(lengths, buckets, batch_tokens, seed, start_step,
                               num_steps if num_steps is not None else 1, **plan_kwargs)
    else:
        bucket_of = np.searchsorted(np.asarray(buckets), lengths)
        plan = []
        for b, length in enumerate(buckets):
            rows = np.flatnonzero(bucket_of == b)
            size = max(1, batch_tokens // length)
            # The last batch of a bucket is filled up with copies of its first row, marked
            # -(row + 1) (weight 0), so that every batch of a bucket has one shape and XLA
            # compiles one program per bucket; a copy fits the bucket, as the row does.
            for i in range(0, len(rows), size):
                batch = rows[i : i + size]
                filler = np.full(size - len(batch), -(batch[0] + 1), dtype=batch.dtype)
                plan.append((b, np.concatenate([batch, filler])))
    labels = tf.constant(labels_np, tf.int32)
    n = len(lengths)
    if teacher is not None:
        if len(teacher[0]) != n or len(teacher[1]) != n:
            raise ValueError(f"`teacher` must hold one embedding and weight per instance ({n}). "
                             f"Received: {len(teacher[0])} embeddings, {len(teacher[1])} weights")
        teacher_embeddings = tf.constant(teacher[0], tf.float32)
        teacher_weights = tf.constant(teacher[1], tf.float32)

    def bucket_dataset(b: int) -> tf.data.Dataset:
        length = buckets[b]
        masker = maskers[length]
        rows = [r for bb, r in plan if bb == b] or [np.zeros([0], np.int64)]
        index = tf.RaggedTensor.from_row_lengths(
            np.concatenate(rows).astype(np.int64), [len(r) for r in rows])

        def make(index):
            real = tf.cast(index >= 0, tf.float32)  # -(r + 1): a filler copy of row r
            index = tf.where(index >= 0, index, -index - 1)
            x, y, weights = masked_batch(
                masker, tf.gather(token_ids, index), tf.gather(segment_ids, index),
                tf.gather(labels, index), length, pad_id)
            weights = {"mlm": weights["mlm"] * real[:, None], "sop": weights["sop"] * real}
            if teacher is not None:
                instance = index % n  # a BothOrders row -> its instance
                y["teacher"] = tf.gather(teacher_embeddings, instance)
                weights["teacher"] = tf.gather(teacher_weights, instance) * real
            return x, y, weights

        return tf.data.Dataset.from_tensor_slices(index).map(
            make, num_parallel_calls=tf.data.AUTOTUNE)

    used = sorted({b for b, _ in plan})
    choice = tf.data.Dataset.from_tensor_slices(
        np.array([used.index(b) for b, _ in plan], np.int64))
    ds = tf.data.Dataset.choose_from_datasets([bucket_dataset(b) for b in used], choice,
                                              stop_on_empty_dataset=False)
    return ds.prefetch(tf.data.AUTOTUNE)


def bucket_maskers(schema: Mapping, sequence_length: int, mask_selection_rate: float = 0.15,
                   smallest_bucket: int = 16, max_ngram: int = 1) -> dict[int, object]:
    """One masker per bucket length, each with a mask count that fits its length."""
    return {length: mask_generator_from_schema(schema, length, mask_selection_rate, max_ngram)
            for length in bucket_lengths(sequence_length, smallest_bucket)}


def token_fraction(lengths: np.ndarray, buckets: list[int]) -> float:
    """Real tokens per padded slot when each instance is padded to its bucket's length."""
    if not len(lengths):
        return 1.0
    padded = np.asarray(buckets)[np.searchsorted(np.asarray(buckets), lengths)]
    return float(lengths.sum() / padded.sum())


# === Both batchings behind one call (for `opinionrec pretrain` and the ALBERT-vs-BERT race) ===

@dataclass
class PretrainingBatches:
    """What a pretraining loop needs: `train(start_step, num_steps)` -> that stretch of training
    batches; `held_out` -> the evaluation batches (masks drawn once and cached: every evaluation
    sees the same ones); `batch_tokens` token slots per step, in batches padded to one of
    `buckets`; `real_tokens_per_step` -> non-padding tokens in an average step."""

    train: Callable[[int, int], tf.data.Dataset]
    held_out: tf.data.Dataset | None
    batch_tokens: int
    buckets: list[int]
    real_tokens_per_step: float


def pretraining_batches(
    train: Instances,
    held_out: Instances,
    schema: Mapping,
    batching: str = "bucketed",
    batch_size: int = 64,
    sequence_length: int | None = None,
    seed: int = 0,
    mask_rate: float = 0.15,
    static_sop: bool = False,
    train_teacher: tuple[np.ndarray, np.ndarray] | None = None,
    held_out_teacher: tuple[np.ndarray, np.ndarray] | None = None,
    max_ngram: int = 1,
) -> PretrainingBatches:
    """Training and held-out batches, `"bucketed"` (by length, `batch_size x sequence_length`
    token slots per step; SOP swaps redrawn every epoch unless `static_sop`) or `"padded"` (every
    instance padded to `sequence_length`). Training masks `mask_rate` of the tokens, in spans of
    up to `max_ngram` tokens (ALBERT's n-gram masking); held-out batches always mask 15% of the
    tokens one by one, so accuracies compare across runs. Teacher targets need buckets."""
    if batching not in ("bucketed", "padded"):
        raise ValueError(f"`batching` must be 'bucketed' or 'padded'. Received: {batching!r}")
    if (train_teacher is not None or held_out_teacher is not None) and batching != "bucketed":
        raise ValueError("Teacher targets need `batching='bucketed'`.")
    sequence_length = sequence_length or schema["sequence_length"]
    pad_id = schema["special_token_ids"]["pad"]
    batch_tokens = batch_size * sequence_length
    if batching == "bucketed":
        maskers = bucket_maskers(schema, sequence_length, mask_rate, max_ngram=max_ngram)
        eval_ds = bucketed_dataset(
            held_out, bucket_maskers(schema, sequence_length), batch_tokens, sequence_length,
            pad_id, shuffle=False, teacher=held_out_teacher) if len(held_out) else None
        train_data = train if static_sop else BothOrders.from_instances(train)

        def train_ds(start_step: int, num_steps: int) -> tf.data.Dataset:
            return bucketed_dataset(train_data, maskers, batch_tokens, sequence_length, pad_id,
                                    seed=seed, start_step=start_step, num_steps=num_steps,
                                    teacher=train_teacher)
        buckets = bucket_lengths(sequence_length)
    else:
        masker = mask_generator_from_schema(schema, sequence_length, mask_rate, max_ngram)
        eval_ds = instance_dataset(
            held_out, mask_generator_from_schema(schema, sequence_length), batch_size,
            sequence_length, pad_id, shuffle=False) if len(held_out) else None

        def train_ds(start_step: int, num_steps: int) -> tf.data.Dataset:
            return instance_dataset(train, masker, batch_size, sequence_length, pad_id,
                                    seed=seed, start_step=start_step, num_steps=num_steps)
        buckets = [sequence_length]
    lengths = train.token_ids.row_lengths().numpy()
    return PretrainingBatches(
        train=train_ds,
        held_out=eval_ds.cache() if eval_ds is not None else None,
        batch_tokens=batch_tokens,
        buckets=buckets,
        real_tokens_per_step=batch_tokens * token_fraction(lengths, buckets),
    )
