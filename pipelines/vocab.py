"""`opinionrec vocab`: train the SentencePiece vocabulary and mine the aspect lexicon."""

from __future__ import annotations

import argparse
import json
import logging

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--vocabulary-size", type=int, default=8000,
                        help="SentencePiece pieces; smaller if the corpus is small (default: %(default)s)")
    parser.add_argument("--max-aspects", type=int, default=30,
                        help="aspects to keep in the mined lexicon (default: %(default)s)")
    parser.add_argument("--min-aspect-count", type=int, default=5,
                        help="times a term must appear near an opinion word (default: %(default)s)")


class VocabularyTooSmall(Exception):
    """SentencePiece cannot fit the corpus' characters into the asked vocabulary size."""


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """Train the vocabulary and mine aspects; 2 when the vocabulary size cannot fit the text."""
    try:
        return _run(args)
    except VocabularyTooSmall as error:
        log.error("vocab: %s", error)
        return 2


def _run(args: argparse.Namespace) -> int:
    from albert_tf.tokenizer import train_sentencepiece
    from pipelines import aspect_mining_zh
    from pipelines.aspect_mining import mine_aspects, product_words
    from pipelines.corpus import read_docs, read_parquet_dir

    ws = ws_lib.workspace_from_args(args)
    params = {
        "vocabulary_size": args.vocabulary_size,
        "max_aspects": args.max_aspects,
        "min_aspect_count": args.min_aspect_count,
    }
    inputs = {"ingest": "stage:ingest"}
    if ws_lib.skip_if_fresh(args, ws, "vocab", params, inputs):
        return 0
    with ws_lib.stage_run(ws, "vocab", params, inputs) as record:
        docs = read_docs(ws.docs, columns=["title", "text", "sentences", "item"])
        lines = []
        for title, sentences, text in zip(docs["title"], docs["sentences"], docs["text"]):
            if isinstance(title, str) and title:  # a missing title reads back as NaN
                lines.append(title)
            if sentences is not None and len(sentences):
                lines.extend(sentences)
            elif isinstance(text, str) and text:  # a rating without text has none
                lines.append(text)
        log.info("vocab: training SentencePiece on %d lines", len(lines))
        try:
            train_sentencepiece(lines, ws.spm_model, vocabulary_size=args.vocabulary_size)
        except RuntimeError as error:
            if "required_chars" not in str(error):
                raise
            # Chinese text needs thousands of single-character pieces before any merges.
            raise VocabularyTooSmall(
                f"--vocabulary-size {args.vocabulary_size} is smaller than the number of distinct "
                "characters the corpus needs (Chinese text needs thousands); raise it, e.g. to "
                "the default 8000") from None

        reviews = docs[docs["kind"] == "review"]
        source = reviews if len(reviews) else docs
        review_sentences = [s for row in source["sentences"] if row is not None for s in row]
        titles = []
        if ws.items.exists() and any(ws.items.glob("*.parquet")):
            titles = list(read_parquet_dir(ws.items, ["title"])["title"])
        chinese = aspect_mining_zh.is_chinese_corpus(review_sentences)
        if chinese:
            # The items' own names ("手机", "酒店" where the items are categories) are no aspects.
            words = ({str(i) for i in source["item"].dropna().unique()}
                     | {t for t in titles if isinstance(t, str)})  # a missing title is NaN
            log.info("vocab: Chinese reviews; mining aspects by the noun-opinion pattern")
            lexicon = aspect_mining_zh.mine_aspects(
                review_sentences, max_aspects=args.max_aspects,
                min_count=args.min_aspect_count, product_words=words)
        else:
            review_texts = [t for t in source["text"] if isinstance(t, str)]
            words, origin = product_words(titles, review_texts)
            log.info("vocab: product type words (not aspects), from %s: %s", origin,
                     ", ".join(sorted(words)) or "none")
            lexicon = mine_aspects(
                review_sentences, max_aspects=args.max_aspects, min_count=args.min_aspect_count,
                product_words=words,
            )
        ws.aspect_lexicon.write_text(json.dumps(lexicon.to_json(), indent=2) + "\n")

        import sentencepiece as spm

        pieces = spm.SentencePieceProcessor(model_file=str(ws.spm_model)).get_piece_size()
        record["summary"] = {"pieces": pieces, "aspects": lexicon.names,
                             "language": "zh" if chinese else "en"}
        log.info("vocab: %d pieces -> %s", pieces, ws.spm_model)
        log.info("vocab: %d aspects -> %s: %s", len(lexicon.names), ws.aspect_lexicon,
                 ", ".join(lexicon.names[:12]) + (" ..." if len(lexicon.names) > 12 else ""))
    return 0
