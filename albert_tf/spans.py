"""Pieces with character offsets (SentencePiece, or BERT's WordPiece), and BIO tags over them
for term extraction.

An aspect or opinion term is a character span `[start, end)` of the original text. Pieces carry
their own span in that text: SentencePiece's proto reports UTF-8 byte offsets into the original
(unnormalized) text, and the `offset_mapping` encoding used here converts them to `str` indices,
so NFKC + case folding (full-width letters, "ﬁ", "É") never shifts them. Training cuts the
text at every gold span boundary so each piece lies wholly inside or outside a span; inference
tokenizes the whole text, exactly as keras-hub's `AlbertTokenizer` does, and decodes predicted
tags back to spans.

Pure Python on purpose: no TensorFlow, so data pipelines can import it cheaply.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

Span = tuple[int, int]

# One entity type for now. A typed scheme would extend this to ("O", "B-ASP", "I-ASP", "B-OPN",
# "I-OPN", ...): B of type k is 1 + 2k and I of type k is 2 + 2k, which `tags_to_spans` already
# decodes (odd = begin, even > 0 = inside).
TAGS = ("O", "B", "I")
OUTSIDE, BEGIN, INSIDE = 0, 1, 2


@dataclass(frozen=True)
class Piece:
    """One SentencePiece id and the characters `[start, end)` of the original text it covers.

    A piece that starts a word ("▁battery") covers the whitespace before the word too; the
    dummy-prefix piece "▁" before a word that has no piece of its own ("▁", "这家") is
    zero-width at the text's start. Pieces made from one character that normalization expands
    ("ﬁ" -> "f", "in") all cover that character, so offsets of neighbours can overlap there.
    """

    id: int
    start: int
    end: int


def _without_dummy_prefix(proto: bytes) -> bytes:
    """`proto` with `normalizer_spec.add_dummy_prefix = false`, other fields kept byte for byte.

    The `sentencepiece_model_pb2` module shipped with sentencepiece needs a newer protobuf than
    TensorFlow pins, so this parses only the one field it changes with a descriptor built here;
    every other field passes through as an unknown field.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="albert_tf_spm_prefix.proto", package="albert_tf_spm_prefix", syntax="proto2"
    )
    normalizer = file.message_type.add(name="NormalizerSpec")
    normalizer.field.add(name="add_dummy_prefix", number=3, type=field.TYPE_BOOL,
                         label=field.LABEL_OPTIONAL)
    model = file.message_type.add(name="ModelProto")
    model.field.add(name="normalizer_spec", number=3, type=field.TYPE_MESSAGE,
                    type_name=".albert_tf_spm_prefix.NormalizerSpec", label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    message = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("albert_tf_spm_prefix.ModelProto")
    )()
    message.ParseFromString(proto)
    message.normalizer_spec.add_dummy_prefix = False
    return message.SerializeToString()


