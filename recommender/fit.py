"""Fitting the whole recommender: two-tower retrieval + first-stage signals + the DCN ranker.

Protocol (EVAL.md: fitted on train, dev chooses, test reports):
  1. The two-tower model is trained on train for each temperature in the grid; dev Recall@k picks
     the epoch and the temperature. A loss that grows or turns non-finite is reported as divergence.
     With `config.seeds` > 1, that many towers (seeds `config.seed` onward, dev picking each one's
     epoch) are averaged: their unit vectors concatenated over sqrt(n), a mean of cosines.
  2. EASE's L2 strength is chosen on dev.
  3. The ranker learns from inner leave-last-out splits of train (`ranker_splits` of them, each
     peeling one more item off the end of every history; towers and signals refitted on what is
     left before each), and dev NDCG@k picks its epoch; `config.seeds` rankers, logits averaged.
  4. Every method is measured on dev; the exported scorer is the ranker unless a single signal
     (most-popular, EASE, item-kNN, the two-tower) beats it on dev beyond the noise of the dev
     users (`choose_export`): a fallback, logged as a warning and recorded (`fallback`) in the
     metrics. A ranker below a single signal within the noise is kept, with a warning.
  5. Re-ranking (`recommender.rerank`): the served ranking standardises the chosen scores per
     user, subtracts a popularity penalty and adds a personal boost where the item's reviews
     praise an aspect the user writes about; dev picks both within 2% of the plain ranking's
     NDCG, on all dev users and on each half of them. Then the exposure cap
     (`rerank.choose_exposure_cap`): per-item offsets that leave no item top-1 for more than 20%
     of the lists, refused only when on train users' lists it would drop dev NDCG below the best
     single signal's beyond the noise of the dev users (the rule of step 4); the export fits it
     on every served list. The `exported` row is what is served.
  6. Test figures use the train-fitted signals; the export refits towers and signals on every
     interaction with the chosen epochs and strengths, and keeps the ranker.
User and item profiles (text embeddings, aspect weights and scores) are rebuilt from the reviews
of the interactions each step may see (`recommender.profiles`): train for 1-4, the inner split's
rest for the ranker's lists, everything for the export.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd

from recommender import evaluate as evaluation
from recommender.data import FeatureSet
from recommender.profiles import profiles_from
from recommender.rerank import (MAX_TOP1_SHARE, Rerank, choose_exposure_cap, choose_rerank,
                                rerank, reranked_scorer, train_evidence)
from recommender.ranking import (RankerEnsemble, RankingLists, inner_split, ranker_scorer,
                                 ranking_lists, train_rankers)
from recommender.signals import FEATURES, Signals, fit_signals
from recommender.train import (TrainConfig, TrainResult, ensemble_vectors, train_retrieval,
                              train_towers)

log = logging.getLogger("opinionrec")

EASE_L2_GRID = (1.0, 10.0, 50.0, 100.0, 300.0, 1000.0)
SINGLE_SIGNALS = {"two-tower": "two_tower", "ease": "ease", "item-knn": "item_knn",
                  "most-popular": "popularity", "content": "content"}
DIVERGENCE_RATIO = 1.5  # last epoch's loss above 1.5x the first: diverged
RANKER = "two-tower + ranker"
EXPORTED = "exported"  # dev/test row of what is served: the choice with its re-ranking


@dataclass
class FitResult:
    """What `fit_recommender` learned and measured."""

    config: TrainConfig  # the chosen two-tower configuration
    ease_l2: float
    choice: str  # "ranker" or the name of the single signal exported instead
    ranker: RankerEnsemble  # the rankers of `config.seeds` seeds, their logits averaged
    exported: Signals  # signals refitted on every interaction (what serving uses)
    train_signals: Signals  # signals fitted on train (what the dev and test figures score)
    dev: dict[str, dict] = field(default_factory=dict)
    test: dict[str, dict] = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    rerank: Rerank = field(default_factory=Rerank)  # the served re-ranking (`recommender.rerank`)
    # The exposure cap: the share the export caps top-1 at (None: not capped), and the offsets
    # fitted on the train signals' lists (what the dev and test figures score).
    max_top1_share: float | None = None
    train_offsets: np.ndarray | None = None

    @property
    def fallback(self) -> bool:
        return self.choice != "ranker"

    def scorer(self, signals: Signals, evidence: np.ndarray) -> evaluation.Scorer:
        """The exported ranking over `signals`: the ranker or the chosen signal, re-ranked with
        `evidence` ([U, N] personal evidence) and the signals' popularity, under the exposure cap
        fitted on the train signals."""
        base = (ranker_scorer(self.ranker, signals) if self.choice == "ranker"
                else signal_scorer(signals, self.choice))
        return reranked_scorer(base, evidence, signals.popularity, self.rerank,
                               self.train_offsets)


def signal_scorer(signals: Signals, name: str) -> evaluation.Scorer:
    return lambda users: signals.raw(users)[name]


def diverged(losses: list[float]) -> bool:
    """Non-finite loss, or a last epoch's loss well above the first's."""
    if not losses:
        return False
    if not all(math.isfinite(x) for x in losses):
        return True
    return len(losses) > 1 and losses[-1] > DIVERGENCE_RATIO * losses[0]


def choose_export(dev_ranks: dict[str, np.ndarray], k: int = 10) -> tuple[str, dict]:
    """The exported scorer from each method's dev ranks (`RANKER` and the `SINGLE_SIGNALS`):
    the ranker, unless the best single signal beats it on dev by more than the noise of the dev
    users (the paired bootstrap 95% interval of the NDCG@k gap lies above 0). A ranker below a
    single signal within the noise is kept, and the gap is logged as a warning and recorded: on a
    few hundred dev users a gap of 0.0004 (Gift_Cards) is a coin toss, and falling back on it
    exported the weaker model on test."""
    ndcg = {name: evaluation.ranking_metrics(ranks, k)[f"ndcg@{k}"]
            for name, ranks in dev_ranks.items()}
    best = max(ndcg, key=ndcg.get)  # ties keep the ranker (first)
    info = {"best_on_dev": best, "dev_ndcg": ndcg, "rule": "ranker unless a single signal is "
            "better on dev beyond the paired bootstrap 95% interval"}
    if ndcg[best] <= ndcg[RANKER]:
        return "ranker", info
    gap = evaluation.ndcg_difference(dev_ranks[best], dev_ranks[RANKER], k)
    info["gap_over_ranker"] = gap
    numbers = (k, ndcg[RANKER], ndcg[best], gap["ci95"][0], gap["ci95"][1],
               len(dev_ranks[RANKER]))
    if gap["ci95"][0] > 0:
        log.warning("train-recommender: the two-tower + ranker model is BELOW %s on dev "
                    "(NDCG@%d %.4f vs %.4f, gap 95%% interval [%+.4f, %+.4f] over %d users); "
                    "exporting %s instead", best, *numbers, best)
        return SINGLE_SIGNALS[best], info
    log.warning("train-recommender: the two-tower + ranker model is BELOW %s on dev by less than "
                "the noise (NDCG@%d %.4f vs %.4f, gap 95%% interval [%+.4f, %+.4f] over %d "
                "users); keeping the ranker", best, *numbers)
    info["below_within_noise"] = True
    return "ranker", info


def _signals(features: FeatureSet, frame: pd.DataFrame, towers: list[TrainResult],
             ease_l2: float) -> Signals:
    users, items = ensemble_vectors(towers, features)
    return fit_signals(
        frame, len(features.users), len(features.items), user_vectors=users, item_vectors=items,
        user_text=features.users.embedding, item_text=features.items.embedding,
        user_aspects=features.users.aspect_weight, item_aspects=features.items.aspect_score,
        ease_l2=ease_l2)


def _only(frame: pd.DataFrame) -> evaluation.Split:
    empty = frame.iloc[:0]
    return evaluation.Split(train=frame, dev=empty, test=empty)


def _tune_towers(features: FeatureSet, split: evaluation.Split, config: TrainConfig,
                 temperatures: tuple[float, ...], log_dir) -> tuple[TrainConfig, TrainResult, dict]:
    """Train once per temperature; dev Recall@k (best epoch) picks one."""
    runs = {}
    for temperature in temperatures:
        candidate = replace(config, temperature=temperature)
        result = train_retrieval(features, split, candidate,
                                 log_dir=None if log_dir is None else log_dir / f"t{temperature}")
        best = max(result.dev_recall) if result.dev_recall else 0.0
        runs[temperature] = (best, candidate, result)
        losses = result.history.get("loss", [])
        if diverged(losses):
            log.warning("train-recommender: the two-tower model DIVERGED at temperature %s "
                        "(loss per epoch %s)", temperature, [round(x, 2) for x in losses])
    temperature = max(runs, key=lambda t: runs[t][0])  # ties keep the first
    _, chosen, result = runs[temperature]
    info = {"temperature_grid": {str(t): runs[t][0] for t in runs}, "temperature": temperature,
            "loss_per_epoch": result.history.get("loss", []),
            "dev_recall_per_epoch": result.dev_recall, "best_epoch": result.best_epoch + 1,
            "diverged": diverged(result.history.get("loss", []))}
    return replace(chosen, epochs=result.best_epoch + 1, patience=0), result, info


def _choose_ease(split: evaluation.Split, num_users: int, num_items: int, k: int
                 ) -> tuple[float, dict]:
    from recommender.signals import ease_weights, history_matrix
    history = history_matrix(split.train, num_users, num_items)
    scores = {}
    for l2 in EASE_L2_GRID:
        weights = ease_weights(history, l2)
        scorer = lambda users, w=weights: history[users] @ w  # noqa: E731
        scores[l2] = evaluation.evaluate(scorer, split, num_items, "dev", k)["all"][f"ndcg@{k}"]
    best = max(scores, key=scores.get)
    return best, {str(l2): value for l2, value in scores.items()}


def fit_recommender(features: FeatureSet, split: evaluation.Split, config: TrainConfig,
                    temperatures: tuple[float, ...] = (0.05, 0.2), log_dir=None,
                    progress: Callable[[str], None] = lambda message: None,
                    max_top1_share: float = MAX_TOP1_SHARE) -> FitResult:
    """Steps 1-5 of the module docstring; see there."""
    num_users, num_items, k = len(features.users), len(features.items), config.k
    ndcg = f"ndcg@{k}"
    everything = pd.concat([split.train, split.dev, split.test], ignore_index=True)
    full = features
    if features.reviews is not None:  # profiles from train reviews only: no held-out text
        features = profiles_from(full, features.reviews, split.train)
    else:
        log.warning("train-recommender: no per-review features (features/docs/); user and item "
                    "profiles include held-out reviews, so the text and aspect signals are "
                    "measured optimistically")

    progress("two-tower retrieval (temperature grid on dev)")
    tuned, tower, tower_info = _tune_towers(features, split, config, temperatures, log_dir)
    ease_l2, ease_grid = _choose_ease(split, num_users, num_items, k)
    if tuned.seeds > 1:
        progress(f"{tuned.seeds} two-tower models (seeds {tuned.seed}-"
                 f"{tuned.seed + tuned.seeds - 1}), their cosines averaged")
    towers = train_towers(features, split, replace(tuned, epochs=config.epochs,
                                                   patience=config.patience), first=tower)
    tower_info["dev_recall_per_tower"] = [max(t.dev_recall) if t.dev_recall else 0.0
                                          for t in towers]
    tower_info["epochs_per_tower"] = [t.best_epoch + 1 for t in towers]
    for number, extra in enumerate(towers[1:], start=1):
        if diverged(extra.history.get("loss", [])):
            log.warning("train-recommender: two-tower model %d of %d (seed %d) DIVERGED (loss per "
                        "epoch %s)", number + 1, len(towers), tuned.seed + number,
                        [round(x, 2) for x in extra.history["loss"]])
    # The towers refitted later (inner splits, export) train for the towers' median epoch.
    tuned = replace(tuned, epochs=int(np.median(tower_info["epochs_per_tower"])))
    train_signals = _signals(features, split.train, towers, ease_l2)

    progress(f"ranker training lists ({config.ranker_splits} inner splits of train)")
    parts, rest = [], split.train
    for depth in range(config.ranker_splits):
        rest, inner_targets = inner_split(rest)
        if inner_targets.empty and depth:  # the first split stands even when empty, as before
            break
        inner_features = (profiles_from(full, full.reviews, rest)
                          if full.reviews is not None else features)
        inner_towers = train_towers(inner_features, _only(rest), tuned)
        parts.append(ranking_lists(_signals(inner_features, rest, inner_towers, ease_l2),
                                   inner_targets, seed=config.seed + depth))
    lists = RankingLists.concatenate(parts)

    def dev_ndcg(ranker) -> float:
        scorer = ranker_scorer(ranker, train_signals)
        return evaluation.evaluate(scorer, split, num_items, "dev", k)["all"][ndcg]

    progress("DCN ranker (dev NDCG picks the epoch)" if config.seeds <= 1 else
             f"{config.seeds} DCN rankers (dev NDCG picks each one's epoch; logits averaged)")
    ranker, ranker_devs = train_rankers(lists, dev_ndcg, seeds=config.seeds, seed=config.seed,
                                        epochs=config.ranker_epochs,
                                        patience=config.ranker_patience)
    ranker_dev = ranker_devs[0]

    scorers = {RANKER: ranker_scorer(ranker, train_signals)}
    scorers.update({name: signal_scorer(train_signals, signal)
                    for name, signal in SINGLE_SIGNALS.items()})
    dev_ranks = {name: evaluation.part_ranks(s, split, num_items, "dev")
                 for name, s in scorers.items()}
    dev = {name: evaluation.part_metrics(ranks, split, "dev", k)
           for name, ranks in dev_ranks.items()}
    test = {name: evaluation.evaluate(s, split, num_items, "test", k)
            for name, s in scorers.items()}
    choice, choice_info = choose_export(dev_ranks, k)

    progress("re-ranking: popularity penalty and personal boost (dev NDCG within 2% of none)")
    base = scorers[RANKER] if choice == "ranker" else signal_scorer(train_signals, choice)
    evidence = train_evidence(features)
    setting, rerank_info = choose_rerank(base, evidence, train_signals.popularity, split,
                                         num_items, k)
    grid = rerank_info["grid"]
    plain, chosen = (grid[f"boost {b}, penalty {p}"] for b, p in
                     ((0.0, 0.0), (setting.boost, setting.popularity_penalty)))
    log.info("train-recommender: re-ranking chosen on dev: popularity penalty %s, personal boost "
             "%s (dev NDCG@%d %.4f, plain %.4f; top-%d items with personal evidence %.0f%%, "
             "plain %.0f%%; largest top-1 share %.0f%%, plain %.0f%%); every setting tried is in "
             "metrics.json", setting.popularity_penalty, setting.boost, k,
             chosen[f"dev_ndcg@{k}"], plain[f"dev_ndcg@{k}"], k,
             100 * chosen["dev_personal_share"], 100 * plain["dev_personal_share"],
             100 * chosen["dev_max_top1_share"], 100 * plain["dev_max_top1_share"])
    progress(f"exposure cap: no item top-1 for more than {max_top1_share:.0%} of the users")
    standardised = lambda users: rerank(  # noqa: E731  (the re-ranked scores, always standardised)
        base(users), evidence[users], train_signals.popularity, setting)
    best_signal = max(SINGLE_SIGNALS, key=lambda name: dev[name]["all"][ndcg])
    offsets, cap_info = choose_exposure_cap(standardised, split, num_items,
                                            dev[best_signal]["all"][ndcg], k, max_top1_share,
                                            floor_ranks=dev_ranks[best_signal])
    _log_exposure_cap(cap_info, k)
    served = reranked_scorer(base, evidence, train_signals.popularity, setting, offsets)
    dev[EXPORTED] = evaluation.evaluate(served, split, num_items, "dev", k)
    test[EXPORTED] = evaluation.evaluate(served, split, num_items, "test", k)

    progress("refit on every interaction for export")
    exported = _signals(full, everything, train_towers(full, _only(everything), tuned), ease_l2)
    training = {"two_tower": {**tower_info, "config": tuned.as_dict()},
                "ease_l2_grid": ease_grid, "ease_l2": ease_l2,
                "ranker": {"features": list(FEATURES), "lists": int(len(lists.label)),
                           "inner_splits": len(parts),
                           "list_size": int(lists.label.shape[1]) if len(lists.label) else 0,
                           f"dev_{ndcg}_per_epoch": ranker_dev,
                           "best_epoch": int(np.argmax(ranker_dev)) + 1 if ranker_dev else 0,
                           f"dev_{ndcg}_per_epoch_per_seed": ranker_devs,
                           f"dev_{ndcg}_ensemble": dev[RANKER]["all"][ndcg]},
                "choice": choice_info, "rerank": rerank_info, "exposure_cap": cap_info,
                "refit_interactions": int(len(everything))}
    return FitResult(config=tuned, ease_l2=ease_l2, choice=choice, ranker=ranker,
                     exported=exported, train_signals=train_signals, dev=dev, test=test,
                     training=training, rerank=setting,
                     max_top1_share=cap_info["export_share"], train_offsets=offsets)


def _log_exposure_cap(info: dict, k: int) -> None:
    """One line on what the exposure cap did on dev, a warning when it was needed but refused."""
    key = f"ndcg@{k}"
    if "largest_top1_share_before" not in info:
        return
    share, before = info["max_top1_share"], info["largest_top1_share_before"]
    if not info["capped_items"]:
        log.info("train-recommender: exposure cap not needed on train users' lists (largest "
                 "top-1 share %.0f%%, cap %.0f%%); the export applies it to every served list",
                 100 * before, 100 * share)
    elif not info["refused"] and "floor_gap_over_capped" in info:
        low, high = info["floor_gap_over_capped"]["ci95"]
        log.warning("train-recommender: exposure cap on %d item(s) kept although it puts dev "
                    "NDCG@%d at %.4f, below the best single signal's %.4f, by less than the noise "
                    "(gap 95%% interval [%+.4f, %+.4f]); largest top-1 share of train users' "
                    "lists %.0f%% -> %.0f%%", info["capped_items"], k, info[f"dev_{key}_after"],
                    info[f"dev_{key}_floor"], low, high, 100 * before,
                    100 * info["largest_top1_share_after"])
    elif not info["refused"]:
        log.info("train-recommender: exposure cap on %d item(s): largest top-1 share of train "
                 "users' lists %.0f%% -> %.0f%%, dev NDCG@%d %.4f -> %.4f",
                 info["capped_items"], 100 * before, 100 * info["largest_top1_share_after"], k,
                 info[f"dev_{key}_before"], info[f"dev_{key}_after"])
    else:
        log.warning("train-recommender: NOT capping exposure: holding every item to %.0f%% of "
                    "top-1s would drop dev NDCG@%d to %.4f, below the best single signal's "
                    "%.4f; one item stays top-1 for %.0f%% of train users' lists", 100 * share,
                    k, info[f"dev_{key}_after"], info[f"dev_{key}_floor"], 100 * before)
