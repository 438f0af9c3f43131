from __future__ import annotations

import math
import random

from policies.ranking import draw_for, normalise, rank, sample


def test_normalise_fixes_float32_sums_and_bad_values() -> None:
    assert math.isclose(math.fsum(normalise([0.3333333, 0.3333333, 0.3333333])), 1.0)
    assert normalise([0.0, 0.0]) == [0.5, 0.5]
    assert normalise([math.nan, 1.0]) == [0.0, 1.0]


def test_sample_follows_the_distribution() -> None:
    rng = random.Random(1)
    counts = [0, 0, 0]
    for _ in range(30_000):
        counts[sample([0.1, 0.6, 0.3], rng.random())] += 1
    assert [round(c / 30_000, 1) for c in counts] == [0.1, 0.6, 0.3]


def test_rest_ordered_by_probability_then_score_then_input_order() -> None:
    pmf = [0.0, 0.25, 0.25, 0.5]
    scores = [0.0, 0.3, 0.1, 0.2]
    for seed in range(20):
        ranking = rank(pmf, scores, random.Random(seed).random())
        rest = list(ranking.order[1:])
        assert rest == sorted(rest, key=lambda i: (-pmf[i], scores[i], i))
        assert ranking.order[0] != 0  # probability 0 is never drawn


def test_same_event_same_draw() -> None:
    assert draw_for(5, "evt") == draw_for(5, "evt")
    assert draw_for(5, "evt") != draw_for(6, "evt")
    draws = [draw_for(1, f"e{i}") for i in range(20_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert abs(sum(draws) / len(draws) - 0.5) < 0.01  # uniform enough to sample with
