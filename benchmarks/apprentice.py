"""Does apprentice mode's estimate of the model's reward cover the truth, and is auto-promotion right?

A simulated world: ``CONTEXTS`` customer segments, ``ACTIONS`` offers, each pair with a known click
probability ``mu(x, a)`` (drawn per seed). A real decision plane (LMDB and VW in a temporary directory)
runs a decision point in apprentice mode; the caller's baseline is one of:

- ``random``: uniform over the offers (every offer is seen in every segment);
- ``mostly_rule``: a fixed offer per segment (the best one under a noisy guess) 70% of the time,
  uniform otherwise;
- ``rule``: always the fixed offer (the other offers are never seen: the model's value for them is an
  extrapolation, and the doubly robust estimate leans on it).

For every event the simulation knows what the estimates target: the model's expected reward under the
distribution it had at that Rank, ``sum_a pi_t(a) mu(x_t, a)``; the baseline's truth is ``mu(x_t, b_t)``.
Over the seeds, reported for GetStats's two model estimates (self-normalised, ``sn``, and doubly robust,
``dr``): how often the 95% interval contains the mean of those truths, and the bias; the baseline
interval's coverage; and how often auto-promotion's rule (both lower bounds above the baseline's mean,
after all the events) fires, and fires wrongly (the model's true mean below the baseline's).

    python -m benchmarks.apprentice            # 40 seeds x 1500 events per baseline
    python -m benchmarks.apprentice --quick    # 12 seeds x 600 events
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from policies import apprentice
from policies.features import Candidate, FeatureGroup
from service.domain import DecisionPointConfig
from service.plane import DecisionPlane, RankInput
from service.store.lmdb_store import Store

CONTEXTS = 6
ACTIONS = 4
BASELINES = ("random", "mostly_rule", "rule")


@dataclass
class Run:
    baseline: str
    seed: int
    model_truth: float
    model_estimate: float
    model_low: float
    model_high: float
    dr_estimate: float
    dr_low: float
    dr_high: float
    baseline_truth: float
    baseline_mean: float
    baseline_low: float
    baseline_high: float
    match_rate: float
    promoted: bool


def run(baseline_kind: str, seed: int, events: int) -> Run:
    rng = random.Random(seed)
    mu = [[rng.uniform(0.05, 0.6) for _ in range(ACTIONS)] for _ in range(CONTEXTS)]
    noisy = [[m + rng.gauss(0, 0.15) for m in row] for row in mu]
    guess = [row.index(max(row)) for row in noisy]  # the existing logic's fixed offer per segment
    offers = [Candidate(f"offer-{a}", (FeatureGroup("offer", {"kind": f"k{a}"}),)) for a in range(ACTIONS)]
    model_truths, baseline_truths = [], []
    with tempfile.TemporaryDirectory() as tmp:
        plane = DecisionPlane(Store(Path(tmp) / "lmdb"), Path(tmp) / "models")
        plane.load_all()
        plane.create_decision_point(
            DecisionPointConfig(name="sim", reward_min=0.0, reward_max=1.0, learning_mode="apprentice", seed=seed)
        )
        try:
            for i in range(events):
                x = rng.randrange(CONTEXTS)
                if baseline_kind == "random" or (baseline_kind == "mostly_rule" and rng.random() < 0.3):
                    b = rng.randrange(ACTIONS)
                else:
                    b = guess[x]
                context = (FeatureGroup("user", {"segment": f"s{x}"}),)
                out = plane.rank(RankInput("sim", offers, context, baseline_action_id=f"offer-{b}", event_id=f"e{i}"))
                with plane.store.read() as txn:
                    decision = plane.store.get_decision(txn, "sim", out.event_id)
                assert decision is not None
                model_truths.append(sum(p * mu[x][a] for a, p in enumerate(decision.model_probabilities)))
                baseline_truths.append(mu[x][b])
                plane.reward("sim", out.event_id, 1.0 if rng.random() < mu[x][b] else 0.0)
                plane.learn_pending(100)
            summary = plane.stats("sim").apprentice
            assert summary is not None
        finally:
            plane.close()
            plane.store.close()
    return Run(
        baseline=baseline_kind,
        seed=seed,
        model_truth=sum(model_truths) / events,
        model_estimate=summary.model_reward.value,
        model_low=summary.model_reward.low,
        model_high=summary.model_reward.high,
        dr_estimate=summary.model_reward_dr.value,
        dr_low=summary.model_reward_dr.low,
        dr_high=summary.model_reward_dr.high,
        baseline_truth=sum(baseline_truths) / events,
        baseline_mean=summary.baseline_reward.value,
        baseline_low=summary.baseline_reward.low,
        baseline_high=summary.baseline_reward.high,
        match_rate=summary.match_rate.value,
        promoted=apprentice.should_promote(summary.model_reward, summary.model_reward_dr, summary.baseline_reward, 1),
    )


def summarise(runs: list[Run]) -> dict[str, float]:
    n = len(runs)
    return {
        "runs": n,
        "sn_coverage": sum(r.model_low <= r.model_truth <= r.model_high for r in runs) / n,
        "sn_bias": sum(r.model_estimate - r.model_truth for r in runs) / n,
        "sn_width": sum(r.model_high - r.model_low for r in runs) / n,
        "dr_coverage": sum(r.dr_low <= r.model_truth <= r.dr_high for r in runs) / n,
        "dr_bias": sum(r.dr_estimate - r.model_truth for r in runs) / n,
        "dr_width": sum(r.dr_high - r.dr_low for r in runs) / n,
        "baseline_coverage": sum(r.baseline_low <= r.baseline_truth <= r.baseline_high for r in runs) / n,
        "mean_model_truth": sum(r.model_truth for r in runs) / n,
        "mean_baseline_truth": sum(r.baseline_truth for r in runs) / n,
        "match_rate": sum(r.match_rate for r in runs) / n,
        "promoted": sum(r.promoted for r in runs) / n,
        "promoted_wrongly": sum(r.promoted and r.model_truth < r.baseline_truth for r in runs) / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="12 seeds x 600 events per baseline")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    seeds = args.seeds or (12 if args.quick else 40)
    events = args.events or (600 if args.quick else 1500)
    results: dict[str, object] = {"seeds": seeds, "events": events, "contexts": CONTEXTS, "actions": ACTIONS}
    runs: list[Run] = []
    header = "baseline     runs  sn cover  sn bias  sn width  dr cover  dr bias  dr width  base cover  true gain"
    print(f"{header}  match  promoted  wrongly", file=sys.stderr)
    for kind in BASELINES:
        found = [run(kind, seed, events) for seed in range(seeds)]
        runs += found
        s = summarise(found)
        results[kind] = s
        gain = s["mean_model_truth"] - s["mean_baseline_truth"]
        line = (
            f"{kind:<12} {s['runs']:>4}  {s['sn_coverage']:>8.2f}  {s['sn_bias']:+7.3f}  {s['sn_width']:>8.3f}"
            f"  {s['dr_coverage']:>8.2f}  {s['dr_bias']:+7.3f}  {s['dr_width']:>8.3f}  {s['baseline_coverage']:>10.2f}"
        )
        print(
            f"{line}  {gain:+9.3f}  {s['match_rate']:.2f}  {s['promoted']:>8.2f}  {s['promoted_wrongly']:.2f}",
            file=sys.stderr,
        )
    results["runs"] = [asdict(r) for r in runs]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "apprentice.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
