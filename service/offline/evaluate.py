"""Counterfactual evaluation: how would other learner configurations have done on logged traffic?

Each candidate configuration gets a fresh VW learner and replays the logs in order with progressive
validation: at every logged event it first predicts its probabilities over the logged actions (before
it has learned from that event), then learns from the event as the service would have. Its value is
estimated from those predictions with IPS, SNIPS and DR (policies.estimators). DR's reward model is one
more progressively trained learner (VW ``--cb_adf``, all pairs of namespaces), shared by every
candidate, so it never predicts an event it has learned from.

Two references are always included: the logged policy itself (its estimate is the plain mean reward)
and uniform random over the logged actions.

Bad log lines are left out and reported with their line numbers; nothing is guessed for them.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import vowpalwabbit

from policies import estimators
from policies.estimators import Estimate, IntervalKind
from policies.features import NamespaceTable, Role
from policies.learner_options import GROUPS, LearnerOptions
from service.offline import spec as spec_module
from service.offline.dsjson import BadEvent, LoggedEvent, read_event

LOGGED, UNIFORM = "logged policy", "uniform random"
REWARD_MODEL_ARGS = ["--cb_adf", "--quiet", "--interactions", "::", "-l", "0.5"]
MAX_BAD_LINES_KEPT = 1000


class EvaluationError(ValueError):
    """The evaluation cannot run; the message says why."""


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


@dataclass(frozen=True)
class Candidate:
    label: str
    options: LearnerOptions | None  # None for the references
    # Rewrites each DSJSON line before this candidate's learner reads it (feature ablation); None: as logged.
    transform: Callable[[str], str] | None = None


@dataclass
class PolicyResult:
    label: str
    ips: Estimate
    snips: Estimate
    dr: Estimate
    vw_args: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.label,
            "vw_args": self.vw_args,
            "ips": self.ips.to_dict(),
            "snips": self.snips.to_dict(),
            "dr": self.dr.to_dict(),
        }


@dataclass
class Evaluation:
    logs: str
    events: int
    lines: int
    bad_lines: list[BadLine]
    bad_line_count: int
    reward_range: tuple[float, float]
    reward_range_source: str
    confidence: float
    results: list[PolicyResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "logs": self.logs,
            "lines": self.lines,
            "events": self.events,
            "bad_line_count": self.bad_line_count,
            "bad_lines": [{"line": b.line, "reason": b.reason} for b in self.bad_lines],
            "reward_range": list(self.reward_range),
            "reward_range_source": self.reward_range_source,
            "confidence": self.confidence,
            "policies": [r.to_dict() for r in self.results],
        }


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip("\n")


@dataclass(frozen=True)
class LogNamespaces:
    """How the logs name their VW namespaces, for building each candidate's interactions."""

    table: NamespaceTable  # client name -> VW index
    # VW index -> role, for logs from another system (taken from where each namespace appears: the
    # context or the actions); None for Kairos's exports, whose indices carry their role (their alphabet).
    foreign_roles: dict[str, Role] | None


def _observed_roles(line: str) -> dict[str, tuple[str, Role]]:
    """Namespace key -> (VW index, role) as they appear in a DSJSON event (VW indexes a key by its first
    character)."""
    found: dict[str, tuple[str, Role]] = {}
    context = json.loads(line).get("c", {})
    for key, value in context.items():
        if isinstance(value, dict) and key and not key.startswith("_"):
            found[key] = (key[0], "context")
    for action in context.get("_multi", []):
        for key, value in action.items():
            if isinstance(value, dict) and key and not key.startswith("_"):
                found.setdefault(key, (key[0], "action"))
    return found


