"""The pretraining-data Beam job, its bare-loop twin, the tf.data reader and the resumable order."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
import sentencepiece as spm

from albert_tf.instances import (
    BothOrders,
    Instances,
    bucket_lengths,
    bucket_maskers,
    bucketed_dataset,
    epoch_plan,
    instance_dataset,
    load_instances,
    mask_generator_from_schema,
    read_schema,
    swapped_orientation,
    token_fraction,
)
from albert_tf.pretraining import NO_SOP_LABEL, example_order
from pipelines import cli
from pipelines.corpus import held_out, split_key
from pipelines.pretraining_data import (
    SPLITS,
    InstanceOptions,
    SpecialIds,
    chunk_instance,
    count_tfrecords,
    is_validation,
    pack_chunks,
    reconcile,
    run_pipeline,
    run_pretraining_data_bare,
    within_sentence_cut,
    word_start_ids,
)
from pipelines.records import DOC_SCHEMA, read_table

SEQUENCE_LENGTH = 48
SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def as_docs(corpus: list[list[str]], kind: str = "review") -> list[dict]:
    return [{"id": f"doc{i:05d}", "kind": kind, "text": " ".join(s), "sentences": s}
            for i, s in enumerate(corpus)]


def segments_of(tokens: list[int], segment_ids: list[int]) -> tuple[list[int], list[int]]:
    """(first, second) content tokens of `[CLS] first [SEP] second [SEP]`, checking the layout."""
    assert tokens[0] == SPECIAL.cls
    first_sep = tokens.index(SPECIAL.sep)
    assert segment_ids[: first_sep + 1] == [0] * (first_sep + 1)
    assert segment_ids[first_sep + 1 :] == [1] * (len(tokens) - first_sep - 1)
    second = tokens[first_sep + 1 : -1]
    if second:
        assert tokens[-1] == SPECIAL.sep
    return tokens[1:first_sep], second


# === Per-document functions (no Beam, no workspace) ===


def test_chunks_fill_the_budget_at_sentence_boundaries_and_truncate_long_sentences():
    sentences = [[10] * 4, [11] * 5, [12] * 3, [13] * 20, [14] * 2, []]
    chunks = pack_chunks(sentences, max_tokens=10)
    assert chunks == [[[10] * 4, [11] * 5], [[12] * 3], [[13] * 10], [[14] * 2]]


def test_an_instance_is_cls_a_sep_b_sep_with_the_segments_swapped_or_not():
    chunk = [[10, 11], [12], [13, 14, 15]]
    labels = Counter()
    for seed in range(200):
        tokens, segments, label = chunk_instance(chunk, random.Random(seed), 0.5, SPECIAL)
        labels[label] += 1
        assert tokens.count(SPECIAL.sep) == 2
        first, second = segments_of(tokens, segments)
        a, b = (second, first) if label == 1 else (first, second)
        assert a + b == [10, 11, 12, 13, 14, 15]  # a cut at a sentence boundary, nothing lost
        assert len(a) in (2, 3)
    assert labels[0] > 50 and labels[1] > 50
    tokens, segments, label = chunk_instance([[10, 11]], random.Random(0), 0.5, SPECIAL)
    assert (tokens, segments, label) == ([2, 10, 11, 3], [0, 0, 0, 0], NO_SOP_LABEL)


def test_a_one_sentence_chunk_is_cut_at_a_word_start_in_its_middle():
    sentence = list(range(10, 22))  # 12 tokens; even ids begin a word
    word_starts = {i for i in sentence if i % 2 == 0}
    labels, cuts = Counter(), Counter()
    for seed in range(300):
        tokens, segments, label = chunk_instance([sentence], random.Random(seed), 0.5, SPECIAL,
                                                 word_starts, min_split_tokens=8)
        first, second = segments_of(tokens, segments)
        a, b = (second, first) if label == 1 else (first, second)
        assert a + b == sentence
        assert b[0] in word_starts and 3 <= len(a) <= 9
        labels[label] += 1
        cuts[len(a)] += 1
    assert labels[0] > 100 and labels[1] > 100
    assert set(cuts) == {4, 6, 8}  # every word start of the middle half, none outside it
    # Too short to cut: a single segment, masked-LM only.
    tokens, _, label = chunk_instance([sentence[:7]], random.Random(0), 0.5, SPECIAL,
                                      word_starts, min_split_tokens=8)
    assert label == NO_SOP_LABEL and tokens.count(SPECIAL.sep) == 1


def test_a_sentence_without_word_starts_is_cut_anywhere_in_its_middle():
    # CJK pieces seldom begin with "▁": the middle half is cut anyway.
    cuts = {within_sentence_cut(list(range(8)), random.Random(s), word_starts=set())
            for s in range(200)}
    assert cuts == {2, 3, 4, 5, 6}
    assert within_sentence_cut([5, 6], random.Random(0), set()) == 1


def test_one_sentence_documents_train_sop_unless_splitting_is_off(spm_model):
    processor = spm.SentencePieceProcessor(model_file=str(spm_model))
    word_starts = word_start_ids(processor)
    assert word_starts and all(processor.id_to_piece(i).startswith("\u2581") for i in word_starts)
    english = "The battery life is excellent but the screen scratches far too easily."
    chinese = "电池很好，音质一般。价格便宜，质量不错。"
    docs = as_docs([[english], [chinese]])
    on = run_pretraining_data_bare(docs, spm_model, validation_fraction=0.0, serialize=False)
    off = run_pretraining_data_bare(docs, spm_model, validation_fraction=0.0, serialize=False,
                                    split_single_sentences=False)
    for instance, text in zip(on.records["train"], (english, chinese)):
        assert instance.sop_label in (0, 1)
        first, second = segments_of(instance.token_ids, instance.segment_ids)
        a, b = (second, first) if instance.sop_label == 1 else (first, second)
        assert a + b == processor.encode(text)
        if text == english:
            assert b[0] in word_starts
    assert [i.sop_label for i in off.records["train"]] == [NO_SOP_LABEL, NO_SOP_LABEL]
    assert on.stats["sop_labels"]["train"]["single_segment"] == 0


def test_swap_rate_is_about_half_and_seeded_per_document(spm_model):
    docs = as_docs([[f"Sentence {i} opens.", f"Then {i} closes."] for i in range(2000)])
    result = run_pretraining_data_bare(docs, spm_model, sequence_length=SEQUENCE_LENGTH,
                                       validation_fraction=0.0, serialize=False)
    labels = np.array([i.sop_label for i in result.records["train"]])
    assert len(labels) == 2000 and set(labels) == {0, 1}
    assert 0.45 < labels.mean() < 0.55
    # A document's cuts and swaps depend on its id and the seed only, not on its neighbours.
    alone = run_pretraining_data_bare(docs[7:8], spm_model, sequence_length=SEQUENCE_LENGTH,
                                      validation_fraction=0.0, serialize=False)
    assert alone.records["train"][0].sop_label == labels[7]
    reseeded = run_pretraining_data_bare(docs, spm_model, sequence_length=SEQUENCE_LENGTH,
                                         validation_fraction=0.0, seed=1, serialize=False)
    assert not np.array_equal([i.sop_label for i in reseeded.records["train"]], labels)


def test_short_and_empty_documents_are_skipped_with_reasons(spm_model):
    docs = as_docs([["The battery life is excellent."], ["Ok."], []])
    docs[2]["text"] = "  "
    docs.append({"id": "x", "kind": "other", "text": "Some text here.", "sentences": None})
    test_gold = {"id": "t", "kind": "labelled", "text": "The screen is bright and sharp.",
                 "sentences": ["The screen is bright and sharp."], "split": "test"}
    docs.append(test_gold)
    stats = run_pretraining_data_bare(docs, spm_model, min_tokens=5).stats
    assert stats["skipped_by_reason"] == {"kind_not_selected": 1, "evaluation_split": 1,
                                          "no_text": 1, "too_few_tokens": 1}
    assert (stats["documents_read"], stats["documents_used"]) == (5, 1)
    assert reconcile(stats) == []
    # Opting in pretrains on the evaluation text too.
    stats = run_pretraining_data_bare(docs, spm_model, min_tokens=5,
                                      include_evaluation_splits=True).stats
    assert (stats["documents_used"], stats["skipped_by_reason"]["evaluation_split"]) == (2, 0)


def test_example_order_is_a_pure_function_of_position():
    whole = example_order(10, seed=7, start=0, count=35)
    # Every epoch is a permutation.
    for epoch in range(3):
        assert sorted(whole[epoch * 10 : epoch * 10 + 10]) == list(range(10))
    # Resuming at any position continues the same stream.
    np.testing.assert_array_equal(example_order(10, seed=7, start=13, count=22), whole[13:])
    assert not np.array_equal(example_order(10, seed=8, start=0, count=10), whole[:10])


# === The Beam job on a small generated workspace ===


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("pretraining_data")
    for stage in (
        ["sample-data", "--reviews", "200", "--users", "30", "--items", "10", "--news", "60",
         "--impressions", "50"],
        ["ingest"],
        ["vocab", "--vocabulary-size", "300", "--min-aspect-count", "2"],
        # A short sequence length, so that some reviews fill several instances.
        ["pretraining-data", "--sequence-length", str(SEQUENCE_LENGTH),
         "--validation-fraction", "0.2"],
    ):
        assert cli.main([stage[0], "--workspace", str(ws), *stage[1:]]) == 0, stage[0]
    return ws


@pytest.fixture(scope="module")
def written(workspace):
    """Every instance on disk, by split, as Python lists."""
    out = {}
    for split in SPLITS:
        instances = load_instances(workspace / "pretraining_data", split)
        out[split] = [
            {"tokens": t, "segments": s, "label": int(label), "doc": d.decode(), "index": int(i)}
            for t, s, label, d, i in zip(
                instances.token_ids.to_list(), instances.segment_ids.to_list(),
                instances.sop_label, instances.doc_id, instances.instance_index)
        ]
    return out


def test_every_instance_fits_and_is_laid_out_as_cls_a_sep_b_sep(written):
    labels = Counter()
    for rows in written.values():
        for row in rows:
            tokens, label = row["tokens"], row["label"]
            assert len(tokens) <= SEQUENCE_LENGTH
            first, second = segments_of(tokens, row["segments"])
            assert first
            if label == NO_SOP_LABEL:
                assert tokens.count(SPECIAL.sep) == 1 and not second
            else:
                assert tokens.count(SPECIAL.sep) == 2 and second
            assert SPECIAL.pad not in tokens and SPECIAL.mask not in tokens
            labels[label] += 1
    pairs = labels[0] + labels[1]
    assert pairs > 200 and 0.4 < labels[1] / pairs < 0.6


def test_documents_are_split_whole_by_their_text(workspace, written):
    by_split = {split: {r["doc"] for r in rows} for split, rows in written.items()}
    assert by_split["train"] and by_split["validation"]
    assert not by_split["train"] & by_split["validation"]
    texts = {d["id"]: d["text"] for d in read_table(workspace / "ingest" / "docs",
                                                    DOC_SCHEMA).to_pylist()}
    for split, docs in by_split.items():
        assert all(is_validation(split_key(texts[d]), 0.2) == (split == "validation")
                   for d in docs)
    ids = sorted(by_split["train"] | by_split["validation"])
    keys = [split_key(texts[d]) for d in ids]
    assert held_out(keys, 0.2) == [is_validation(k, 0.2) for k in keys]  # the split pretrain had


def test_copies_of_a_text_share_a_split(workspace):
    """Amazon repeats a review on every variant of a product (other id, same text): the copies
    fall on one side, so no held-out document has its exact text in training."""
    docs = [d for d in read_table(workspace / "ingest" / "docs", DOC_SCHEMA).to_pylist()
            if d["kind"] == "review"][:60]
    copies = [{**d, "id": d["id"] + ":copy", "text": "  " + d["text"].upper() + " "}
              for d in docs]
    run = run_pretraining_data_bare(docs + copies, workspace / "vocab" / "spm.model",
                                    sequence_length=SEQUENCE_LENGTH, validation_fraction=0.5,
                                    serialize=False)
    split_of = {r.doc_id: split for split, rows in run.records.items() for r in rows}
    pairs = [(split_of[d["id"]], split_of[d["id"] + ":copy"]) for d in docs if d["id"] in split_of]
    assert len(pairs) > 40 and {a for a, _ in pairs} == {"train", "validation"}
    assert all(a == b for a, b in pairs)


def test_segments_cover_the_tokenized_documents_in_order(workspace, written):
    processor = spm.SentencePieceProcessor(model_file=str(workspace / "vocab" / "spm.model"))
    docs = read_table(workspace / "ingest" / "docs", DOC_SCHEMA).to_pylist()
    text_of = {d["id"]: d for d in docs}
    rebuilt: dict[str, list[int]] = {}
    rows = sorted((r for rs in written.values() for r in rs), key=lambda r: (r["doc"], r["index"]))
    for row in rows:
        first, second = segments_of(row["tokens"], row["segments"])
        a, b = (second, first) if row["label"] == 1 else (first, second)
        rebuilt.setdefault(row["doc"], []).extend(a + b)
    stats = json.loads((workspace / "pretraining_data" / "stats.json").read_text())
    assert len(rebuilt) == stats["documents_used"]
    budget = SEQUENCE_LENGTH - 3
    for doc_id, tokens in rebuilt.items():
        doc = text_of[doc_id]
        sentences = doc["sentences"] or [doc["text"]]
        expected = [t for ids in processor.encode(sentences) for t in ids[:budget]]
        assert tokens == expected, doc_id


def test_counts_reconcile_with_the_documents_and_the_files(workspace, written):
    out = workspace / "pretraining_data"
    stats = json.loads((out / "stats.json").read_text())
    schema = read_schema(out)
    docs = read_table(workspace / "ingest" / "docs", DOC_SCHEMA)
    assert stats["documents_read"] == docs.num_rows
    assert stats["documents_read"] == stats["documents_used"] + stats["documents_skipped"]
    assert reconcile(stats, out) == []
    for split in SPLITS:
        assert stats["instances"][split] == schema["splits"][split]["instances"] == \
            len(written[split])
        assert stats["documents"][split] == len({r["doc"] for r in written[split]})
        labels = Counter(r["label"] for r in written[split])
        assert stats["sop_labels"][split] == {"in_order": labels[0], "swapped": labels[1],
                                              "single_segment": labels[NO_SOP_LABEL]}
    assert schema["sequence_length"] == SEQUENCE_LENGTH
    assert schema["vocabulary_size"] == 300
    assert schema["special_token_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert set(schema["features"]) >= {"token_ids", "segment_ids", "sop_label", "doc_id"}


def test_runs_are_deterministic_and_match_the_bare_loop(workspace, written, tmp_path):
    out = workspace / "pretraining_data"
    schema = read_schema(out)
    options = InstanceOptions(**{**schema["options"], "kinds": tuple(schema["options"]["kinds"])})
    spm_path = workspace / "vocab" / "spm.model"
    run_pipeline(str(workspace / "ingest" / "docs" / "*.parquet"), spm_path, tmp_path, options,
                 num_shards=2)
    assert len(list((tmp_path / "train").glob("*.tfrecord"))) == 2
    for split in SPLITS:
        again = load_instances(tmp_path, split)
        assert again.token_ids.to_list() == [r["tokens"] for r in written[split]]
        np.testing.assert_array_equal(again.sop_label, [r["label"] for r in written[split]])

    docs = read_table(workspace / "ingest" / "docs", DOC_SCHEMA).to_pylist()
    bare = run_pretraining_data_bare(docs, spm_path, **schema["options"],
                                     out_dir=tmp_path / "bare")
    beam_stats = json.loads((out / "stats.json").read_text())
    assert {k: v for k, v in bare.stats.items() if k not in ("runner", "wall_s")} == \
        {k: v for k, v in beam_stats.items() if k not in ("runner", "wall_s")}
    for split in SPLITS:
        assert count_tfrecords(tmp_path / "bare" / split / "bare.tfrecord") == \
            len(written[split])
        from_bare = Instances.from_records(bare.records[split])
        assert from_bare.token_ids.to_list() == [r["tokens"] for r in written[split]]


def test_reader_yields_masked_padded_batches_in_a_resumable_order(workspace, written):
    out = workspace / "pretraining_data"
    schema = read_schema(out)
    train = load_instances(out, "train")
    masker = mask_generator_from_schema(schema)
    batches = list(instance_dataset(train, masker, 8, SEQUENCE_LENGTH, num_steps=4))
    assert len(batches) == 4
    masks = masker.mask_selection_length
    order = example_order(len(train), 0, 0, 32)
    for step, (x, y, w) in enumerate(batches):
        assert x["token_ids"].shape == x["segment_ids"].shape == x["padding_mask"].shape == \
            (8, SEQUENCE_LENGTH)
        assert x["mask_positions"].shape == y["mlm"].shape == w["mlm"].shape == (8, masks)
        assert y["sop"].shape == w["sop"].shape == (8,)
        for row, index in enumerate(order[step * 8 : step * 8 + 8]):
            original = written["train"][index]["tokens"]
            tokens = x["token_ids"][row].numpy()
            length = len(original)
            assert int(x["padding_mask"][row].numpy().sum()) == length
            assert (tokens[length:] == SPECIAL.pad).all()
            # Masked positions hold the original token as the label; others are untouched.
            chosen = x["mask_positions"][row].numpy()[w["mlm"][row].numpy() > 0]
            assert len(chosen) >= 1
            np.testing.assert_array_equal(y["mlm"][row].numpy()[: len(chosen)],
                                          np.asarray(original)[chosen])
            untouched = np.setdiff1d(np.arange(length), chosen)
            np.testing.assert_array_equal(tokens[untouched], np.asarray(original)[untouched])
            label = written["train"][index]["label"]
            assert int(y["sop"][row]) == max(label, 0)
            assert float(w["sop"][row]) == (label != NO_SOP_LABEL)
    # Starting at step 2 gives the batches a full run sees at step 2 (masks aside).
    resumed = list(instance_dataset(train, masker, 8, SEQUENCE_LENGTH, start_step=2, num_steps=2))
    for (x, y, _), (x_full, y_full, _) in zip(resumed, batches[2:]):
        np.testing.assert_array_equal(x["segment_ids"], x_full["segment_ids"])
        np.testing.assert_array_equal(y["sop"], y_full["sop"])


def test_bucket_lengths_double_up_to_the_sequence_length():
    assert bucket_lengths(128) == [16, 32, 64, 128]
    assert bucket_lengths(48) == [16, 32, 48]
    assert bucket_lengths(16) == [16]
    assert token_fraction(np.array([16, 10, 100]), [16, 32, 64, 128]) == 126 / (16 + 16 + 128)


def test_swapping_a_pair_moves_both_segments_and_their_segment_ids():
    tokens = np.array([2, 10, 11, 3, 12, 3])
    segments = np.array([0, 0, 0, 0, 1, 1])
    swapped, swapped_segments = swapped_orientation(tokens, segments)
    assert swapped.tolist() == [2, 12, 3, 10, 11, 3]
    assert swapped_segments.tolist() == [0, 0, 0, 1, 1, 1]
    back, back_segments = swapped_orientation(swapped, swapped_segments)
    assert back.tolist() == tokens.tolist() and back_segments.tolist() == segments.tolist()


def test_both_orders_hold_each_pair_in_text_order_and_swapped(written):
    train = Instances.from_records([])  # empty input is fine
    assert len(BothOrders.from_instances(train)) == 0
    rows = written["train"]
    instances = Instances(*_ragged(rows))
    both = BothOrders.from_instances(instances)
    n = len(rows)
    tokens = both.token_ids.to_list()
    for i, row in enumerate(rows):
        if row["label"] == NO_SOP_LABEL:
            assert tokens[i] == tokens[n + i] == row["tokens"]
            assert both.sop_label[i] == both.sop_label[n + i] == NO_SOP_LABEL
            continue
        stored = i if row["label"] == 0 else n + i
        assert tokens[stored] == row["tokens"]
        first, second = segments_of(tokens[i], both.segment_ids[i].numpy().tolist())
        swapped_first, swapped_second = segments_of(tokens[n + i],
                                                    both.segment_ids[n + i].numpy().tolist())
        assert (swapped_first, swapped_second) == (second, first)
        assert (both.sop_label[i], both.sop_label[n + i]) == (0, 1)


def _ragged(rows):
    import tensorflow as tf

    return (tf.ragged.constant([r["tokens"] for r in rows], tf.int32),
            tf.ragged.constant([r["segments"] for r in rows], tf.int32),
            np.array([r["label"] for r in rows], np.int32),
            np.array([r["doc"].encode() for r in rows], object),
            np.array([r["index"] for r in rows], np.int64))


def test_an_epoch_plan_uses_each_instance_at_most_once_in_its_own_bucket():
    lengths = np.array([5, 20, 40, 100, 16, 17, 33, 64, 65, 128] * 8)
    buckets = [16, 32, 64, 128]
    is_pair = np.arange(len(lengths)) % 2 == 0
    plan = epoch_plan(lengths, buckets, 256, seed=3, epoch=0, is_pair=is_pair)
    n = len(lengths)
    seen = np.concatenate([rows for _, rows in plan]) % n
    assert len(seen) == len(set(seen.tolist()))
    for bucket, rows in plan:
        assert len(rows) == 256 // buckets[bucket]
        assert all(lengths[r % n] <= buckets[bucket] for r in rows)
        assert bucket == 0 or all(lengths[r % n] > buckets[bucket - 1] for r in rows)
        assert all(is_pair[r % n] for r in rows if r >= n)  # only pairs are ever swapped
    again = epoch_plan(lengths, buckets, 256, seed=3, epoch=0, is_pair=is_pair)
    assert all((a[0], a[1].tolist()) == (b[0], b[1].tolist()) for a, b in zip(plan, again))
    other = epoch_plan(lengths, buckets, 256, seed=3, epoch=1, is_pair=is_pair)
    assert [r.tolist() for _, r in other] != [r.tolist() for _, r in plan]


def test_bucketed_batches_are_short_masked_resumable_and_swap_afresh(workspace, written):
    out = workspace / "pretraining_data"
    schema = read_schema(out)
    train = load_instances(out, "train")
    both = BothOrders.from_instances(train)
    maskers = bucket_maskers(schema, SEQUENCE_LENGTH)
    assert sorted(maskers) == [16, 32, 48]
    budget = 8 * SEQUENCE_LENGTH
    batches = list(bucketed_dataset(both, maskers, budget, SEQUENCE_LENGTH, num_steps=12))
    assert len(batches) == 12
    lengths_seen = set()
    by_tokens: dict[tuple, list[dict]] = {}  # copies of a text (one split now) share tokens
    for r in written["train"]:
        by_tokens.setdefault(tuple(r["tokens"]), []).append(r)
    for x, y, w in batches:
        length = x["token_ids"].shape[1]
        lengths_seen.add(length)
        assert x["token_ids"].shape[0] == budget // length
        assert x["mask_positions"].shape[1] == maskers[length].mask_selection_length
        real = x["padding_mask"].numpy().sum(axis=1)
        assert (real <= length).all() and (real > (0 if length == 16 else 16)).all()
        for row in range(x["token_ids"].shape[0]):
            tokens = x["token_ids"][row].numpy()[: real[row]].copy()
            chosen = x["mask_positions"][row].numpy()[w["mlm"][row].numpy() > 0]
            tokens[chosen] = y["mlm"][row].numpy()[: len(chosen)]
            segments = x["segment_ids"][row].numpy()[: real[row]].tolist()
            # (expected SOP label, written instance): as written, or a pair shown the other way
            candidates = [(max(r["label"], 0), r) for r in by_tokens.get(tuple(tokens.tolist()),
                                                                          [])]
            if segments.count(1):
                swapped, _ = swapped_orientation(tokens, np.asarray(segments))
                candidates += [(1 - r["label"], r)
                               for r in by_tokens.get(tuple(swapped.tolist()), [])
                               if r["label"] != NO_SOP_LABEL]
            assert any(int(y["sop"][row]) == label
                       and float(w["sop"][row]) == (r["label"] != NO_SOP_LABEL)
                       for label, r in candidates)
    assert len(lengths_seen) > 1
    resumed = list(bucketed_dataset(both, maskers, budget, SEQUENCE_LENGTH, start_step=7,
                                    num_steps=5))
    for (x, y, _), (x_full, y_full, _) in zip(resumed, batches[7:]):
        np.testing.assert_array_equal(x["segment_ids"], x_full["segment_ids"])
        np.testing.assert_array_equal(y["sop"], y_full["sop"])
    # Evaluation reads every held-out instance exactly once.
    held_out = load_instances(out, "validation")
    evaluation = list(bucketed_dataset(held_out, maskers, budget, SEQUENCE_LENGTH,
                                       shuffle=False))
    shapes = {x["token_ids"].shape for x, _, _ in evaluation}
    for x, _, _ in evaluation:  # filler rows fit their bucket too
        length = x["token_ids"].shape[1]
        assert (x["mask_positions"].numpy() < length).all()
        assert (x["padding_mask"].numpy().sum(axis=1) > (0 if length == 16 else 16)).all()
    assert len(shapes) == len({s[1] for s in shapes})  # one shape per bucket: one XLA program
    rows = sum(int((w["mlm"].numpy().sum(axis=1) > 0).sum()) for _, _, w in evaluation)
    assert rows <= len(written["validation"])  # filler rows carry no weight
    pairs = sum(float(w["sop"].numpy().sum()) for _, _, w in evaluation)
    assert pairs == sum(r["label"] != NO_SOP_LABEL for r in written["validation"])


def test_if_stale_skips_and_pretrain_asks_for_the_instances(workspace, tmp_path):
    record = json.loads((workspace / "pretraining_data" / "_stage.json").read_text())
    assert cli.main(["pretraining-data", "--workspace", str(workspace), "--if-stale",
                     "--sequence-length", str(SEQUENCE_LENGTH),
                     "--validation-fraction", "0.2"]) == 0
    assert json.loads((workspace / "pretraining_data" / "_stage.json").read_text())["run_id"] == \
        record["run_id"]
    with pytest.raises(SystemExit, match="run `opinionrec pretraining-data` first"):
        cli.main(["pretrain", "--workspace", str(tmp_path)])