class PieceAligner:
    """Tokenizes text into `Piece`s, optionally forcing piece boundaries at given offsets.

    `pieces(text)` gives the ids `sp.encode(text)` gives (and keras-hub's `AlbertTokenizer`),
    with character offsets. `pieces(text, cut_at)` encodes the segments between cuts one by
    one. SentencePiece puts a dummy "▁" before every encoded string; that is right for a
    segment at the text's start or next to whitespace (the whole text has a "▁" there too),
    but a segment that continues a word ("battery|-life", "这家|酒店") is encoded by a copy of
    the model without the dummy prefix, so no "▁" or "▁-" that whole-text tokenization never
    produces appears.

    Args:
        proto: a serialized SentencePiece model (e.g. `Path("spm.model").read_bytes()`).
    """

    def __init__(self, proto: bytes):
        import sentencepiece as spm

        self.proto = bytes(proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.proto)
        self._sp_no_prefix = spm.SentencePieceProcessor(
            model_proto=_without_dummy_prefix(self.proto)
        )
        self.pad_id = self._sp.pad_id()
        self.cls_id = self._sp.piece_to_id("[CLS]")
        self.sep_id = self._sp.piece_to_id("[SEP]")
        self.vocabulary_size = self._sp.vocab_size()
        self._space_id = self._sp.piece_to_id("▁")
        self._word_breaks: dict[str, bool] = {}

    def __reduce__(self):
        """Pickles as its proto (Beam ships DoFns holding an aligner to workers)."""
        return (PieceAligner, (self.proto,))

    def _breaks_word(self, char: str) -> bool:
        """Whether SentencePiece's normalizer turns `char` into a word boundary (space, NBSP,
        ideographic space, zero-width space...), not `str.isspace`, which differs on some."""
        if char not in self._word_breaks:
            self._word_breaks[char] = "▁" in self._sp_no_prefix.normalize("a" + char + "a")
        return self._word_breaks[char]

    def _encode(self, text: str, offset: int, prefix: bool) -> list[Piece]:
        """Pieces of `text` at `offset`. SentencePiece gives all of a character that
        normalization expands into several pieces ("ﬁ" -> "f" + "in") to the last of them and
        leaves the others zero-width; those cover the character too, so a span takes them all.
        Only the dummy-prefix "▁" stays zero-width."""
        sp = self._sp if prefix else self._sp_no_prefix
        encoded = sp.encode(text, out_type="offset_mapping", return_bytes=False)
        pieces = []
        for i, (start, end) in zip(encoded["ids"], encoded["offsets"]):
            if start == end and i != self._space_id and start < len(text):
                end = start + 1
            pieces.append(Piece(int(i), offset + start, offset + end))
        return pieces

    def pieces(self, text: str, cut_at: Iterable[int] = ()) -> list[Piece]:
        """The pieces of `text`; every offset in `cut_at` (inside the text) is a piece boundary.

        Offsets are `str` indices into `text`, whatever normalization does to its characters.
        """
        cuts = sorted({c for c in cut_at if 0 < c < len(text)})
        if not cuts:
            return self._encode(text, 0, prefix=True)
        pieces: list[Piece] = []
        for start, end in zip([0] + cuts, cuts + [len(text)]):
            prefix = (start == 0 or self._breaks_word(text[start - 1])
                      or self._breaks_word(text[start]))
            pieces += self._encode(text[start:end], start, prefix)
        return pieces