def log_namespaces(path: Path, candidates: Sequence[Candidate]) -> LogNamespaces:
    """The namespaces of the first usable event; every name a candidate's interactions use must be there.

    A Kairos export states its table in ``_kairos.namespaces``. For logs from another system a namespace
    is named by its JSON key (or its one-character VW index).
    """
    stated: dict[str, str] = {}
    observed: dict[str, tuple[str, Role]] = {}
    for _, line in _lines(path):
        try:
            stated = read_event(line).namespaces
        except BadEvent:
            continue
        observed = _observed_roles(line)
        break
    foreign = not stated
    if foreign:
        indices = {key: index for key, (index, _) in observed.items()}
        indices.update({index: index for index, _ in observed.values()})
    else:
        indices = {name: index for index, name in stated.items()}
    for candidate in candidates:
        if candidate.options is None:
            continue
        for name in spec_module.namespaces_used(candidate.options):
            if name in indices or name in GROUPS:
                continue
            known = ", ".join(sorted(n for n in indices if not n.startswith("_"))) or "none named"
            raise EvaluationError(
                f"policy {candidate.label!r}: namespace {name!r} is not in the logs (they have: {known})"
            )
    roles = {index: role for index, role in observed.values()} if foreign else None
    return LogNamespaces(NamespaceTable(indices, frozen=True), roles)


def learner_args(options: LearnerOptions, namespaces: LogNamespaces) -> list[str]:
    """The VW command line of ``options`` over these logs. In a Kairos export, ``_context`` and ``_actions``
    expand as the service expands them; in other logs, to the namespaces seen in the context and in the
    actions."""
    return options.vw_args(namespaces.table, namespaces.foreign_roles)


class _Replay:
    """The learners and the per-event numbers each estimator needs."""

    def __init__(self, candidates: Sequence[Candidate], namespaces: LogNamespaces, seed: int) -> None:
        self.candidates = list(candidates)
        self.args: dict[str, list[str]] = {}
        self.learners: dict[str, vowpalwabbit.Workspace] = {}
        self.transforms = {c.label: c.transform for c in candidates if c.transform is not None}
        for candidate in candidates:
            if candidate.options is not None:
                args = [*learner_args(candidate.options, namespaces), "--dsjson", "--random_seed", str(seed)]
                self.args[candidate.label] = args
                self.learners[candidate.label] = vowpalwabbit.Workspace(arg_list=args)
        self.reward_model = vowpalwabbit.Workspace(arg_list=[*REWARD_MODEL_ARGS, "--dsjson"])
        # Packed doubles (8 bytes an event each), not lists of Python floats: logs may hold millions of events.
        self.rewards = array("d")
        self.logged_p = array("d")
        self.model_logged = array("d")
        self.target_p: dict[str, array[float]] = {c.label: array("d") for c in candidates}
        self.model_target: dict[str, array[float]] = {c.label: array("d") for c in candidates}

    def step(self, event: LoggedEvent, reward_range: tuple[float, float]) -> None:
        """Predict with every learner, then learn; raise BadEvent if VW cannot read the line."""
        low, high = reward_range
        model = self.reward_model
        examples = _parse(model, event)
        try:
            model.predict(examples)
            # Partial predictions are expected costs; the model's reward is their negation, kept in range.
            q = [min(max(-e.get_partial_prediction(), low), high) for e in examples[-event.actions :]]
            model.learn(examples)
        finally:
            model.finish_example(examples)
        pmfs: dict[str, Sequence[float]] = {LOGGED: event.logged_pmf, UNIFORM: [1.0 / event.actions] * event.actions}
        for label, learner in self.learners.items():
            transform = self.transforms.get(label)
            examples = _parse(learner, event, transform(event.line) if transform else event.line)
            try:
                pmf = learner.predict(examples)
                learner.learn(examples)
            finally:
                learner.finish_example(examples)
            if len(pmf) != event.actions:
                raise BadEvent(f"{label}: VW gave {len(pmf)} probabilities for {event.actions} actions")
            pmfs[label] = pmf
        self.rewards.append(event.reward)
        self.logged_p.append(event.probability)
        self.model_logged.append(q[event.chosen])
        for label, pmf in pmfs.items():
            total = math.fsum(pmf)
            self.target_p[label].append(min(max(pmf[event.chosen] / total, 0.0), 1.0))
            self.model_target[label].append(
                min(max(math.fsum(p * v for p, v in zip(pmf, q, strict=True)) / total, low), high)
            )

    def close(self) -> None:
        for learner in self.learners.values():
            learner.finish()
        self.reward_model.finish()


def _parse(
    workspace: vowpalwabbit.Workspace, event: LoggedEvent, line: str | None = None
) -> list[vowpalwabbit.Example]:
    try:
        examples: list[vowpalwabbit.Example] = workspace.parse(event.line if line is None else line)
    except Exception as err:  # VW raises plain exceptions on input it cannot read
        raise BadEvent(
            f"VW could not read it: {str(err).splitlines()[0][:200] if str(err) else type(err).__name__}"
        ) from None
    if len(examples) != event.actions + 1:
        workspace.finish_example(examples)
        raise BadEvent(f"VW read {len(examples) - 1} actions where the event lists {event.actions}")
    return examples


@dataclass
class Replayed:
    """What one replay of the logs gathered: the per-event numbers of every candidate, and the bad lines."""

    logs: str
    candidates: list[Candidate]
    replay: _Replay
    lines: int
    bad_lines: list[BadLine]
    bad_line_count: int
    reward_range: tuple[float, float]
    reward_range_source: str

    @property
    def events(self) -> int:
        return len(self.replay.rewards)

    def evaluation(self, confidence: float, seed: int, interval: IntervalKind) -> Evaluation:
        results = [
            _estimate(self.replay, c.label, self.reward_range, confidence, seed, interval) for c in self.candidates
        ]
        for result in results:
            result.vw_args = self.replay.args.get(result.label, [])
        return Evaluation(
            logs=self.logs,
            events=self.events,
            lines=self.lines,
            bad_lines=self.bad_lines,
            bad_line_count=self.bad_line_count,
            reward_range=self.reward_range,
            reward_range_source=self.reward_range_source,
            confidence=confidence,
            results=results,
        )


def replay_logs(
    path: Path,
    candidates: Sequence[Candidate],
    *,
    reward_range: tuple[float, float] | None = None,
    seed: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Replay the DSJSON logs at ``path`` through every candidate (and the two references)."""
    if not path.is_file():
        raise EvaluationError(f"no such log file: {path}")
    references = [Candidate(LOGGED, None), Candidate(UNIFORM, None)]
    everyone = references + [c for c in candidates if c.label not in {LOGGED, UNIFORM}]
    replay = _Replay(everyone, log_namespaces(path, everyone), seed)
    bad: list[BadLine] = []
    bad_count = lines = 0
    stated: tuple[float, float] | None = None
    try:
        for number, line in _lines(path):
            lines += 1
            try:
                event = read_event(line)
                if event.reward_range is not None:
                    stated = (
                        event.reward_range
                        if stated is None
                        else (
                            min(stated[0], event.reward_range[0]),
                            max(stated[1], event.reward_range[1]),
                        )
                    )
                bounds = reward_range or event.reward_range
                if bounds is not None and not bounds[0] <= event.reward <= bounds[1]:
                    raise BadEvent(
                        f"reward {event.reward:g} is outside the reward range [{bounds[0]:g}, {bounds[1]:g}]"
                    )
                replay.step(event, bounds or (-math.inf, math.inf))
            except BadEvent as err:
                bad_count += 1
                if len(bad) < MAX_BAD_LINES_KEPT:
                    bad.append(BadLine(number, str(err)))
                continue
            if progress is not None and len(replay.rewards) % 1000 == 0:
                progress(len(replay.rewards))
    finally:
        replay.close()
    if len(replay.rewards) < 2:
        raise EvaluationError(f"{path} has {len(replay.rewards)} usable events; at least 2 are needed")
    if reward_range is not None:
        bounds, source = reward_range, "given"
    elif stated is not None:
        bounds, source = stated, "logs"
    else:
        observed = (min(replay.rewards), max(replay.rewards))
        bounds = (observed[0], observed[1] if observed[1] > observed[0] else observed[0] + 1.0)
        source = "observed (pass --reward-range for intervals that hold for any reward)"
    return Replayed(str(path), everyone, replay, lines, bad, bad_count, bounds, source)


def evaluate(
    path: Path,
    candidates: Sequence[Candidate],
    *,
    reward_range: tuple[float, float] | None = None,
    confidence: float = 0.95,
    seed: int = 1,
    progress: Callable[[int], None] | None = None,
    interval: IntervalKind = "bernstein",
) -> Evaluation:
    """Replay the DSJSON logs at ``path`` through every candidate; estimate each one's value."""
    replayed = replay_logs(path, candidates, reward_range=reward_range, seed=seed, progress=progress)
    return replayed.evaluation(confidence, seed, interval)


def _estimate(
    replay: _Replay, label: str, bounds: tuple[float, float], confidence: float, seed: int, interval: IntervalKind
) -> PolicyResult:
    r = np.asarray(replay.rewards)
    p = np.asarray(replay.logged_p)
    pi = np.asarray(replay.target_p[label])
    q = np.clip(np.asarray(replay.model_logged), *bounds)
    m = np.clip(np.asarray(replay.model_target[label]), *bounds)
    # The logged policy's weights are all exactly 1: a far tighter bound than 1 / the smallest probability.
    max_weight = 1.0 if label == LOGGED else None
    return PolicyResult(
        label,
        ips=estimators.ips(
            r, p, pi, reward_range=bounds, confidence=confidence, max_weight=max_weight, interval=interval
        ),
        snips=estimators.snips(r, p, pi, reward_range=bounds, confidence=confidence, seed=seed),
        dr=estimators.doubly_robust(
            r, p, pi, q, m, reward_range=bounds, confidence=confidence, max_weight=max_weight, interval=interval
        ),
    )


def table(evaluation: Evaluation) -> str:
    """The results as a text table, best DR estimate first."""
    level = f"{evaluation.confidence:.0%}"
    interval = f"{level} interval"
    header = (
        f"{'policy':34}" + "".join(f" {name:>8} {interval:>19}" for name in ("IPS", "SNIPS", "DR")) + f" {'ESS':>8}"
    )
    rows = [header, "-" * len(header)]
    for result in sorted(evaluation.results, key=lambda r: -r.dr.value):
        cells = [f"{result.label[:34]:34}"]
        for estimate in (result.ips, result.snips, result.dr):
            cells.append(f"{estimate.value:>8.4f} [{estimate.low:>8.4f},{estimate.high:>8.4f}]")
        cells.append(f"{result.dr.effective_sample_size:>8.0f}")
        rows.append(" ".join(cells))
    rows.append("")
    rows.append(
        f"{evaluation.events} events from {evaluation.lines} lines; reward range "
        f"[{evaluation.reward_range[0]:g}, {evaluation.reward_range[1]:g}] ({evaluation.reward_range_source}). "
        f"Intervals: IPS and DR {evaluation.results[0].ips.interval}, SNIPS bootstrap. ESS: effective sample size."
    )
    if evaluation.bad_line_count:
        rows.append(f"{evaluation.bad_line_count} lines were left out; the estimates cover the other events only:")
        rows += [f"  line {b.line}: {b.reason}" for b in evaluation.bad_lines[:20]]
        if evaluation.bad_line_count > 20:
            rows.append(
                f"  ... and {evaluation.bad_line_count - 20} more (all in the JSON output, up to {MAX_BAD_LINES_KEPT})"
            )
    return "\n".join(rows)


def chart(evaluation: Evaluation, path: Path) -> None:
    """A PNG of every policy's SNIPS and DR estimates with their intervals. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(evaluation.results, key=lambda r: r.dr.value)
    labels = [r.label for r in results]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.55 * len(results)))
    for offset, name, color in ((-0.15, "snips", "tab:blue"), (0.15, "dr", "tab:orange")):
        values = [getattr(r, name) for r in results]
        ys = [i + offset for i in range(len(results))]
        centre = [v.value for v in values]
        errors = [[v.value - v.low for v in values], [v.high - v.value for v in values]]
        ax.errorbar(centre, ys, xerr=errors, fmt="o", color=color, capsize=3, label=name.upper())
    ax.set_yticks(range(len(results)), labels)
    low, high = evaluation.reward_range
    ax.set_xlim(low, high)
    ax.set_xlabel(f"estimated mean reward per event ({evaluation.confidence:.0%} intervals)")
    ax.set_title(f"Counterfactual evaluation on {evaluation.events} logged events")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
