"""Multi-slot ranking: VW's conditional contextual bandit against the per-slot reduction Kairos runs.

A page has three slots (hero, side, footer) and six candidate offers; customers belong to three segments.
Each (segment, slot) pair has its own preferred offer, and the three preferred offers of a segment differ,
so a policy has to learn where each offer works, not only which offers work. A slot's click probability is
0.6 for its preferred offer and 0.1 otherwise, times a position factor (1, 0.8, 0.6). Both learners get the
same features (segment; slot id; offer id) and interactions (context x action, slot x action), SquareCB
with gamma_scale 10, learning rate 1, and learn every slot's reward at once.

- ``ccb_explore_adf``: VW's conditional contextual bandit, used as VW intends: each slot shows the first
  action of its distribution, which VW itself removes from the later slots.
- ``per-slot reduction``: Kairos's path (policies.slots.assign over the service's VWPolicy and feature
  encoding): each slot draws its action from its own distribution, the drawn action leaves the later slots,
  and each slot is learned as its own cb_explore_adf event with the probability it was drawn with.

Reported: clicks per page over the last quarter of the rounds as a share of the oracle's expected clicks
(every slot shows its preferred offer), and the share of slot decisions whose logged probability was the
probability the shown action actually had (the draw is what makes off-policy estimates and learning
unbiased).

    python -m benchmarks.slots            # 3 seeds x 4000 rounds
    python -m benchmarks.slots --quick    # 1 seed x 1500 rounds
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import vowpalwabbit

from policies.features import Candidate, FeatureGroup, NamespaceTable, action_line, shared_line
from policies.learner_options import LearnerOptions
from policies.ranking import draw_for, rank
from policies.slots import SlotChoice, assign
from policies.vw import VWPolicy

SEGMENTS = ("student", "family", "retiree")
SLOTS = ("hero", "side", "footer")
OFFERS = tuple(f"offer-{k}" for k in range(6))
POSITION = (1.0, 0.8, 0.6)
HIT, MISS = 0.6, 0.1
# The preferred offer of each (segment, slot): distinct within a segment, and each segment's hero offer is
# another segment's side or footer offer, so "which offer is good" alone cannot fill the page.
PREFERRED = {
    "student": ("offer-0", "offer-1", "offer-2"),
    "family": ("offer-1", "offer-2", "offer-3"),
    "retiree": ("offer-2", "offer-0", "offer-4"),
}
ORACLE = sum(HIT * p for p in POSITION)
RANDOM = sum((HIT + (len(OFFERS) - 1) * MISS) / len(OFFERS) * p for p in POSITION)


def click_probability(segment: str, slot: int, offer: str) -> float:
    return (HIT if PREFERRED[segment][slot] == offer else MISS) * POSITION[slot]


Page = Callable[[int, str], tuple[list[str], int]]  # (round, segment) -> (offer per slot, honest probabilities)
Learn = Callable[[list[float]], None]


class CCB:
    """Raw ``ccb_explore_adf``; slot k shows the first action VW lists for it."""

    def __init__(self) -> None:
        args = "--ccb_explore_adf --squarecb --gamma_scale 10 -l 1 --power_t 0.5 -b 18 --quiet -q UA -q SA"
        self.vw = vowpalwabbit.Workspace(args)
        self.last: list[str] = []

    def _lines(self, segment: str, labels: list[str]) -> list[str]:
        lines = [f"ccb shared |User seg={segment}"]
        lines += [f"ccb action |Action id={offer}" for offer in OFFERS]
        lines += [f"ccb slot {label} |Slot id={slot}" for slot, label in zip(SLOTS, labels, strict=True)]
        return lines

    def page(self, round_: int, segment: str) -> tuple[list[str], list[tuple[int, float]], int]:
        scores = self.vw.predict(self._lines(segment, [""] * len(SLOTS)))
        shown = [(int(slot[0][0]), float(slot[0][1])) for slot in scores]
        # The first action is shown whatever its probability: the logged probability is true only when it is 1.
        honest = sum(p >= 1.0 - 1e-6 for _, p in shown)
        self.last = [segment]
        return [OFFERS[a] for a, _ in shown], shown, honest

    def learn(self, segment: str, shown: list[tuple[int, float]], rewards: list[float]) -> None:
        labels = [f"{a}:{-r:g}:{max(p, 1e-3):g}" for (a, p), r in zip(shown, rewards, strict=True)]
        self.vw.learn(self._lines(segment, labels))


class Reduction:
    """Kairos's per-slot reduction: the service's encoding, VWPolicy and policies.slots.assign."""

    def __init__(self, seed: int) -> None:
        self.table = NamespaceTable()
        self.candidates = [Candidate(offer) for offer in OFFERS]
        self.lines = [action_line(c, self.table) for c in self.candidates]
        self.seed = seed
        self._shared(SLOTS[0], "student")  # give every namespace its index before the command line is built
        self.policy = VWPolicy(LearnerOptions().vw_args(self.table))

    def _shared(self, slot: str, segment: str) -> str:
        return shared_line([FeatureGroup("user", {"seg": segment})], self.table, slot=slot)

    def page(self, round_: int, segment: str) -> tuple[list[str], list[tuple[str, list[str], int, float]], int]:
        shared = [self._shared(slot, segment) for slot in SLOTS]
        choices = [SlotChoice(tuple(range(len(OFFERS))))] * len(SLOTS)

        def rank_slot(k: int, offered: tuple[int, ...]) -> object:
            prediction = self.policy.predict(shared[k], [self.lines[i] for i in offered])
            return rank(prediction.pmf, prediction.scores, draw_for(self.seed, f"{round_}\x1f{k}"))

        placements = assign(choices, rank_slot)  # type: ignore[arg-type]
        logged = []
        for k, placement in enumerate(placements):
            assert placement is not None
            lines = [self.lines[i] for i in placement.offered]
            probability = placement.ranking.probabilities[placement.ranking.order[0]]
            logged.append((shared[k], lines, placement.ranking.order[0], probability))
        return [OFFERS[p.chosen] for p in placements if p is not None], logged, len(SLOTS)

    def learn(self, logged: list[tuple[str, list[str], int, float]], rewards: list[float]) -> None:
        for (shared, lines, chosen, probability), reward in zip(logged, rewards, strict=True):
            self.policy.learn(shared, lines, chosen, cost=-reward, probability=probability)


def run(learner: str, seed: int, rounds: int) -> dict[str, float]:
    world = random.Random(seed)
    ccb = CCB() if learner == "ccb_explore_adf" else None
    reduction = Reduction(seed) if ccb is None else None
    late_clicks, late_rounds, honest, decisions = 0.0, 0, 0, 0
    started = time.perf_counter()
    for t in range(rounds):
        segment = world.choice(SEGMENTS)
        if ccb is not None:
            offers, ccb_shown, honest_now = ccb.page(t, segment)
        else:
            assert reduction is not None
            offers, logged, honest_now = reduction.page(t, segment)
        rewards = [1.0 if world.random() < click_probability(segment, k, o) else 0.0 for k, o in enumerate(offers)]
        if ccb is not None:
            ccb.learn(segment, ccb_shown, rewards)
        else:
            assert reduction is not None
            reduction.learn(logged, rewards)
        honest += honest_now
        decisions += len(SLOTS)
        if t >= rounds * 3 // 4:
            late_clicks += sum(rewards)
            late_rounds += 1
    return {
        "share_of_oracle_last_quarter": late_clicks / late_rounds / ORACLE,
        "honest_propensity_share": honest / decisions,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed x 1500 rounds")
    parser.add_argument("--out", type=Path, default=None, help="write slots.json into this folder")
    args = parser.parse_args(argv)
    seeds, rounds = ((1,), 1500) if args.quick else ((1, 2, 3), 4000)
    results: dict[str, list[dict[str, float]]] = {}
    for learner in ("ccb_explore_adf", "per-slot reduction"):
        results[learner] = [run(learner, seed, rounds) for seed in seeds]
    print(f"{len(seeds)} seed(s) x {rounds} rounds; uniform random gets {RANDOM / ORACLE:.2f} of the oracle")
    print(f"{'learner':<22} {'oracle share (last 1/4)':>24} {'honest propensities':>20}")
    for learner, runs in results.items():
        share = sum(r["share_of_oracle_last_quarter"] for r in runs) / len(runs)
        honest = sum(r["honest_propensity_share"] for r in runs) / len(runs)
        per_seed = ", ".join(f"{r['share_of_oracle_last_quarter']:.2f}" for r in runs)
        print(f"{learner:<22} {share:>17.2f} ({per_seed}) {honest:>12.2f}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {"seeds": list(seeds), "rounds": rounds, "random_share": RANDOM / ORACLE, "results": results}
        (args.out / "slots.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
