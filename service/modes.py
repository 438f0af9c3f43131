"""Learning modes and the holdout in the service: how a Rank is served, which events are learned, and
the live statistics GetStats reports (apprentice comparison, lift over the holdout).

The statistics are moments (see policies.intervals) kept per decision point in LMDB and updated in the
same transaction that closes the events they count, so they survive restarts exactly as the counters do.
Apprentice figures belong to one model generation (a reset, import or rollback starts them again) and
start again when a decision point enters apprentice mode; lift figures start again when a holdout
begins (holdout_share goes from 0 to more).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policies import apprentice, holdout
from policies.intervals import (
    Interval,
    Moments,
    WeightedMoments,
    bernstein_mean,
    normal_mean,
    ratio_mean,
    welch_difference,
    wilson,
)
from policies.ranking import Ranking, rank
from policies.vw import Prediction
from service.domain import (
    HOLDOUT_SERVED,
    SERVED_APPRENTICE,
    SERVED_HOLDOUT_BASELINE,
    SERVED_HOLDOUT_RANDOM,
    SERVED_LOGGING_ONLY,
    SERVED_MODEL,
    SERVED_MODEL_COMPARED,
    Decision,
    DecisionPointConfig,
)
from service.errors import invalid
from service.store.lmdb_store import Store, Txn

STATS_KEY = b"modes"
AUTO_PROMOTION = "auto-promotion"  # the actor of the audit record of an automatic switch to online
# Events that never train the model. LOGGING_ONLY: by definition. Held-out subjects shown the baseline:
# the online model has its own exploration data, and the caller's baseline is chosen with knowledge the
# model does not see; logged with probability 1, those choices would pass for unconfounded evidence and
# could only skew its reward estimates. (Held-out subjects shown a uniformly random action are learned:
# their probabilities are known and they explore every action, the best data a bandit can get.)
_NOT_LEARNED = (SERVED_LOGGING_ONLY, SERVED_HOLDOUT_BASELINE)
_COUNTED = (SERVED_APPRENTICE, SERVED_MODEL_COMPARED, *HOLDOUT_SERVED)


@dataclass(frozen=True)
class Route:
    """How one Rank is served: ``served_by`` (a SERVED_* value) and the baseline's index (-1: none)."""

    served_by: str
    baseline: int = -1

    @property
    def uses_model(self) -> bool:
        return self.served_by in (SERVED_MODEL, SERVED_MODEL_COMPARED, SERVED_APPRENTICE)

    def with_model(self, prediction: Prediction, draw: float) -> Ranking:
        if self.served_by == SERVED_APPRENTICE:
            return apprentice.serve_baseline(prediction.pmf, prediction.scores, self.baseline)
        return rank(prediction.pmf, prediction.scores, draw)

    def without_model(self, count: int, draw: float) -> Ranking:
        if self.served_by == SERVED_HOLDOUT_RANDOM:
            return holdout.uniform(count, draw)
        return holdout.baseline_first(count, self.baseline)


def route(config: DecisionPointConfig, subject_id: str, baseline_id: str, action_ids: Sequence[str]) -> Route:
    baseline = action_ids.index(baseline_id) if baseline_id in action_ids else -1
    if config.learning_mode != "online":
        mode = config.learning_mode.upper()
        if not baseline_id:
            raise invalid(
                "BASELINE_REQUIRED",
                f"decision point {config.name!r} is in {mode} mode: send baseline_action_id, the action your "
                "existing logic would show",
            )
        if baseline < 0:
            raise invalid(
                "BASELINE_NOT_A_CANDIDATE",
                f"baseline_action_id {baseline_id[:80]!r} is not among the eligible candidates (sent, not "
                f"excluded, allowed by the contact rules); decision point {config.name!r} is in {mode} mode and "
                "serves the baseline",
            )
        return Route(SERVED_APPRENTICE if config.learning_mode == "apprentice" else SERVED_LOGGING_ONLY, baseline)
    if config.holdout_share > 0.0 and subject_id:
        if holdout.held_out(config.name, subject_id, config.holdout_share):
            return Route(SERVED_HOLDOUT_BASELINE if baseline >= 0 else SERVED_HOLDOUT_RANDOM, baseline)
        return Route(SERVED_MODEL_COMPARED, baseline)
    return Route(SERVED_MODEL, baseline)


def learns(decision: Decision) -> bool:
    return decision.served_by not in _NOT_LEARNED


def model_predicted(route_: Route, prediction: Prediction | None) -> tuple[list[float], list[float]]:
    """What a decision keeps of the model's own view: in apprentice mode its distribution and scores."""
    if route_.served_by != SERVED_APPRENTICE or prediction is None:
        return [], []
    return list(prediction.pmf), list(prediction.scores)


@dataclass(frozen=True)
class ApprenticeSummary:
    match_rate: Interval
    baseline_reward: Interval
    model_reward: Interval  # self-normalised
    model_reward_dr: Interval  # doubly robust with the learner's predictions
    auto_promote: bool
    min_events: int

    def promote(self) -> bool:
        return self.auto_promote and apprentice.should_promote(
            self.model_reward, self.model_reward_dr, self.baseline_reward, self.min_events
        )


@dataclass(frozen=True)
class HoldoutSummary:
    holdout_share: float
    model_reward: Interval
    holdout_reward: Interval
    lift: Interval


