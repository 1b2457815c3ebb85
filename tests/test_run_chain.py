"""`opinionrec run`: the chain's stages and how one --minutes budget is cut for training."""

from __future__ import annotations

import argparse

import pytest

from pipelines import run_chain


@pytest.mark.parametrize("minutes, expected", [(20, (7.5, 5.0)), (30, (13.5, 9.0)),
                                               (5, (1.2, 0.8))])
def test_training_stages_get_what_the_others_leave(minutes, expected):
    assert run_chain.budgets(minutes) == expected


def test_chain_passes_every_input_and_the_budgets():
    args = argparse.Namespace(input=["a.json.gz", "meta.json.gz"], minutes=20.0, config="tiny",
                              encoder="albert")
    chain = run_chain.chain(args)
    stages = dict(chain)
    assert len(stages) == len(chain)  # no stage twice
    assert list(stages) == ["ingest", "vocab", "pretraining-data", "pretrain", "finetune",
                            "features", "describe", "trends", "track", "train-recommender",
                            "export", "report"]
    assert stages["ingest"] == ["--input", "a.json.gz", "--input", "meta.json.gz"]
    assert stages["pretrain"] == ["--config", "tiny", "--max-minutes", "7.5"]
    assert stages["finetune"] == ["--encoder", "albert", "--max-minutes", "5.0"]
    assert stages["train-recommender"] == ["--optional"]  # a review table may have no users


def test_the_student_chain_distils_instead_of_pretraining(monkeypatch):
    args = argparse.Namespace(input=["a.json.gz"], minutes=20.0, config="tiny", encoder="student")
    stages = dict(run_chain.chain(args))
    assert list(stages) == ["ingest", "vocab", "distill", "finetune", "features", "describe",
                            "trends", "track", "train-recommender", "export", "report"]
    assert stages["distill"] == ["--max-minutes", "7.5"]
    assert stages["finetune"] == ["--encoder", "student", "--max-minutes", "5.0"]
    # auto: the student when the teacher is installed, else the from-scratch ALBERT.
    args.encoder = "auto"
    monkeypatch.setattr(run_chain, "teacher_installed", lambda: False)
    assert "pretrain" in dict(run_chain.chain(args))
    monkeypatch.setattr(run_chain, "teacher_installed", lambda: True)
    assert "distill" in dict(run_chain.chain(args))


def test_run_needs_an_input(capsys):
    from pipelines import cli

    with pytest.raises(SystemExit):
        cli.main(["run", "--workspace", "nowhere"])
    assert "--input" in capsys.readouterr().err


@pytest.mark.parametrize("budget, training", [(None, None), (10.0, 9.0), (3.0, 2.4), (0.5, 0.4)])
def test_finetune_keeps_part_of_its_budget_for_scoring_and_export(budget, training):
    from pipelines.finetune import training_minutes

    assert training_minutes(budget) == pytest.approx(training)


def test_table_options_reach_ingest():
    args = argparse.Namespace(input=["shopping.zip"], minutes=20.0, config="tiny",
                              encoder="albert", columns="item=cat", kind="review")
    assert dict(run_chain.chain(args))["ingest"] == [
        "--input", "shopping.zip", "--columns", "item=cat", "--kind", "review"]


def test_a_corpus_without_users_skips_the_recommender_when_optional(tmp_path):
    """A Chinese review table read with `--kind review` has no users: `run` goes on."""
    import pyarrow.parquet as pq

    from pipelines import cli
    from pipelines.features import INTERACTION_SCHEMA

    (tmp_path / "features").mkdir()
    pq.write_table(INTERACTION_SCHEMA.empty_table(), tmp_path / "features" / "interactions.parquet")
    assert cli.main(["train-recommender", "--workspace", str(tmp_path), "--optional"]) == 0
    assert not (tmp_path / "train_recommender" / "_stage.json").exists()


def test_a_large_corpus_moves_the_budget_to_features_and_says_what_it_needs():
    """62,774 Chinese reviews (129,554 sentences) ran 36 min on `--minutes 20`: features alone
    took 14.5 min. The budget now counts features' time per sentence, and says so."""
    small = run_chain.fixed_minutes(10_000, "student")
    assert small == pytest.approx(run_chain.FIXED_MINUTES, abs=0.2)  # what the constant assumed
    assert run_chain.budget_warning(20, small) is None
    assert run_chain.budget_warning(20, 9.9) is None  # training keeps over half
    large = run_chain.fixed_minutes(129_554, "albert")
    assert 18 < large < 19
    assert run_chain.budgets(20, large) == (1.2, 0.8)  # the training stages' minimum
    warning = run_chain.budget_warning(20, large)
    # The run's length counts the training stages' real floor (2 min in all, `budgets`).
    assert "--minutes 33 or more" in warning and "leaves training 2.0 min" in warning
    assert "about 22 min" in warning
    stages = dict(run_chain.chain(argparse.Namespace(
        input=["a.zip"], minutes=40.0, config="tiny", encoder="albert"), large))
    assert stages["pretrain"][-1] == str(run_chain.budgets(40, large)[0])


def test_sentences_are_counted_from_the_ingested_documents(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines import workspace as ws_lib

    ws = ws_lib.Workspace(tmp_path)
    ws.docs.mkdir(parents=True)
    pq.write_table(pa.table({"kind": ["review", "news", "rating", "review"],
                             "sentences": [["a.", "b."], ["c."], None, []]}),
                   ws.docs / "part-0.parquet")
    assert run_chain.count_sentences(ws) == 3


@pytest.mark.parametrize("language, encoder, expected", [
    ("zh", "albert", 1e-4),  # 1e-3 collapsed a tiny ALBERT on Chinese reviews
    ("en", "albert", 1e-3), (None, "albert", 1e-3), ("zh", "student", 1e-4)])
def test_finetune_learning_rate_follows_the_encoder_and_the_corpus_language(
        tmp_path, language, encoder, expected):
    import json

    from pipelines import finetune
    from pipelines import workspace as ws_lib

    ws = ws_lib.Workspace(tmp_path)
    if language:
        ws.stage_dir("vocab").mkdir(parents=True)
        (ws.stage_dir("vocab") / ws_lib.STAGE_RECORD).write_text(
            json.dumps({"summary": {"language": language}}))
    args = argparse.Namespace(encoder=encoder, learning_rate=None, preset=None)
    finetune.resolve_encoder(args, ws)
    assert args.learning_rate == expected
    args = argparse.Namespace(encoder=encoder, learning_rate=None, preset=None)
    finetune.resolve_encoder(args, ws, by_language=False)  # --task: the dataset's, not ours
    assert args.learning_rate == (1e-4 if encoder == "student" else 1e-3)
