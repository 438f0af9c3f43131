"""From the model's distribution to a ranking.

``ranking[0]`` is drawn from the distribution (that draw is what makes the
logged probability true, and so what lets learning and offline estimators
correct for exploration); the rest follow by descending probability, ties by
the model's score (lower cost first), then input order.
"""

from __future__ import annotations

import hashlib
import math
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


def sample(probabilities: Sequence[float], draw: float) -> int:
    """The index whose cumulative probability interval holds ``draw`` (uniform in [0, 1))."""
    cumulative = 0.0
    for index, p in enumerate(probabilities):
        cumulative += p
        if draw < cumulative:
            return index
    # Rounding left the draw above the last cumulative sum: take the last positive one.
    return max(i for i, p in enumerate(probabilities) if p > 0.0)


def rank(pmf: Sequence[float], scores: Sequence[float], draw: float) -> Ranking:
    """Sample the first action from ``pmf`` with ``draw``, order the rest; ``scores`` are costs (lower is better)."""
    probabilities = normalise(pmf)
    first = sample(probabilities, draw)
    rest = sorted(
        (i for i in range(len(probabilities)) if i != first),
        key=lambda i: (-probabilities[i], scores[i], i),
    )
    return Ranking(order=(first, *rest), probabilities=tuple(probabilities))


def draw_for(seed: int, event_id: str) -> float:
    """A uniform draw in [0, 1) that depends only on the decision point's seed and the event id.

    Reproducible (a replayed or audited event draws the same action) and
    cheaper than seeding a generator per request.
    """
    digest = hashlib.blake2b(f"{seed}:{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2.0**64


def fallback(action_ids: Sequence[str], baseline_id: str = "") -> Ranking:
    """The ranking to give when the model cannot answer: the baseline action first (when it is a
    candidate), then the candidates in the order given; probability 1 for the first, 0 for the rest,
    which is the truth about how it was chosen."""
    first = action_ids.index(baseline_id) if baseline_id in action_ids else 0
    order = (first, *(i for i in range(len(action_ids)) if i != first))
    return Ranking(order=order, probabilities=tuple(1.0 if i == first else 0.0 for i in range(len(action_ids))))
