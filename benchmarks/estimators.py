"""Do the off-policy estimators' intervals cover the truth, and does DR beat IPS with a good reward model?

Simulated logs with a known true policy value: a finite set of contexts with known expected rewards per
action (Bernoulli rewards), an epsilon-greedy logging policy around a noisy scorer, and a target policy
that is softmax over a different noisy scorer. The true value of the target, ``mean_x sum_a pi(a|x)
mu(x, a)``, is computed exactly. Over many seeds, reported: how often each interval contains the truth
(nominal 95%; conservative is fine, more than 5 points under is a bug), and the root mean squared error
of IPS, SNIPS, DR with a good reward model (mu plus small noise) and DR with a bad one (one minus the good one).
IPS and DR are shown with empirical Bernstein intervals and (``_normal``) normal-approximation ones.

    python -m benchmarks.estimators            # 500 seeds x 3000 events
    python -m benchmarks.estimators --quick    # 200 seeds x 1000 events
    python -m benchmarks --only estimators     # the same through the benchmark runner
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policies import estimators

ACTIONS = 5
CONTEXTS = 40
LOGGING_EPSILON = 0.3
CONFIDENCE = 0.95


@dataclass
class Logs:
    rewards: np.ndarray
    logging_p: np.ndarray
    target_p: np.ndarray
    good_logged: np.ndarray
    good_target: np.ndarray
    bad_logged: np.ndarray
    bad_target: np.ndarray
    truth: float


def _softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
    result: np.ndarray = z / z.sum(axis=1, keepdims=True)
    return result


def simulate(seed: int, events: int) -> Logs:
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.05, 0.6, size=(CONTEXTS, ACTIONS))  # click probability per context and action
    # Logging: epsilon-greedy around a scorer that knows mu roughly.
    logging_best = np.argmax(mu + rng.normal(0, 0.15, size=mu.shape), axis=1)
    logging_pmf = np.full((CONTEXTS, ACTIONS), LOGGING_EPSILON / ACTIONS)
    logging_pmf[np.arange(CONTEXTS), logging_best] += 1 - LOGGING_EPSILON
    # Target: a softmax over a different noisy scorer.
    target_pmf = _softmax(mu + rng.normal(0, 0.1, size=mu.shape), temperature=0.05)
    truth = float(np.mean(np.sum(target_pmf * mu, axis=1)))
    good_model = np.clip(mu + rng.normal(0, 0.03, size=mu.shape), 0, 1)
    bad_model = 1.0 - good_model  # wrong way round: ranks the actions backwards

    contexts = rng.integers(0, CONTEXTS, size=events)
    cumulative = np.cumsum(logging_pmf[contexts], axis=1)
    actions = np.minimum((rng.random(events)[:, None] > cumulative).sum(axis=1), ACTIONS - 1)
    rewards = (rng.random(events) < mu[contexts, actions]).astype(np.float64)
    return Logs(
        rewards=rewards,
        logging_p=logging_pmf[contexts, actions],
        target_p=target_pmf[contexts, actions],
        good_logged=good_model[contexts, actions],
        good_target=np.sum(target_pmf[contexts] * good_model[contexts], axis=1),
        bad_logged=bad_model[contexts, actions],
        bad_target=np.sum(target_pmf[contexts] * bad_model[contexts], axis=1),
        truth=truth,
    )


def run(seeds: int, events: int, resamples: int) -> dict[str, dict[str, float]]:
    reward_range = (0.0, 1.0)
    errors: dict[str, list[float]] = {
        name: [] for name in ("ips", "snips", "dr_good", "dr_bad", "ips_normal", "dr_good_normal")
    }
    covered: dict[str, int] = dict.fromkeys(errors, 0)
    widths: dict[str, list[float]] = {name: [] for name in errors}
    for seed in range(seeds):
        logs = simulate(seed, events)
        max_weight = ACTIONS / LOGGING_EPSILON  # the smallest logging probability is epsilon / actions
        found = {
            "ips": estimators.ips(
                logs.rewards,
                logs.logging_p,
                logs.target_p,
                max_weight=max_weight,
                reward_range=reward_range,
                confidence=CONFIDENCE,
            ),
            "snips": estimators.snips(
                logs.rewards,
                logs.logging_p,
                logs.target_p,
                resamples=resamples,
                seed=seed,
                reward_range=reward_range,
                confidence=CONFIDENCE,
            ),
            "dr_good": estimators.doubly_robust(
                logs.rewards,
                logs.logging_p,
                logs.target_p,
                logs.good_logged,
                logs.good_target,
                max_weight=max_weight,
                reward_range=reward_range,
                confidence=CONFIDENCE,
            ),
            "dr_bad": estimators.doubly_robust(
                logs.rewards,
                logs.logging_p,
                logs.target_p,
                logs.bad_logged,
                logs.bad_target,
                max_weight=max_weight,
                reward_range=reward_range,
                confidence=CONFIDENCE,
            ),
            "ips_normal": estimators.ips(
                logs.rewards,
                logs.logging_p,
                logs.target_p,
                reward_range=reward_range,
                confidence=CONFIDENCE,
                interval="normal",
            ),
            "dr_good_normal": estimators.doubly_robust(
                logs.rewards,
                logs.logging_p,
                logs.target_p,
                logs.good_logged,
                logs.good_target,
                reward_range=reward_range,
                confidence=CONFIDENCE,
                interval="normal",
            ),
        }
        for name, estimate in found.items():
            errors[name].append(estimate.value - logs.truth)
            covered[name] += int(estimate.low <= logs.truth <= estimate.high)
            widths[name].append(estimate.high - estimate.low)
    return {
        name: {
            "coverage": covered[name] / seeds,
            "rmse": float(np.sqrt(np.mean(np.square(errors[name])))),
            "bias": float(np.mean(errors[name])),
            "median_interval_width": float(np.median(widths[name])),
        }
        for name in errors
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 seeds x 1000 events (for CI)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--out", type=Path, help="also write the results as JSON into this folder (estimators.json)")
    args = parser.parse_args(argv)
    seeds = args.seeds or (200 if args.quick else 500)
    events = args.events or (1000 if args.quick else 3000)
    results = run(seeds, events, resamples=400 if args.quick else 1000)
    print(f"{seeds} seeds x {events} events, {ACTIONS} actions, nominal coverage {CONFIDENCE:.0%}")
    print(f"{'estimator':14} {'coverage':>9} {'rmse':>8} {'bias':>8} {'width':>8}")
    for name, row in results.items():
        print(
            f"{name:14} {row['coverage']:>9.1%} {row['rmse']:>8.4f} {row['bias']:>+8.4f} "
            f"{row['median_interval_width']:>8.4f}"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {"seeds": seeds, "events": events, "confidence": CONFIDENCE, "results": results}
        (args.out / "estimators.json").write_text(json.dumps(summary, indent=2) + "\n")
    failures = [
        f"{name} coverage {row['coverage']:.1%} is more than 5 points under {CONFIDENCE:.0%}"
        for name, row in results.items()
        if row["coverage"] < CONFIDENCE - 0.05
    ]
    if results["dr_good"]["rmse"] >= results["ips"]["rmse"]:
        failures.append("DR with a good reward model is not more accurate than IPS")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
