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
from collections.abc import Iterable, Mapping
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
                               mask_selection_rate: float = 0.15):
    """The masker for instances of this schema: special tokens are never masked."""
    special = schema["special_token_ids"]
    return make_mask_generator(
        vocabulary_size=schema["vocabulary_size"],
        mask_token_id=special["mask"],
        unselectable_token_ids=sorted(set(special.values())),
        sequence_length=sequence_length or schema["sequence_length"],
        mask_selection_rate=mask_selection_rate,
    )


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
        masked = masker(tokens)
        shape = [None, sequence_length]
        x = {
            "token_ids": masked["token_ids"].to_tensor(default_value=pad_id, shape=shape),
            "segment_ids": segments.to_tensor(default_value=0, shape=shape),
            "padding_mask": tf.sequence_mask(tokens.row_lengths(), sequence_length),
            "mask_positions": tf.cast(masked["mask_positions"], tf.int32),
        }
        y = {"mlm": masked["mask_ids"], "sop": tf.maximum(label, 0)}
        weights = {"mlm": masked["mask_weights"],
                   "sop": tf.cast(label != NO_SOP_LABEL, tf.float32)}
        return x, y, weights

    ds = tf.data.Dataset.from_tensor_slices(order)
    ds = ds.batch(batch_size, drop_remainder=shuffle).map(gather)
    ds = ds.map(mask_and_pad, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
