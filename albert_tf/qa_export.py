"""Export an extractive QA model as `review_qa`: raw `question` and `context` strings in, the
answer span out, for TF Serving.

Everything `albert_tf.qa` does in numpy runs in-graph here, with TF Text ops only (TF Serving
links them) and nothing jit-compiled: tokenization with byte offsets (SentencePiece for ALBERT,
BERT's split + FastWordpiece for a WordPiece vocabulary, the same ids as the Python aligners),
`[CLS] question [SEP] window [SEP]` packing of overlapping context windows, the best span over
all windows against the least "no answer" score, and the no-answer threshold chosen on dev. The
answer is cut from the context by its byte offsets, so it is the context's own characters, and
its character offsets are returned with it.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

_NO_SCORE = -1e9  # the score of an example with no candidate span (an empty context)
# BERT's pre-split (keras-hub `pretokenize`): whitespace dropped, punctuation and CJK kept.
_BLANK_EDGES = r"^[\s\p{Cf}]+|[\s\p{Cf}]+$"


class _SentencePieceOffsets(tf.Module):
    """SentencePiece ids with the byte offsets of each piece in the original text."""

    def __init__(self, proto: bytes):
        super().__init__()
        import tensorflow_text as tf_text

        self.tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)

    def __call__(self, text):
        ids, starts, ends = self.tokenizer.tokenize_with_offsets(text)
        return ids, tf.cast(starts, tf.int64), tf.cast(ends, tf.int64)


class _WordPieceOffsets(tf.Module):
    """BERT tokenization with byte offsets: keras-hub's split on whitespace, punctuation and CJK
    (offsets into the original text), case folding and accent stripping per word, then
    FastWordpiece within each word. A piece of a word whose normalization changed its length
    is clamped to the word."""

    def __init__(self, vocabulary, lowercase: bool, strip_accents: bool):
        super().__init__()
        import tensorflow_text as tf_text
        from keras_hub.src.tokenizers import word_piece_tokenizer as wp

        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.split_pattern = wp.WHITESPACE_PUNCTUATION_AND_CJK_REGEX
        self.keep_pattern = wp.PUNCTUATION_AND_CJK_REGEX
        self.tokenizer = tf_text.FastWordpieceTokenizer(
            vocab=list(vocabulary), token_out_type=tf.int32, suffix_indicator="##",
            unknown_token="[UNK]", no_pretokenization=True)

    def __call__(self, text):
        import tensorflow_text as tf_text

        words, word_starts, word_ends = tf_text.regex_split_with_offsets(
            text, self.split_pattern, self.keep_pattern)
        normalized = words.flat_values
        if self.strip_accents:
            normalized = tf.strings.regex_replace(tf_text.normalize_utf8(normalized, "NFD"),
                                                  r"\p{Mn}", "")
        if self.lowercase:
            normalized = tf_text.case_fold_utf8(normalized)
        ids, starts, ends = self.tokenizer.tokenize_with_offsets(normalized)
        first = tf.cast(word_starts.flat_values, tf.int64)
        last = tf.cast(word_ends.flat_values, tf.int64)
        piece_word = ids.value_rowids()
        base, limit = tf.gather(first, piece_word), tf.gather(last, piece_word)
        starts = tf.minimum(base + tf.cast(starts.flat_values, tf.int64), limit)
        ends = tf.minimum(base + tf.cast(ends.flat_values, tf.int64), limit)
        # The last piece of a word ends where the word ends (normalization may change lengths).
        is_last = tf.concat([piece_word[1:] != piece_word[:-1], [True]], 0)[:tf.size(piece_word)]
        ends = tf.where(is_last, limit, ends)
        rows = tf.gather(ids.row_splits, words.row_splits)  # piece row splits per text

        def regroup(values):
            return tf.RaggedTensor.from_row_splits(values, rows, validate=False)

        return regroup(ids.flat_values), regroup(starts), regroup(ends)


class ReviewQA(tf.Module):
    """`question`, `context` -> `answer`, `answer_start`, `answer_end` (characters, -1 when not
    answered), `score` (best span minus "no answer"), `confidence` (sigmoid of the score minus
    the threshold: 0.5 at the threshold) and `answered` (score above the threshold).

    Args:
        model: a trained `SpanQuestionAnswerer` (Keras 3).
        aligner: the `PieceAligner` or `WordPieceAligner` it was trained with.
        sequence_length, stride, max_question_pieces, max_answer_pieces: as in `albert_tf.qa`.
        threshold: the no-answer threshold (chosen on dev).
    """

    def __init__(self, model, aligner, sequence_length: int, threshold: float,
                 stride: int = 64, max_question_pieces: int = 48, max_answer_pieces: int = 40):
        super().__init__(name="review_qa")
        from albert_tf.spans import WordPieceAligner

        if sequence_length - max_question_pieces - 3 < 1:
            raise ValueError(f"`sequence_length` {sequence_length} leaves no room for a context "
                             f"after a {max_question_pieces}-piece question")
        self.model = model
        if isinstance(aligner, WordPieceAligner):
            self.pieces = _WordPieceOffsets(aligner.vocabulary, aligner.lowercase,
                                            aligner.strip_accents)
        else:
            self.pieces = _SentencePieceOffsets(aligner.proto)
        self.cls_id, self.sep_id, self.pad_id = aligner.cls_id, aligner.sep_id, aligner.pad_id
        self.sequence_length = sequence_length
        self.stride = stride
        self.max_question_pieces = max_question_pieces
        self.max_answer_pieces = max_answer_pieces
        self.threshold = tf.constant(float(threshold), tf.float32)

    def _windows(self, question_ids, context_ids):
        """Packed windows of every example (see `albert_tf.qa.encode_for_qa`): the model inputs,
        each window's example, first context piece, context offset in the row and length."""
        q = question_ids[:, :self.max_question_pieces]
        q_len = q.row_lengths()
        c_len = context_ids.row_lengths()
        room = self.sequence_length - q_len - 3
        step = tf.maximum(tf.constant(1, tf.int64), room - self.stride)
        windows = 1 + (tf.maximum(c_len - room, 0) + step - 1) // step
        example = tf.repeat(tf.range(tf.size(c_len, out_type=tf.int64)), windows)
        first = tf.ragged.range(windows).flat_values * tf.gather(step, example)
        last = tf.minimum(first + tf.gather(room, example), tf.gather(c_len, example))
        base = tf.gather(context_ids.row_starts(), example)
        piece_index = tf.ragged.range(base + first, base + last)
        window_ids = tf.gather(context_ids.flat_values, piece_index)
        q_rows = tf.gather(q, example)
        n = tf.size(example)
        cls = tf.RaggedTensor.from_tensor(tf.fill([n, 1], self.cls_id))
        sep = tf.RaggedTensor.from_tensor(tf.fill([n, 1], self.sep_id))
        ids = tf.concat([cls, q_rows, sep, window_ids, sep], axis=1)
        segments = tf.concat([tf.zeros_like(cls), tf.zeros_like(q_rows), tf.zeros_like(sep),
                              tf.ones_like(window_ids), tf.ones_like(sep)], axis=1)
        inputs = {
            "token_ids": ids.to_tensor(self.pad_id),
            "segment_ids": segments.to_tensor(0),
            "padding_mask": tf.ones_like(ids).to_tensor(0),
        }
        return inputs, example, first, tf.gather(q_len, example) + 2, last - first

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="context")])
    def serve(self, question, context):
        tf.debugging.assert_equal(tf.size(question), tf.size(context),
                                  message="`question` and `context` need one entry each")
        batch = tf.size(context)
        question_ids, _, _ = self.pieces(question)
        context_ids, starts, ends = self.pieces(context)
        inputs, example, first, offset, length = self._windows(question_ids, context_ids)
        logits = tf.cast(self.model(inputs, training=False), tf.float32)
        start_logits, end_logits = logits[..., 0], logits[..., 1]

        width = tf.shape(logits)[1]
        position = tf.range(width, dtype=tf.int64)
        in_context = ((position[None, :] >= offset[:, None])
                      & (position[None, :] < (offset + length)[:, None]))
        span = position[None, :] - position[:, None]  # [start, end]: end - start
        allowed = (span >= 0) & (span < self.max_answer_pieces)
        valid = allowed[None] & in_context[:, :, None] & in_context[:, None, :]
        scores = start_logits[:, :, None] + end_logits[:, None, :]
        scores = tf.where(valid, scores, -float("inf"))
        flat = tf.argmax(tf.reshape(scores, [tf.shape(scores)[0], -1]), axis=-1)
        best = tf.reduce_max(tf.reshape(scores, [tf.shape(scores)[0], -1]), axis=-1)
        best = tf.where(tf.math.is_finite(best), best, _NO_SCORE)
        a, b = flat // tf.cast(width, tf.int64), flat % tf.cast(width, tf.int64)
        null = start_logits[:, 0] + end_logits[:, 0]

        # Per example: the first window with the best span, against the least "no answer".
        example_best = tf.math.unsorted_segment_max(best, example, batch)
        example_null = tf.math.unsorted_segment_min(null, example, batch)
        window = tf.range(tf.size(example), dtype=tf.int64)
        is_best = best >= tf.gather(example_best, example)
        chosen = tf.math.unsorted_segment_min(
            tf.where(is_best, window, tf.int64.max), example, batch)
        chosen = tf.minimum(chosen, tf.size(example, out_type=tf.int64) - 1)
        has_span = tf.gather(example_best, tf.range(batch)) > _NO_SCORE
        base = tf.gather(context_ids.row_starts(), tf.gather(example, chosen))
        start_piece = base + tf.gather(first + a - offset, chosen)
        end_piece = base + tf.gather(first + b - offset, chosen)
        last_piece = tf.maximum(tf.size(starts.flat_values, out_type=tf.int64) - 1, 0)
        safe = lambda i: tf.clip_by_value(i, 0, last_piece)  # noqa: E731
        padded_starts = tf.concat([starts.flat_values, [0]], 0)
        padded_ends = tf.concat([ends.flat_values, [0]], 0)
        start_byte = tf.where(has_span, tf.gather(padded_starts, safe(start_piece)), 0)
        end_byte = tf.where(has_span, tf.gather(padded_ends, safe(end_piece)), 0)

        raw = tf.strings.substr(context, start_byte, tf.maximum(end_byte - start_byte, 0))
        lead = (tf.strings.length(raw)
                - tf.strings.length(tf.strings.regex_replace(raw, r"^[\s\p{Cf}]+", "")))
        text = tf.strings.regex_replace(raw, _BLANK_EDGES, "")
        start_byte = start_byte + tf.cast(lead, tf.int64)
        start_char = tf.strings.length(tf.strings.substr(context, tf.zeros_like(start_byte), start_byte),
                                       "UTF8_CHAR")
        margin = tf.where(has_span, example_best - example_null, _NO_SCORE)
        answered = has_span & (tf.strings.length(text) > 0) & (margin > self.threshold)
        return {
            "answer": tf.where(answered, text, ""),
            "answer_start": tf.where(answered, start_char, -1),
            "answer_end": tf.where(
                answered, start_char + tf.strings.length(text, "UTF8_CHAR"), -1),
            "score": margin,
            "confidence": tf.sigmoid(margin - self.threshold),
            "answered": answered,
        }


def export_review_qa(module: ReviewQA, export_dir: Path) -> Path:
    """Save `module.serve` as the `serving_default` signature of a SavedModel at `export_dir`."""
    export_dir = Path(export_dir)
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir
