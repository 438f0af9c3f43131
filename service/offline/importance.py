"""Which namespaces and features matter: ablation through the evaluator.

The policy replays the logs with every feature (as ``kairos evaluate`` replays it) and, side by side in
the same pass, once more for each namespace with that namespace removed from every event. A
namespace's importance is the drop in the policy's estimated value (doubly robust) when it is gone,
with a paired interval on the drop (:func:`policies.estimators.doubly_robust_difference`): the same
events, the same reward model, so what both replays share cancels out. A drop whose interval lies above
0 means the policy uses the namespace; one that straddles 0 means the logs cannot tell; one below 0
means the policy does better without it (noise it overfits). With ``features``, the same is done for
each feature (a client feature: every value of a categorical one together) of the top namespaces.

Transport-free: :func:`feature_importance` takes a path and returns plain values, for the command line
now and a REST layer later.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import vowpalwabbit

from policies import estimators
from policies.estimators import Estimate, IntervalKind
from service.offline.dsjson import BadEvent, read_event
from service.offline.evaluate import Candidate, Replayed, learner_args, log_namespaces, replay_logs
from service.offline.spec import parse_spec

FULL = "all features"
MAX_FEATURES_PER_NAMESPACE = 12
VERDICT_COLORS = {
    "matters": "tab:green",
    "hurts": "tab:red",
    "no clear effect": "tab:gray",
}  # the most frequent features of a namespace are ablated one by one


class ImportanceError(ValueError):
    """Importance cannot be computed; the message says why."""


@dataclass(frozen=True)
class Ablation:
    """The policy without one namespace (or one feature of a namespace)."""

    namespace: str  # the client name (or the JSON key of logs from another system)
    feature: str | None
    estimate: Estimate  # DR value of the policy without it
    drop: Estimate  # DR(all features) - DR(without it), paired interval
    weight_share: float | None = None  # share of the learned model's |weights| on terms with this namespace

    @property
    def label(self) -> str:
        return self.namespace if self.feature is None else f"{self.namespace}.{self.feature}"

    @property
    def verdict(self) -> str:
        if self.drop.low > 0:
            return "matters"
        if self.drop.high < 0:
            return "hurts"
        return "no clear effect"

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "feature": self.feature,
            "verdict": self.verdict,
            "drop": self.drop.to_dict(),
            "value_without": self.estimate.to_dict(),
            "weight_share": self.weight_share,
        }


@dataclass
class Importance:
    logs: str
    policy: str
    events: int
    bad_line_count: int
    confidence: float
    reward_range: tuple[float, float]
    full: Estimate  # DR value of the policy with every feature
    namespaces: list[Ablation]  # largest drop first
    features: list[Ablation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "logs": self.logs,
            "policy": self.policy,
            "events": self.events,
            "bad_line_count": self.bad_line_count,
            "confidence": self.confidence,
            "reward_range": list(self.reward_range),
            "value_with_all_features": self.full.to_dict(),
            "namespaces": [a.to_dict() for a in self.namespaces],
            "features": [a.to_dict() for a in self.features],
        }


@dataclass(frozen=True)
class _Found:
    """Where a namespace appears in the logs: its JSON key (the VW index in a Kairos export) and name."""

    key: str
    name: str
    features: Counter[str]


def _feature_name(key: str) -> str:
    """The client feature a DSJSON feature key belongs to: ``tier=gold`` -> ``tier`` (Kairos encodes a
    categorical feature as name=value, percent-encoded)."""
    return key.partition("=")[0]


def _examples(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    context = event.get("c")
    if isinstance(context, dict):
        yield context
        for action in context.get("_multi", []):
            if isinstance(action, dict):
                yield action


def _feature_keys(value: object) -> Iterator[str]:
    parts = value if isinstance(value, list) else [value]
    for part in parts:
        if isinstance(part, dict):
            yield from (k for k in part if isinstance(k, str) and not k.startswith("_"))


def scan_namespaces(path: Path) -> list[_Found]:
    """Every namespace of the usable events (in order of first appearance) with its feature counts."""
    found: dict[str, _Found] = {}
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                read_event(line)
            except BadEvent:
                continue
            event = json.loads(line)
            meta = event.get("_kairos")
            names = meta.get("namespaces") if isinstance(meta, dict) else None
            names = names if isinstance(names, dict) else {}
            for example in _examples(event):
                for key, value in example.items():
                    if key.startswith("_"):
                        continue
                    entry = found.get(key)
                    if entry is None:
                        entry = found[key] = _Found(key, str(names.get(key, key)), Counter())
                    entry.features.update(_feature_name(k) for k in _feature_keys(value))
    return list(found.values())


def namespace_weights(path: Path, policy: str, names: dict[str, str], seed: int = 1) -> dict[str, float]:
    """Each namespace's share of the learned model's weight magnitude: the policy learns every usable event
    (VW ``--invert_hash`` names each weight's features), and each weight's |w| counts for every namespace
    of its term (``user*offer`` for both; shares are of that attributed total). ``names`` maps the logs'
    namespace keys to names.

    A magnitude, not a value: a namespace of many noisy values can hold as much weight as one that
    decides; the ablation drop says what the policy gains from it.
    """
    options = parse_spec(policy)
    namespaces = log_namespaces(path, [Candidate(policy, options)])
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        readable = Path(tmp) / "weights.txt"
        args = [*learner_args(options, namespaces), "--dsjson", "--random_seed", str(seed)]
        vw = vowpalwabbit.Workspace(arg_list=[*args, "--invert_hash", str(readable)])
        try:
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        read_event(line)
                    except BadEvent:
                        continue
                    examples = vw.parse(line)
                    try:
                        vw.learn(examples)
                    finally:
                        vw.finish_example(examples)
        finally:
            vw.finish()  # writes the named weights
        with readable.open(encoding="utf-8", errors="replace") as weights:
            for row in weights:
                term = row.partition(" ")[0]
                parts = term.rsplit(":", 2)
                if len(parts) != 3 or "^" not in parts[0]:
                    continue  # the header, and the constant
                try:
                    magnitude = abs(float(parts[2]))
                except ValueError:
                    continue
                for key in {feature.partition("^")[0] for feature in parts[0].split("*")}:
                    name = names.get(key, key)
                    totals[name] = totals.get(name, 0.0) + magnitude
    total = sum(totals.values())
    return {name: value / total for name, value in totals.items()} if total else {}


def _without(key: str, feature: str | None) -> Callable[[str], str]:
    """A line transform that removes namespace ``key`` (or only ``feature`` from it) from every example."""

    def transform(line: str) -> str:
        event = json.loads(line)
        for example in _examples(event):
            if key not in example:
                continue
            if feature is None:
                del example[key]
                continue
            value = example[key]
            parts = value if isinstance(value, list) else [value]
            for part in parts:
                if isinstance(part, dict):
                    for name in [k for k in part if _feature_name(k) == feature]:
                        del part[name]
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)

    return transform


def _ablations(
    replayed: Replayed, confidence: float, interval: IntervalKind, entries: list[tuple[str, str, str | None]]
) -> list[Ablation]:
    replay = replayed.replay
    bounds = replayed.reward_range
    r = np.asarray(replay.rewards)
    p = np.asarray(replay.logged_p)
    q = np.clip(np.asarray(replay.model_logged), *bounds)

    def target(label: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        return np.asarray(replay.target_p[label]), np.clip(np.asarray(replay.model_target[label]), *bounds)

    full_p, full_m = target(FULL)
    found: list[Ablation] = []
    for label, namespace, feature in entries:
        pi, m = target(label)
        estimate = estimators.doubly_robust(
            r, p, pi, q, m, reward_range=bounds, confidence=confidence, interval=interval
        )
        drop = estimators.doubly_robust_difference(
            r, p, full_p, pi, q, full_m, m, reward_range=bounds, confidence=confidence, interval=interval
        )
        found.append(Ablation(namespace, feature, estimate, drop))
    return sorted(found, key=lambda a: -a.drop.value)


def feature_importance(
    path: Path,
    policy: str = "squarecb",
    *,
    features: bool = False,
    top: int = 3,
    reward_range: tuple[float, float] | None = None,
    confidence: float = 0.95,
    seed: int = 1,
    interval: IntervalKind = "bernstein",
    progress: Callable[[int], None] | None = None,
    weights: bool = False,
) -> Importance:
    """Rank the namespaces of the DSJSON logs at ``path`` (and, with ``features``, the features of the
    ``top`` most important ones) by how much the ``policy`` SPEC's estimated value drops without them; with
    ``weights``, also give each namespace's share of the learned model's weight magnitude."""
    options = parse_spec(policy)
    if not path.is_file():
        raise ImportanceError(f"no such log file: {path}")
    found = scan_namespaces(path)
    if not found:
        raise ImportanceError(f"{path} has no usable events with features")
    labels = {entry.key: f"without {entry.name}" for entry in found}
    candidates = [Candidate(FULL, options)] + [
        Candidate(labels[entry.key], options, _without(entry.key, None)) for entry in found
    ]
    replayed = replay_logs(path, candidates, reward_range=reward_range, seed=seed, progress=progress)
    namespaces = _ablations(replayed, confidence, interval, [(labels[e.key], e.name, None) for e in found])
    if weights:
        shares = namespace_weights(path, policy, {entry.key: entry.name for entry in found}, seed)
        namespaces = [replace(a, weight_share=shares.get(a.namespace, 0.0)) for a in namespaces]
    full = replayed.evaluation(confidence, seed, interval).results
    full_estimate = next(result.dr for result in full if result.label == FULL)
    ablated_features: list[Ablation] = []
    if features:
        by_name = {entry.name: entry for entry in found}
        entries: list[tuple[str, str, str | None]] = []
        feature_candidates = [Candidate(FULL, options)]
        for ablation in namespaces[: max(top, 0)]:
            entry = by_name[ablation.namespace]
            for feature, _ in entry.features.most_common(MAX_FEATURES_PER_NAMESPACE):
                label = f"without {entry.name}.{feature}"
                feature_candidates.append(Candidate(label, options, _without(entry.key, feature)))
                entries.append((label, entry.name, unquote(feature)))
        if entries:
            second = replay_logs(path, feature_candidates, reward_range=reward_range, seed=seed, progress=progress)
            ablated_features = _ablations(second, confidence, interval, entries)
    return Importance(
        logs=str(path),
        policy=policy,
        events=replayed.events,
        bad_line_count=replayed.bad_line_count,
        confidence=confidence,
        reward_range=replayed.reward_range,
        full=full_estimate,
        namespaces=namespaces,
        features=ablated_features,
    )


def table(result: Importance) -> str:
    """The ranking as a text table, largest drop first."""
    level = f"{result.confidence:.0%}"
    rows = [
        f"policy {result.policy!r} on {result.events} events: DR value with every feature {result.full.value:.4f} "
        f"[{result.full.low:.4f}, {result.full.high:.4f}]",
        "",
    ]
    for title, ablations in (("namespace", result.namespaces), ("feature", result.features)):
        if not ablations:
            continue
        shares = any(a.weight_share is not None for a in ablations)
        header = f"{title:32} {'drop':>8} {level + ' interval (paired)':>22} {'value without':>14}"
        header += f" {'|w| share':>9}  verdict" if shares else "  verdict"
        rows += [header, "-" * len(header)]
        for a in ablations:
            share = f" {a.weight_share:>9.1%}" if shares and a.weight_share is not None else ""
            rows.append(
                f"{a.label[:32]:32} {a.drop.value:>8.4f} [{a.drop.low:>9.4f},{a.drop.high:>9.4f}] "
                f"{a.estimate.value:>14.4f}{share}  {a.verdict}"
            )
        rows.append("")
    rows.append(
        f"drop: the policy's estimated value (doubly robust) with every feature minus without this one; intervals "
        f"{result.full.interval}, paired on the same events."
    )
    if result.bad_line_count:
        rows.append(f"{result.bad_line_count} log lines were left out (kairos evaluate lists them).")
    return "\n".join(rows)


def chart(result: Importance, path: Path) -> None:
    """A PNG of the drops with their intervals (namespaces, and features when ranked). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(title, a) for title, a in (("namespaces", result.namespaces), ("features", result.features)) if a]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.5 + 0.45 * sum(len(a) for _, a in panels)), squeeze=False)
    for ax, (title, ablations) in zip(axes[:, 0], panels, strict=True):
        shown = list(reversed(ablations))
        ys = range(len(shown))
        values = [a.drop.value for a in shown]
        errors = [[a.drop.value - a.drop.low for a in shown], [a.drop.high - a.drop.value for a in shown]]
        colors = [
            "tab:green" if a.verdict == "matters" else "tab:red" if a.verdict == "hurts" else "tab:gray" for a in shown
        ]
        ax.barh(list(ys), values, xerr=errors, color=colors, capsize=3)
        ax.set_yticks(list(ys), [a.label for a in shown])
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"drop in estimated value without each of the {title}")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel(f"DR value with all features minus without it ({result.confidence:.0%} paired intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
