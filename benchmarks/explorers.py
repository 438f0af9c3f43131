"""Which explorer and interactions should a new decision point get? A side-by-side learning benchmark.

Every configuration learns online on the same simulated customers, with the
same random draws, through the service's own policy code (feature encoding,
VW policy, sampling), without the gRPC transport. Customers belong to latent
taste segments that a noisy `tier` feature reveals; context also carries the
channel, the device and an open support ticket, which makes a service action
far more valuable than any sale. Reported: mean reward over all rounds and over
the last quarter, and the share of the oracle (always showing the action with
the highest click probability).

    python -m benchmarks.explorers               # 3 seeds x 8000 rounds
    python -m benchmarks.explorers --quick       # 1 seed x 3000 rounds
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from policies.features import Candidate, FeatureGroup, NamespaceTable, action_line, shared_line
from policies.learner_options import Explorer, LearnerOptions
from policies.ranking import rank
from policies.vw import VWPolicy

CATEGORIES = ("mobile", "broadband", "tv", "insurance")
CHANNELS = ("web", "app", "call_center")
DEVICES = ("ios", "android", "desktop")
SEGMENTS = 5


@dataclass(frozen=True)
class Config:
    label: str
    options: LearnerOptions


def configs() -> list[Config]:
    every = ("*",)
    pairs = ("user*offer", "situation*offer", "user*kind", "situation*kind")
    return [
        Config("squarecb g=10, context x actions (default)", LearnerOptions()),
        Config(
            "squarecb g=10, context x actions, lr 1.0",
            LearnerOptions(Explorer("square_cb", gamma_scale=10), learning_rate=1.0),
        ),
        Config("squarecb g=10, all pairs", LearnerOptions(Explorer("square_cb", gamma_scale=10), every)),
        Config("squarecb g=50, all pairs", LearnerOptions(Explorer("square_cb", gamma_scale=50), every)),
        Config(
            "squarecb g=10, all pairs, lr 0.1",
            LearnerOptions(Explorer("square_cb", gamma_scale=10), every, learning_rate=0.1),
        ),
        Config(
            "squarecb g=10, all pairs, lr 0.05 constant",
            LearnerOptions(Explorer("square_cb", gamma_scale=10), every, learning_rate=0.05, power_t=0.0),
        ),
        Config("squarecb g=10, context x action", LearnerOptions(Explorer("square_cb", gamma_scale=10), pairs)),
        Config("squarecb g=10, no interactions", LearnerOptions(Explorer("square_cb", gamma_scale=10), ())),
        Config("regcb, all pairs", LearnerOptions(Explorer("reg_cb"), every)),
        Config("epsilon 0.05, all pairs", LearnerOptions(Explorer("epsilon_greedy", epsilon=0.05), every)),
        Config("epsilon 0.2, all pairs", LearnerOptions(Explorer("epsilon_greedy", epsilon=0.2), every)),
        Config("bag 5, all pairs", LearnerOptions(Explorer("bag", bag_size=5, epsilon=0.05), every)),
        Config("cover 4, all pairs", LearnerOptions(Explorer("cover", cover_size=4), every)),
        Config("softmax l=5, all pairs", LearnerOptions(Explorer("softmax", softmax_lambda=5), every)),
    ]


class World:
    """Simulated customers and offers with a fixed seed."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.tastes = [[rng.gauss(0, 1.2) for _ in CATEGORIES] for _ in range(SEGMENTS)]
        self.offers = [(f"{c}-{k}", c, k) for c in CATEGORIES for k in range(3)]
        self.actions = [
            Candidate(
                oid,
                (FeatureGroup("offer", {"category": c, "price_level": float(k)}), FeatureGroup("kind", {"sale": True})),
            )
            for oid, c, k in self.offers
        ] + [
            Candidate("fix-my-problem", (FeatureGroup("kind", {"service": True}),)),
            Candidate("billing-help", (FeatureGroup("kind", {"service": True, "billing": True}),)),
        ]

    def customer(self, rng: random.Random) -> tuple[list[FeatureGroup], list[float]]:
        segment = rng.randrange(SEGMENTS)
        tier = segment if rng.random() < 0.8 else rng.randrange(SEGMENTS)  # a noisy profile
        channel, device = rng.choice(CHANNELS), rng.choice(DEVICES)
        ticket = rng.random() < 0.2
        billing = ticket and rng.random() < 0.5
        context = [
            FeatureGroup("user", {"tier": f"t{tier}", "age": float(rng.randrange(18, 80)) / 80}),
            FeatureGroup("situation", {"channel": channel, "device": device, "open_ticket": ticket}),
        ]
        probabilities = []
        for oid, category, level in self.offers:
            del oid
            logit = self.tastes[segment][CATEGORIES.index(category)] - 0.3 * level - 1.5
            logit += 0.5 if channel == "app" and category == "mobile" else 0.0
            probabilities.append(0.02 if ticket else 1 / (1 + math.exp(-logit)))
        probabilities.append(0.6 if ticket and not billing else 0.3 if ticket else 0.01)
        probabilities.append(0.7 if billing else 0.01)
        return context, probabilities


