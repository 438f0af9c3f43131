"""Real data: scikit-learn's bundled handwritten digits as a contextual bandit.

The supervised-to-bandit conversion of the Contextual Bandit Bake-off (Bietti,
Agarwal, Langford): each image (8x8 pixels, intensities 0-16, 1,797 images,
shipped with scikit-learn, no download) is a context; the 10 labels are the
actions; showing the right label earns reward 1, any other 0, and only the
shown action's reward is revealed. Every learner sees the images in the same
shuffled order, pass after pass, and is scored on what it shows before it
learns (progressive validation).

Compared:

- ``kairos``: a real ``kairos serve`` over gRPC, a decision point created
  with only a name (the service's defaults), pixels in one context namespace
  (``pixels``, intensity / 16), the labels as candidates with no features
  (Kairos adds the action id as a feature);
- raw Vowpal Wabbit in-process (``cb_explore_adf``) with several
  configurations, the best of which is the reference;
- ``kairos-in-process``: the service's policy code (with its defaults, and
  with context x action interactions), without the transport: the gap to ``kairos`` is what the transport and the
  asynchronous learner cost, the gap to raw VW is what the defaults cost;
- uniform random.

    python -m benchmarks.digits            # 3 seeds x 5 shuffled passes (8,985 rounds)
    python -m benchmarks.digits --quick    # 1 seed x 2 passes, 2 raw VW configurations (CI)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import vowpalwabbit

from benchmarks import plotting
from benchmarks.kairos_client import action, kairos_session
from benchmarks.load import machine, source
from policies.features import Candidate, FeatureGroup, NamespaceTable, action_line, shared_line
from policies.learner_options import LearnerOptions
from policies.ranking import rank
from policies.vw import VWPolicy

LABELS = 10
POINTS_PER_PASS = 10  # points per pass on the accuracy curves


def log(message: str) -> None:
    print(f"[digits {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Stream:
    """The images in the order every learner sees them: ``passes`` shuffles of the data set, one after another."""

    pixels: npt.NDArray[np.float64]  # rows of 64 intensities scaled to [0, 1]
    labels: npt.NDArray[np.int64]
    order: npt.NDArray[np.int64]
    passes: int

    @classmethod
    def load(cls, passes: int, seed: int) -> Stream:
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

        data = load_digits()
        rng = np.random.default_rng(seed)
        order = np.concatenate([rng.permutation(len(data.target)) for _ in range(passes)])
        return cls(np.asarray(data.data, dtype=float) / 16.0, np.asarray(data.target, dtype=np.int64), order, passes)

    def __len__(self) -> int:
        return len(self.order)

    def context(self, t: int) -> list[FeatureGroup]:
        row = self.pixels[self.order[t]]
        return [FeatureGroup("pixels", {f"p{i}": float(v) for i, v in enumerate(row) if v})]

    def label(self, t: int) -> int:
        return int(self.labels[self.order[t]])


CANDIDATES = [Candidate(f"label-{k}") for k in range(LABELS)]


# -- learners --------------------------------------------------------------------------------------------------


def raw_vw(stream: Stream, args: str, seed: int) -> npt.NDArray[np.float64]:
    """Raw pyvw ``cb_explore_adf``: pixels in namespace p, the label as the action's feature in namespace a."""
    vw = vowpalwabbit.Workspace(f"--cb_explore_adf --quiet {args}")
    rng = random.Random(seed)
    actions = [f"|a l{k}" for k in range(LABELS)]
    rewards = np.zeros(len(stream))
    try:
        for t in range(len(stream)):
            row = stream.pixels[stream.order[t]]
            shared = "shared |p " + " ".join(f"p{i}:{v:.4g}" for i, v in enumerate(row) if v)
            pmf = vw.predict([shared, *actions])
            chosen = rank(pmf, [0.0] * LABELS, rng.random()).order[0]
            reward = 1.0 if chosen == stream.label(t) else 0.0
            rewards[t] = reward
            labelled = [
                f"0:{-reward}:{max(pmf[chosen], 1e-3)} {line}" if k == chosen else line
                for k, line in enumerate(actions)
            ]
            vw.learn([shared, *labelled])
    finally:
        vw.finish()
    return rewards


def kairos_in_process(stream: Stream, options: LearnerOptions, seed: int) -> npt.NDArray[np.float64]:
    """The service's own encoding, VW policy and sampling, without the transport."""
    table = NamespaceTable()
    policy = VWPolicy(options.vw_args(table))
    lines = [action_line(c, table) for c in CANDIDATES]
    rng = random.Random(seed)
    rewards = np.zeros(len(stream))
    try:
        for t in range(len(stream)):
            shared = shared_line(stream.context(t), table)
            policy = policy.under(options.vw_args(table))  # as the service does when a namespace first appears
            prediction = policy.predict(shared, lines)
            ranking = rank(prediction.pmf, prediction.scores, rng.random())
            chosen = ranking.order[0]
            rewards[t] = 1.0 if chosen == stream.label(t) else 0.0
            policy.learn(shared, lines, chosen, -rewards[t], ranking.probabilities[chosen])
    finally:
        policy.close()
    return rewards