class WordPieceAligner:
    """`PieceAligner`'s interface for a BERT WordPiece vocabulary (the MiniLM teacher, its
    ALBERT student): BERT's basic tokenization (punctuation and CJK characters split off,
    whitespace dropped; case folding and accent stripping as the keras-hub tokenizer is
    configured), then greedy longest-match WordPiece per word, with
    the character offsets of every piece in the original text. A cut inside a word splits it
    there, the later part continuing with "##" pieces.

    Args:
        vocabulary: the WordPiece vocabulary, in id order (`tokenizer.get_vocabulary()`).
        lowercase: fold case, as keras-hub's tokenizer with `lowercase=True`.
        strip_accents: drop accent marks (after NFD), as with `strip_accents=True`.
    """

    def __init__(self, vocabulary: Sequence[str], lowercase: bool = True,
                 strip_accents: bool = False):
        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self._ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id = self._ids["[PAD]"]
        self.cls_id = self._ids["[CLS]"]
        self.sep_id = self._ids["[SEP]"]
        self.unk_id = self._ids["[UNK]"]
        self.vocabulary_size = len(self.vocabulary)

    def __reduce__(self):
        return (WordPieceAligner, (self.vocabulary, self.lowercase, self.strip_accents))

    def _normalized(self, char: str) -> str:
        if self.strip_accents:
            char = "".join(c for c in unicodedata.normalize("NFD", char)
                           if unicodedata.category(c) != "Mn")
        return char.casefold() if self.lowercase else char

    @staticmethod
    def _splits_off(char: str) -> bool:
        """Punctuation (BERT's: ASCII symbols too) and CJK ideographs are words of their own."""
        code = ord(char)
        if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
            return True
        if unicodedata.category(char).startswith("P"):
            return True
        return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
                or 0x20000 <= code <= 0x2FA1F)

    def _words(self, text: str, cuts: set[int]) -> list[list[tuple[str, int]]]:
        """Words as lists of (normalized character, original index); a cut inside a word is
        marked by an `("", -1)` entry between its segments."""
        words: list[list[tuple[str, int]]] = []
        current: list[tuple[str, int]] = []
        for index, char in enumerate(text):
            if char.isspace() or unicodedata.category(char) in ("Cc", "Cf") or char == "\ufffd":
                if current:
                    words.append(current)
                current = []
                continue
            if self._splits_off(char):
                if current:
                    words.append(current)
                words.append([(c, index) for c in self._normalized(char)] or [(char, index)])
                current = []
                continue
            if index in cuts and current:
                current.append(("", -1))  # segment boundary inside the word
            current.extend((c, index) for c in self._normalized(char))
        if current:
            words.append(current)
        return words

    def _word_pieces(self, chars: list[tuple[str, int]], continuing: bool) -> list[Piece]:
        """Greedy longest-match-first WordPiece of one segment; [UNK] for the whole segment if
        some part has no piece (as BERT does)."""
        text = "".join(c for c, _ in chars)
        if len(text) > 100:
            return [Piece(self.unk_id, chars[0][1], chars[-1][1] + 1)]
        pieces, start = [], 0
        while start < len(text):
            end = len(text)
            found = None
            while end > start:
                candidate = ("##" if start > 0 or continuing else "") + text[start:end]
                if candidate in self._ids:
                    found = self._ids[candidate]
                    break
                end -= 1
            if found is None:
                return [Piece(self.unk_id, chars[0][1], chars[-1][1] + 1)]
            pieces.append(Piece(found, chars[start][1], chars[end - 1][1] + 1))
            start = end
        return pieces

    def pieces(self, text: str, cut_at: Iterable[int] = ()) -> list[Piece]:
        """The WordPiece pieces of `text` with `str` offsets; every offset in `cut_at` is a
        piece boundary."""
        cuts = {c for c in cut_at if 0 < c < len(text)}
        out: list[Piece] = []
        for word in self._words(text, cuts):
            segment: list[tuple[str, int]] = []
            continuing = False
            for char, index in [*word, ("", -1)]:
                if index == -1:
                    if segment:
                        out += self._word_pieces(segment, continuing)
                        continuing = True
                    segment = []
                else:
                    segment.append((char, index))
        return out


_PROBE = "How long does the battery last? It lasts two days, but the keyboard isn't great."


def tokenizes_alike(a, b) -> bool:
    """Whether two aligners give the same pieces (same vocabulary and splitting), so a teacher's
    per-token outputs line up with a student's positions (tag and span distillation)."""
    return (a.vocabulary_size == b.vocabulary_size
            and [p.id for p in a.pieces(_PROBE)] == [p.id for p in b.pieces(_PROBE)])


def aligner_for(tokenizer):
    """The aligner of a keras-hub tokenizer: `PieceAligner` for SentencePiece (ALBERT),
    `WordPieceAligner` for WordPiece (BERT, and the ALBERT student of a BERT teacher)."""
    import keras_hub

    if isinstance(tokenizer, keras_hub.models.BertTokenizer):
        return WordPieceAligner(tokenizer.get_vocabulary(), lowercase=tokenizer.lowercase,
                                strip_accents=tokenizer.strip_accents)
    from albert_tf.tokenizer import sentencepiece_proto

    return PieceAligner(sentencepiece_proto(tokenizer))


