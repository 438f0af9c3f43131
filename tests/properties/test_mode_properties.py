"""Properties of the apprentice and holdout rankings and of the doubly robust term, for any input."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from policies import apprentice, holdout

probabilities = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30)


def _check(order: tuple[int, ...], probs: tuple[float, ...], count: int) -> None:
    assert sorted(order) == list(range(count))  # every candidate exactly once
    assert len(probs) == count and math.isclose(math.fsum(probs), 1.0)
    assert all(0.0 <= p <= 1.0 for p in probs)


@given(probabilities, st.data())
def test_apprentice_ranking_is_a_permutation_with_the_baseline_first(pmf: list[float], data: st.DataObject) -> None:
    scores = data.draw(st.lists(st.floats(-1e6, 1e6), min_size=len(pmf), max_size=len(pmf)))
    baseline = data.draw(st.integers(0, len(pmf) - 1))
    ranking = apprentice.serve_baseline(pmf, scores, baseline)
    _check(ranking.order, ranking.probabilities, len(pmf))
    assert ranking.order[0] == baseline and ranking.probabilities[baseline] == 1.0


@given(st.integers(1, 300), st.floats(min_value=0.0, max_value=1.0, exclude_max=True), st.data())
def test_holdout_rankings_are_permutations(count: int, draw: float, data: st.DataObject) -> None:
    uniform = holdout.uniform(count, draw)
    _check(uniform.order, uniform.probabilities, count)
    baseline = data.draw(st.integers(0, count - 1))
    first = holdout.baseline_first(count, baseline)
    _check(first.order, first.probabilities, count)
    assert first.order[0] == baseline


@given(st.text(max_size=40), st.text(max_size=300), st.floats(0.0, 0.5))
def test_holdout_is_a_pure_function_of_the_subject(decision_point: str, subject: str, share: float) -> None:
    assert holdout.held_out(decision_point, subject, share) == holdout.held_out(decision_point, subject, share)
    assert 0.0 <= holdout.position(decision_point, subject) < 1.0
    if holdout.held_out(decision_point, subject, share):
        assert holdout.held_out(decision_point, subject, min(0.5, share + 0.1))  # more share, never fewer subjects


@given(probabilities, st.data())
def test_doubly_robust_term_stays_within_its_width(pmf: list[float], data: st.DataObject) -> None:
    scores = data.draw(st.lists(st.floats(-1e3, 1e3), min_size=len(pmf), max_size=len(pmf)))
    baseline = data.draw(st.integers(0, len(pmf) - 1))
    reward = data.draw(st.floats(-1.0, 1.0))
    found = apprentice.outcome(pmf, scores, baseline, reward, (-1.0, 1.0))
    assert -3.0 - 1e-9 <= found.model_term <= 3.0 + 1e-9  # [low - (high - low), high + (high - low)]
    assert 0.0 <= found.model_weight <= 1.0