def _generation(decision: Decision) -> int:
    return int(decision.model_version.split(".")[0]) if decision.model_version else 0


class ModeStats:
    """The apprentice and lift moments of each decision point, in LMDB beside its counters."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, name: str) -> dict[str, Any]:
        with self.store.read() as txn:
            return self.store.get_extra_stats(txn, name, STATS_KEY)

    def record(
        self, txn: Txn, config: DecisionPointConfig, outcomes: Sequence[tuple[Decision, float]]
    ) -> dict[str, Any] | None:
        """Add closed events (decision, learned reward) to the stored moments inside ``txn``; the updated
        figures, or None when none of the events counts."""
        counted = [(d, r) for d, r in outcomes if not d.fallback and d.served_by in _COUNTED]
        if not counted:
            return None
        data = self.store.get_extra_stats(txn, config.name, STATS_KEY)
        for decision, reward in counted:
            scale = max(1.0, abs(decision.value)) if config.optimize_value else 1.0
            if decision.served_by == SERVED_APPRENTICE and decision.model_probabilities:
                _add_apprentice(data, config, decision, reward, scale)
            elif decision.served_by == SERVED_MODEL_COMPARED or decision.served_by in HOLDOUT_SERVED:
                lift = data.setdefault("lift", {})
                group = "model" if decision.served_by == SERVED_MODEL_COMPARED else "holdout"
                lift[group] = Moments.from_list(lift.get(group)).add(reward).to_list()
                lift["scale"] = max(lift.get("scale", 1.0), scale)
        self.store.put_extra_stats(txn, config.name, STATS_KEY, data)
        return data

    def reset_for(self, txn: Txn, old: DecisionPointConfig, new: DecisionPointConfig) -> None:
        """Start the figures a configuration change makes stale: apprentice ones on entering apprentice mode,
        lift ones when a holdout begins."""
        restart_apprentice, restart_lift = _restarts(old, new)
        data = self.store.get_extra_stats(txn, new.name, STATS_KEY)
        if restart_apprentice:
            data.pop("apprentice", None)
        if restart_lift:
            data.pop("lift", None)
        self.store.put_extra_stats(txn, new.name, STATS_KEY, data)


def _restarts(old: DecisionPointConfig, new: DecisionPointConfig) -> tuple[bool, bool]:
    apprentice_begins = new.learning_mode == "apprentice" and old.learning_mode != "apprentice"
    holdout_begins = new.holdout_share > 0.0 and old.holdout_share == 0.0
    return apprentice_begins, holdout_begins


def restarts(old: DecisionPointConfig, new: DecisionPointConfig) -> bool:
    """Whether a change from ``old`` to ``new`` makes some mode figures stale (see ModeStats.reset_for)."""
    return any(_restarts(old, new))


def _add_apprentice(
    data: dict[str, Any], config: DecisionPointConfig, decision: Decision, reward: float, scale: float
) -> None:
    generation = _generation(decision)
    part = data.get("apprentice") or {"generation": generation}
    if generation < part["generation"]:
        return  # ranked by a model since replaced: says nothing about the current one
    if generation > part["generation"]:
        part = {"generation": generation}
    found = apprentice.outcome(
        decision.model_probabilities,
        decision.model_scores,
        decision.order[0],
        reward,
        (config.reward_min * scale, config.reward_max * scale),
    )
    part["matches"] = part.get("matches", 0) + int(found.matched)
    part["baseline"] = Moments.from_list(part.get("baseline")).add(found.baseline_reward).to_list()
    part["model"] = WeightedMoments.from_list(part.get("model")).add(found.model_weight, reward).to_list()
    part["model_dr"] = Moments.from_list(part.get("model_dr")).add(found.model_term).to_list()
    part["scale"] = max(part.get("scale", 1.0), scale)
    data["apprentice"] = part


def summarise(config: DecisionPointConfig, data: dict[str, Any]) -> tuple[ApprenticeSummary, HoldoutSummary]:
    low, high = config.reward_min, config.reward_max
    part = data.get("apprentice") or {}
    scale = float(part.get("scale", 1.0))
    bounds = (low * scale, high * scale)
    baseline = Moments.from_list(part.get("baseline"))
    summary = ApprenticeSummary(
        match_rate=wilson(int(part.get("matches", 0)), baseline.n),
        baseline_reward=bernstein_mean(baseline, (high - low) * scale, bounds),
        model_reward=ratio_mean(WeightedMoments.from_list(part.get("model")), bounds),
        model_reward_dr=bernstein_mean(Moments.from_list(part.get("model_dr")), apprentice.term_width(bounds), bounds),
        auto_promote=config.apprentice_auto_promote,
        min_events=config.apprentice_min_events,
    )
    lift = data.get("lift") or {}
    scale = float(lift.get("scale", 1.0))
    bounds = (low * scale, high * scale)
    served, held = Moments.from_list(lift.get("model")), Moments.from_list(lift.get("holdout"))
    spread = (high - low) * scale
    return summary, HoldoutSummary(
        holdout_share=config.holdout_share,
        model_reward=normal_mean(served, bounds),
        holdout_reward=normal_mean(held, bounds),
        lift=welch_difference(served, held, (-spread, spread)),
    )