def kairos_grpc(stream: Stream, seed: int, options: LearnerOptions | None = None) -> npt.NDArray[np.float64]:
    """A real ``kairos serve``: Rank each image, show ranking[0], Reward 1 if it is the right label, else 0.

    ``options`` None creates the decision point with only a name (the service's defaults).
    """
    actions = [action(c) for c in CANDIDATES]
    rewards = np.zeros(len(stream))
    with kairos_session("digits", seed, options) as session:
        for t in range(len(stream)):
            event = f"image-{t}"
            chosen = session.choose(event, stream.context(t), actions)
            rewards[t] = 1.0 if chosen == stream.label(t) else 0.0
            session.reward(event, rewards[t])
        stats = session.stats()
        log(f"kairos: {stats.ranks} ranks, {stats.rewards} rewards, {stats.learned} learned")
    return rewards


def uniform(stream: Stream, seed: int) -> npt.NDArray[np.float64]:
    rng = random.Random(seed)
    return np.array([1.0 if rng.randrange(LABELS) == stream.label(t) else 0.0 for t in range(len(stream))])


# Raw VW configurations searched for the reference (p: pixels, a: the label).
RAW_CONFIGS = (
    "--squarecb --gamma_scale 10 -q pa",
    "--squarecb --gamma_scale 10 -q pa -l 1.0",
    "--squarecb --gamma_scale 10 -q pa -l 1.0 --power_t 0",
    "--squarecb --gamma_scale 10 -q pa -l 2.0",
    "--squarecb --gamma_scale 10 -q pa -l 0.2 --power_t 0",
    "--squarecb --gamma_scale 50 -q pa",
    "--squarecb --gamma_scale 50 -q pa -l 1.0",
    "--squarecb --gamma_scale 10 -q :: -l 0.5",
    "--epsilon 0.05 -q pa",
    "--epsilon 0.02 -q pa -l 1.0",
    "--bag 5 --epsilon 0.05 -q pa",
    "--cover 4 -q pa",
    "--regcb -q pa",
)
# What closes the gap to raw VW: only context x action-id pairs (no pixel x pixel), and a larger step.
CONTEXT_X_ACTION = LearnerOptions(interactions=("pixels*_action",), learning_rate=1.0)
KAIROS_DEFAULT = "kairos (gRPC, defaults)"
KAIROS_CONFIGURED = "kairos (gRPC, interactions pixels*_action, learning_rate 1.0)"
QUICK_RAW_CONFIGS = ("--squarecb --gamma_scale 10 -q pa -l 1.0", "--squarecb --gamma_scale 10 -q :: -l 0.5")


# -- measuring --------------------------------------------------------------------------------------------------


def summary(runs: Sequence[npt.NDArray[np.float64]], passes: int) -> dict[str, Any]:
    """Accuracy averaged over seeds (each run is one seed's rewards, round by round)."""
    rewards = np.mean(runs, axis=0)
    per_pass = np.array_split(rewards, passes)
    ends = np.cumsum([len(x) for x in np.array_split(rewards, passes * POINTS_PER_PASS)])
    return {
        "progressive_accuracy": float(rewards.mean()),
        "per_seed": [float(r.mean()) for r in runs],
        "last_pass_accuracy": float(per_pass[-1].mean()),
        "per_pass": [float(p.mean()) for p in per_pass],
        "cumulative_curve": [float(rewards[:end].mean()) for end in ends],
    }


Learner = Callable[[Stream, int], npt.NDArray[np.float64]]


def learners(raw_configs: Sequence[str]) -> list[tuple[str, str, Learner]]:
    """(name, kind, run) of every learner compared."""

    def raw(args: str) -> Learner:
        return lambda stream, seed: raw_vw(stream, args, seed)

    return [
        (KAIROS_DEFAULT, "kairos", kairos_grpc),
        (KAIROS_CONFIGURED, "kairos", lambda stream, seed: kairos_grpc(stream, seed, CONTEXT_X_ACTION)),
        (
            "kairos policy code in-process, defaults",
            "kairos-in-process",
            lambda stream, seed: kairos_in_process(stream, LearnerOptions(), seed),
        ),
        (
            "kairos policy code in-process, interactions pixels*_action, learning_rate 1.0",
            "kairos-in-process",
            lambda stream, seed: kairos_in_process(stream, CONTEXT_X_ACTION, seed),
        ),
        *((f"raw VW: {args}", "raw-vw", raw(args)) for args in raw_configs),
        ("uniform random", "uniform", uniform),
    ]


