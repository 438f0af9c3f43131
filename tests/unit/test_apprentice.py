"""Apprentice serving and its doubly robust term; holdout assignment and rankings. Hand-computed cases."""

from __future__ import annotations

import pytest

from policies import apprentice, holdout
from policies.intervals import Interval


def test_serve_baseline_puts_it_first_with_probability_one_then_the_models_order() -> None:
    ranking = apprentice.serve_baseline(pmf=[0.1, 0.6, 0.3], scores=[0.0, -1.0, -0.5], baseline=0)
    assert ranking.order == (0, 1, 2)
    assert ranking.probabilities == (1.0, 0.0, 0.0)
    ranking = apprentice.serve_baseline(pmf=[0.1, 0.6, 0.3], scores=[0.0, -1.0, -0.5], baseline=2)
    assert ranking.order == (2, 1, 0)


def test_model_order_breaks_ties_by_score_then_input_order() -> None:
    assert apprentice.model_order([0.5, 0.5, 0.0], [-0.2, -0.4, -1.0]) == [1, 0, 2]
    assert apprentice.model_order([0.5, 0.5], [-0.2, -0.2]) == [0, 1]


def test_outcome_doubly_robust_term_by_hand() -> None:
    # pi = (0.2, 0.8); q = (0.5, 0.9) (scores are costs); baseline 0 got reward 1.
    # DM = 0.2*0.5 + 0.8*0.9 = 0.82; correction pi(b) (r - q(b)) = 0.2 * 0.5 = 0.1 -> 0.92
    found = apprentice.outcome([0.2, 0.8], [-0.5, -0.9], baseline=0, reward=1.0, reward_range=(0.0, 1.0))
    assert found.model_term == pytest.approx(0.92)
    assert found.baseline_reward == 1.0 and found.model_weight == pytest.approx(0.2)
    assert not found.matched
    # Predictions outside the reward range are clipped before use: q = (1, 0) here.
    found = apprentice.outcome([1.0, 0.0], [-3.0, 2.0], baseline=0, reward=0.0, reward_range=(0.0, 1.0))
    assert found.model_term == pytest.approx(0.0)  # 1*1 + 1*(0 - 1)
    assert found.matched


def test_should_promote_needs_enough_events_and_both_lower_bounds_above_the_baselines_interval() -> None:
    model = Interval(0.8, 0.65, 0.95, 500, "x")
    baseline = Interval(0.5, 0.4, 0.6, 500, "x")
    assert apprentice.should_promote(model, model, baseline, min_events=500)
    assert not apprentice.should_promote(model, model, baseline, min_events=501)
    low = Interval(0.8, 0.55, 0.95, 500, "x")  # above the baseline's mean, not above its interval
    assert not apprentice.should_promote(low, model, baseline, min_events=10)
    assert not apprentice.should_promote(model, low, baseline, min_events=10)
    assert apprentice.term_width((-1.0, 1.0)) == 6.0


def test_holdout_is_stable_per_subject_and_takes_about_the_share() -> None:
    subjects = [f"customer-{i}" for i in range(20_000)]
    inside = [s for s in subjects if holdout.held_out("offers", s, 0.1)]
    assert 0.09 < len(inside) / len(subjects) < 0.11
    assert inside == [s for s in subjects if holdout.held_out("offers", s, 0.1)]  # same answer every time
    # Raising the share only adds subjects; another decision point draws its own holdout.
    assert set(inside) <= {s for s in subjects if holdout.held_out("offers", s, 0.2)}
    assert set(inside) != {s for s in subjects if holdout.held_out("emails", s, 0.1)}
    assert not holdout.held_out("offers", "", 0.5)
    assert not any(holdout.held_out("offers", s, 0.0) for s in subjects[:100])


def test_holdout_rankings() -> None:
    assert holdout.baseline_first(3, 1).order == (1, 0, 2)
    assert holdout.baseline_first(3, 1).probabilities == (0.0, 1.0, 0.0)
    uniform = holdout.uniform(4, 0.6)
    assert uniform.order == (2, 0, 1, 3)
    assert uniform.probabilities == (0.25, 0.25, 0.25, 0.25)
