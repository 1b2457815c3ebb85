"""The BERT equivalent: keras-hub's `BertBackbone` over this project's SentencePiece vocabulary.

"ALBERT vs BERT under the same budget" needs a BERT that sees exactly ALBERT's ids, so it keeps
the SentencePiece tokenizer (`AlbertTokenizer`) and changes only the encoder. keras-hub's
`from_preset` picks the tokenizer, preprocessor and task classes by the preset's backbone class
(`find_subclass`), so a `BertBackbone` preset needs SentencePiece classes that declare
`backbone_cls = BertBackbone`: these. Import this module before loading such a preset (the task
modules do).
"""

from __future__ import annotations

from pathlib import Path

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="albert_tf")
class SentencePieceBertTokenizer(keras_hub.models.AlbertTokenizer):
    """ALBERT's SentencePiece tokenizer ([CLS], [SEP], [MASK], <pad>) for a `BertBackbone`."""

    backbone_cls = keras_hub.models.BertBackbone


@keras.saving.register_keras_serializable(package="albert_tf")
class SentencePieceBertTextClassifierPreprocessor(
    keras_hub.models.AlbertTextClassifierPreprocessor
):
    """`[CLS] a [SEP] (b [SEP])` packing of ALBERT's tokenizer, for a `BertBackbone`."""

    backbone_cls = keras_hub.models.BertBackbone
    tokenizer_cls = SentencePieceBertTokenizer


@keras.saving.register_keras_serializable(package="albert_tf")
class WordPieceAlbertTokenizer(keras_hub.models.BertTokenizer):
    """BERT's WordPiece tokenizer for an `AlbertBackbone`: the ALBERT student of a BERT teacher
    (`albert_tf.student`) reads the teacher's vocabulary."""

    backbone_cls = keras_hub.models.AlbertBackbone


@keras.saving.register_keras_serializable(package="albert_tf")
class WordPieceAlbertTextClassifierPreprocessor(keras_hub.models.BertTextClassifierPreprocessor):
    """`[CLS] a [SEP] (b [SEP])` packing of BERT's WordPiece tokenizer, for an `AlbertBackbone`."""

    backbone_cls = keras_hub.models.AlbertBackbone
    tokenizer_cls = WordPieceAlbertTokenizer


def wordpiece_for(tokenizer, backbone_cls):
    """The same WordPiece vocabulary and options as `tokenizer`, in the class that saves and
    loads next to `backbone_cls`."""
    cls = matching_class(keras_hub.models.BertTokenizer, backbone_cls)
    if type(tokenizer) is cls:
        return tokenizer
    config = {**tokenizer.get_config(), "vocabulary": tokenizer.get_vocabulary()}
    return cls.from_config(config)


BACKBONES = {"albert": keras_hub.models.AlbertBackbone, "bert": keras_hub.models.BertBackbone}


def architecture_of(backbone) -> str:
    """"albert" or "bert": which of the two encoders `backbone` is."""
    for name, cls in BACKBONES.items():
        if type(backbone) is cls:
            return name
    raise TypeError(f"not an ALBERT or BERT backbone: {type(backbone).__name__}")


def matching_class(cls, backbone_cls):
    """`cls`, or its subclass declaring `backbone_cls = backbone_cls`: keras-hub's own pairing,
    so that what is built for a backbone loads back through `cls.from_preset`."""
    for candidate in (cls, *cls.__subclasses__()):
        if candidate.backbone_cls is backbone_cls:
            return candidate
    raise TypeError(f"no {cls.__name__} for {backbone_cls.__name__}")


def load_backbone(preset: str | Path, **kwargs):
    """The ALBERT or BERT backbone of a keras-hub preset folder (the class its config names)."""
    return keras_hub.models.Backbone.from_preset(str(preset), **kwargs)