def run(passes: int, seeds: int, raw_configs: Sequence[str]) -> dict[str, Any]:
    streams = [Stream.load(passes, seed) for seed in range(seeds)]
    results: dict[str, dict[str, Any]] = {}
    for name, kind, learner in learners(raw_configs):
        started = time.perf_counter()
        runs = [learner(stream, seed) for seed, stream in enumerate(streams)]
        results[name] = {"kind": kind, **summary(runs, passes), "seconds": (time.perf_counter() - started) / seeds}
        log(
            f"{name:70s} progressive {results[name]['progressive_accuracy']:.3f}"
            f" [{time.perf_counter() - started:.0f} s]"
        )
    best_raw = max(
        (n for n, r in results.items() if r["kind"] == "raw-vw"), key=lambda n: results[n]["progressive_accuracy"]
    )
    reference = results[best_raw]["progressive_accuracy"]
    return {
        "passes": passes,
        "rounds": len(streams[0]),
        "seeds": seeds,
        "learners": results,
        "best_raw_vw": best_raw,
        "kairos_vs_best_raw_vw": results[KAIROS_DEFAULT]["progressive_accuracy"] / reference,
        "kairos_configured_vs_best_raw_vw": results[KAIROS_CONFIGURED]["progressive_accuracy"] / reference,
        "configured_options": CONTEXT_X_ACTION.to_dict(),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['passes']} shuffled passes over 1,797 digits ({result['rounds']} rounds), "
        f"mean of {result['seeds']} seed(s); "
        f"Kairos over gRPC reaches {result['kairos_vs_best_raw_vw']:.3f}x the best raw VW configuration "
        f"({result['best_raw_vw']}) with its defaults, {result['kairos_configured_vs_best_raw_vw']:.3f}x "
        "with context x action interactions and learning_rate 1.0",
        "",
        "| learner | progressive accuracy | per seed | last pass | per pass | seconds per seed |",
        "|---|---:|---|---:|---|---:|",
    ]
    ordered = sorted(result["learners"].items(), key=lambda item: -item[1]["progressive_accuracy"])
    for name, r in ordered:
        passes = " / ".join(f"{p:.3f}" for p in r["per_pass"])
        seeds = " / ".join(f"{a:.3f}" for a in r["per_seed"])
        lines.append(
            f"| {name} | {r['progressive_accuracy']:.3f} | {seeds} | {r['last_pass_accuracy']:.3f} | {passes} "
            f"| {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    learners = result["learners"]
    shown = [KAIROS_DEFAULT, KAIROS_CONFIGURED, result["best_raw_vw"], "uniform random"]
    points = len(learners[shown[0]]["cumulative_curve"])
    xs = [result["rounds"] * (i + 1) / points for i in range(points)]
    series = {name: learners[name]["cumulative_curve"] for name in dict.fromkeys(shown)}
    return plotting.curves(
        path,
        xs,
        [plotting.Panel("progressive accuracy (reward of the shown label so far)", "accuracy", series)],
        title=f"Digits as a contextual bandit, {result['passes']} shuffled passes",
        xlabel="rounds",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.digits", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=None, help="shuffled passes over the data (default 5; quick 2)")
    parser.add_argument(
        "--seeds", type=int, default=None, help="shuffles (and draws) averaged over (default 3; quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="2 passes and 2 raw VW configurations")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="writes digits.json and digits.png here"
    )
    parser.add_argument(
        "--min-configured-vs-raw-vw",
        type=float,
        default=0.0,
        help="exit 1 if Kairos with context x action interactions is below this multiple of the best raw VW",
    )
    parser.add_argument(
        "--min-vs-raw-vw",
        type=float,
        default=0.0,
        help="exit 1 if Kairos's progressive accuracy is below this multiple of the best raw VW configuration",
    )
    args = parser.parse_args(argv)
    passes = args.passes or (2 if args.quick else 5)
    seeds = args.seeds or (1 if args.quick else 3)
    started, code, host = datetime.now(UTC), source(), machine()
    result = run(passes, seeds, QUICK_RAW_CONFIGS if args.quick else RAW_CONFIGS)
    result |= {"started_utc": started.isoformat(timespec="seconds"), "machine": host, "source": code}
    result["command"] = "python -m benchmarks.digits" + (" --quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "digits.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "digits.md").write_text(text + "\n")
    print(text)
    if plot(result, args.out / "digits.png"):
        log(f"wrote {args.out / 'digits.png'}")
    failures = [
        f"Kairos ({label}) reached {result[key]:.3f}x the best raw VW, below {limit}x"
        for label, key, limit in (
            ("defaults", "kairos_vs_best_raw_vw", args.min_vs_raw_vw),
            ("context x action", "kairos_configured_vs_best_raw_vw", args.min_configured_vs_raw_vw),
        )
        if result[key] < limit
    ]
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
