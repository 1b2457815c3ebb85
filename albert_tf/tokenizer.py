"""SentencePiece vocabularies with the special tokens keras-hub's `AlbertTokenizer` expects."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

# Ids as in Google's ALBERT vocabularies: <pad>=0, <unk>=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


def train_sentencepiece(
    sentences: Iterable[str],
    output_path: Path,
    vocabulary_size: int = 8000,
    character_coverage: float = 0.9995,
    model_type: str = "unigram",
    max_sentences: int = 2_000_000,
    seed_sentencepiece_size: int = 1_000_000,
) -> Path:
    """Train a SentencePiece model on `sentences` and write it to `output_path` (`*.model`).

    Case is folded inside the model (`nmt_nfkc_cf`), so the same proto lowercases in TF Serving.
    The vocabulary may come out smaller than asked on a small corpus (`hard_vocab_limit=False`).
    """
    import sentencepiece as spm

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=(s for s in sentences if s and s.strip()),
        model_writer=model,
        vocab_size=vocabulary_size,
        model_type=model_type,
        character_coverage=character_coverage,
        normalization_rule_name="nmt_nfkc_cf",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece=SPECIAL_TOKENS["pad"],
        unk_piece=SPECIAL_TOKENS["unk"],
        bos_piece=SPECIAL_TOKENS["cls"],
        eos_piece=SPECIAL_TOKENS["sep"],
        user_defined_symbols=[SPECIAL_TOKENS["mask"]],
        hard_vocab_limit=False,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        seed_sentencepiece_size=seed_sentencepiece_size,
        max_sentence_length=8192,
        num_threads=2,
        minloglevel=2,
    )
    output_path.write_bytes(model.getvalue())
    return output_path


def preset_sentencepiece(preset: str | Path) -> Path:
    """The SentencePiece model of a pretrained-weights folder: a keras-hub preset keeps it as
    `assets/tokenizer/vocabulary.spm`, a Hugging Face ALBERT checkpoint as `spiece.model`."""
    for relative in ("assets/tokenizer/vocabulary.spm", "spiece.model"):
        path = Path(preset, relative)
        if path.exists():
            return path
    raise FileNotFoundError(f"{preset} has no SentencePiece model (assets/tokenizer/"
                            "vocabulary.spm of a keras-hub preset, or spiece.model of a Hugging "
                            "Face ALBERT checkpoint)")


def sentencepiece_proto(tokenizer, preset: str | Path | None = None) -> bytes:
    """The SentencePiece proto behind a keras-hub `AlbertTokenizer`, as bytes. A tokenizer loaded
    from a preset may hold a path instead of the bytes; with `preset`, that preset's file is read
    (`preset_sentencepiece`)."""
    proto = tokenizer.proto
    if isinstance(proto, bytes):
        return proto
    return Path(preset_sentencepiece(preset) if preset else proto).read_bytes()


def is_wordpiece_preset(preset: str | Path) -> bool:
    """Whether a pretrained-weights folder tokenizes with a WordPiece vocabulary (a BERT-family
    checkpoint: `vocab.txt`, or `assets/tokenizer/vocabulary.txt` once saved as a keras-hub
    preset) rather than SentencePiece."""
    has = lambda *paths: any(Path(preset, p).exists() for p in paths)  # noqa: E731
    return (has("vocab.txt", "assets/tokenizer/vocabulary.txt")
            and not has("spiece.model", "assets/tokenizer/vocabulary.spm"))


def load_preset_tokenizer(preset: str | Path):
    """The tokenizer of a pretrained-weights folder: keras-hub's `BertTokenizer` for WordPiece
    (`WordPieceAlbertTokenizer` for the ALBERT student of a BERT teacher), else `AlbertTokenizer` (or its BERT-equivalent subclass, `SentencePieceBertTokenizer`). Asked
    generically, keras-hub would pick our SentencePiece BERT subclass for any BERT checkpoint."""
    import json

    import keras_hub

    from albert_tf.bert import matching_class

    if not is_wordpiece_preset(preset):
        return keras_hub.models.AlbertTokenizer.from_preset(str(preset))
    # A BERT checkpoint, or the ALBERT student of one (keras-hub config naming AlbertBackbone).
    config = json.loads(Path(preset, "config.json").read_text())
    backbone_cls = (keras_hub.models.AlbertBackbone if config.get("class_name") == "AlbertBackbone"
                    else keras_hub.models.BertBackbone)
    return matching_class(keras_hub.models.BertTokenizer, backbone_cls).from_preset(str(preset))


def load_tokenizer(proto: Path | str | bytes, sequence_length: int | None = None,
                   architecture: str = "albert"):
    """A keras-hub `AlbertTokenizer` over a SentencePiece proto (path or bytes); with
    `architecture="bert"`, its subclass that saves next to the BERT equivalent."""
    import keras_hub

    from albert_tf.bert import BACKBONES, matching_class

    if isinstance(proto, (str, Path)):
        proto = Path(proto).read_bytes()
    cls = matching_class(keras_hub.models.AlbertTokenizer, BACKBONES[architecture])
    return cls(proto=proto, sequence_length=sequence_length)
