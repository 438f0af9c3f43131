"""From the model's distribution to a ranking.

``ranking[0]`` is drawn from the distribution (that draw is what makes the
logged probability true, and so what lets learning and offline estimators
correct for exploration); the rest follow by descending probability, ties by
the model's score (lower cost first), then input order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ranking:
    order: tuple[int, ...]  # indices into the candidates, best first
    probabilities: tuple[float, ...]  # per candidate, in input order; sum to 1


def normalise(pmf: Sequence[float]) -> list[float]:
    """VW's float32 pmf as float64 summing to 1; a broken pmf becomes uniform."""
    clean = [p if math.isfinite(p) and p > 0.0 else 0.0 for p in pmf]
    total = math.fsum(clean)
    if total <= 0.0:
        return [1.0 / len(pmf)] * len(pmf)
    return [p / total for p in clean]


def sample(probabilities: Sequence[float], rng: random.Random) -> int:
    draw = rng.random()
    cumulative = 0.0
    for index, p in enumerate(probabilities):
        cumulative += p
        if draw < cumulative:
            return index
    # Rounding left the draw above the last cumulative sum: take the last positive one.
    return max(i for i, p in enumerate(probabilities) if p > 0.0)


def rank(pmf: Sequence[float], scores: Sequence[float], rng: random.Random) -> Ranking:
    """Sample the first action from ``pmf``, order the rest; ``scores`` are costs (lower is better)."""
    probabilities = normalise(pmf)
    first = sample(probabilities, rng)
    rest = sorted(
        (i for i in range(len(probabilities)) if i != first),
        key=lambda i: (-probabilities[i], scores[i], i),
    )
    return Ranking(order=(first, *rest), probabilities=tuple(probabilities))


def rng_for(seed: int, event_id: str) -> random.Random:
    """A generator that depends only on the decision point's seed and the event id (reproducible)."""
    return random.Random(f"{seed}:{event_id}")