def _blank(char: str) -> bool:
    """Whitespace, or an invisible format character (zero-width space, BOM) that SentencePiece's
    normalizer also turns into a word break."""
    return char.isspace() or unicodedata.category(char) == "Cf"


def strip_span(text: str, span: Span) -> Span | None:
    """`span` without the blank characters at its ends; None if nothing else is left."""
    start, end = max(span[0], 0), min(span[1], len(text))
    while start < end and _blank(text[start]):
        start += 1
    while end > start and _blank(text[end - 1]):
        end -= 1
    return (start, end) if start < end else None


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans in text order: the span that starts first wins, the longer on a
    tie; a span overlapping one already kept is dropped (BIO cannot nest or overlap)."""
    kept: list[Span] = []
    for start, end in sorted(set(spans), key=lambda s: (s[0], -s[1])):
        if start < end and (not kept or start >= kept[-1][1]):
            kept.append((start, end))
    return kept


def _covers(piece: Piece, span: Span) -> bool:
    """A piece belongs to a span when they share a character (zero-width pieces never do)."""
    return piece.start < span[1] and piece.end > span[0]


def span_pieces(pieces: Sequence[Piece], spans: Sequence[Span]) -> list[list[int]]:
    """For each of `resolve_overlaps(spans)`, the indices of the pieces that belong to it."""
    return [[i for i, p in enumerate(pieces) if _covers(p, span)]
            for span in resolve_overlaps(spans)]


def spans_to_tags(pieces: Sequence[Piece], spans: Sequence[Span]) -> list[int]:
    """A tag per piece (indices into `TAGS`): B on a span's first piece, I on the rest, O off.

    Spans should be whitespace-stripped (`strip_span`) and, for exact round trips, cut into
    the pieces (`PieceAligner.pieces(text, cut_at=span ends)`); a piece that only partly covers
    a span is tagged as inside it. Overlapping spans: see `resolve_overlaps`.
    """
    tags = [OUTSIDE] * len(pieces)
    for indices in span_pieces(pieces, spans):
        for k, i in enumerate(indices):
            tags[i] = BEGIN if k == 0 else INSIDE
    return tags


def tags_to_spans(pieces: Sequence[Piece], tags: Sequence[int], text: str) -> list[Span]:
    """Character spans of `text` from a tag per piece (`tags` may be shorter: truncation).

    B starts a span, also right after another span; I continues the open span, or starts one
    after O (lenient decoding) or after a span of another type; O closes the open span. Each
    span runs from its first piece's start to its last piece's end, whitespace stripped.
    """
    spans: list[Span] = []
    open_span: list[int] | None = None  # [start, end, type]

    def close() -> None:
        if open_span is not None:
            stripped = strip_span(text, (open_span[0], open_span[1]))
            if stripped is not None:
                spans.append(stripped)

    for piece, tag in zip(pieces, tags):
        tag = int(tag)
        if tag == OUTSIDE:
            close()
            open_span = None
            continue
        kind = (tag - 1) // 2
        if tag % 2 == 1 or open_span is None or open_span[2] != kind:
            close()
            open_span = [piece.start, piece.end, kind]
        else:
            open_span[1] = max(open_span[1], piece.end)
    close()
    return spans


def span_f1(gold: Sequence[Iterable[Span]], predicted: Sequence[Iterable[Span]]) -> dict:
    """Exact-match micro precision, recall and F1 over the spans of many texts."""
    if len(gold) != len(predicted):
        raise ValueError(f"`gold` and `predicted` must align. Received: {len(gold)} and "
                         f"{len(predicted)} texts")
    hits = num_gold = num_predicted = 0
    for g, p in zip(gold, predicted):
        g, p = set(map(tuple, g)), set(map(tuple, p))
        hits += len(g & p)
        num_gold += len(g)
        num_predicted += len(p)
    precision = hits / num_predicted if num_predicted else 0.0
    recall = hits / num_gold if num_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "gold": num_gold, "predicted": num_predicted}