def run(config: Config, seed: int, rounds: int) -> list[float]:
    world = World(seed)
    rng = random.Random(seed + 1)
    table = NamespaceTable()
    options = LearnerOptions(**{**config.options.__dict__, "bits": 18})
    policy = VWPolicy(options.vw_args(table))
    lines = [action_line(a, table) for a in world.actions]
    rewards = []
    for _ in range(rounds):
        context, probabilities = world.customer(rng)
        shared = shared_line(context, table)
        policy = policy.under(options.vw_args(table))  # as the service does when a namespace first appears
        prediction = policy.predict(shared, lines)
        ranking = rank(prediction.pmf, prediction.scores, rng.random())
        chosen = ranking.order[0]
        reward = 1.0 if rng.random() < probabilities[chosen] else 0.0
        policy.learn(shared, lines, chosen, cost=-reward, probability=ranking.probabilities[chosen])
        rewards.append(reward)
    policy.close()
    return rewards


def oracle(seed: int, rounds: int) -> float:
    world = World(seed)
    rng = random.Random(seed + 1)
    return sum(max(world.customer(rng)[1]) for _ in range(rounds)) / rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8000)
    parser.add_argument("--quick", action="store_true", help="1 seed, 3000 rounds")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="writes explorers.json here")
    parser.add_argument(
        "--min-default-share",
        type=float,
        default=0.0,
        help="exit 1 if the default configuration reaches less than this share of the oracle "
        "over the last quarter (CI uses a generous margin)",
    )
    args = parser.parse_args(argv)
    seeds, rounds = (1, 3000) if args.quick else (args.seeds, args.rounds)
    best = sum(oracle(s, rounds) for s in range(seeds)) / seeds
    results: list[dict[str, float | str]] = []
    for config in configs():
        started = time.perf_counter()
        runs = [run(config, seed, rounds) for seed in range(seeds)]
        mean = sum(sum(r) for r in runs) / (seeds * rounds)
        tail = sum(sum(r[-rounds // 4 :]) for r in runs) / (seeds * (rounds // 4))
        results.append(
            {"config": config.label, "mean_reward": mean, "last_quarter": tail, "share_of_oracle": tail / best}
        )
        print(
            f"{config.label:34s} mean {mean:.3f}  last quarter {tail:.3f}  ({tail / best:.0%} of oracle)"
            f"  [{time.perf_counter() - started:.0f} s]",
            file=sys.stderr,
        )
    results.sort(key=lambda r: -float(r["last_quarter"]))
    print(f"\noracle {best:.3f}; {seeds} seeds x {rounds} rounds\n")
    print("| configuration | mean reward | last quarter | share of oracle |\n|---|---|---|---|")
    for r in results:
        mean, tail, share = (float(r[k]) for k in ("mean_reward", "last_quarter", "share_of_oracle"))
        print(f"| {r['config']} | {mean:.3f} | {tail:.3f} | {share:.0%} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explorers.json").write_text(
        json.dumps({"oracle": best, "seeds": seeds, "rounds": rounds, "results": results}, indent=2)
    )
    label = next(c.label for c in configs() if c.options == LearnerOptions())  # what a new decision point gets
    share = float(next(r["share_of_oracle"] for r in results if r["config"] == label))
    if share < args.min_default_share:
        print(
            f"FAIL: the default ({label}) reached {share:.0%} of the oracle, below {args.min_default_share:.0%}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
