"""Properties of the off-policy estimators."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import estimators

probability = st.floats(min_value=0.01, max_value=1.0)
target = st.floats(min_value=0.0, max_value=1.0)
reward = st.floats(min_value=-1.0, max_value=1.0)
logs = st.lists(st.tuples(reward, probability, target, reward, reward), min_size=2, max_size=40)


def _columns(rows: list[tuple[float, float, float, float, float]]) -> list[list[float]]:
    return [list(column) for column in zip(*rows, strict=True)]


@settings(max_examples=60, deadline=None)
@given(logs)
def test_every_interval_contains_its_point_estimate(rows: list[tuple[float, float, float, float, float]]) -> None:
    r, p, pi, q, m = _columns(rows)
    found = [
        estimators.ips(r, p, pi, reward_range=(-1.0, 1.0)),
        estimators.snips(r, p, pi, reward_range=(-1.0, 1.0), resamples=200),
        estimators.doubly_robust(r, p, pi, q, m, reward_range=(-1.0, 1.0)),
    ]
    for estimate in found:
        assert np.isfinite([estimate.value, estimate.low, estimate.high]).all()
        assert estimate.low <= estimate.value <= estimate.high
        assert estimate.n == len(rows)


@settings(max_examples=60, deadline=None)
@given(logs, st.floats(min_value=-0.5, max_value=0.5))
def test_snips_moves_with_a_shift_of_rewards(
    rows: list[tuple[float, float, float, float, float]], shift: float
) -> None:
    r, p, pi, _, _ = _columns(rows)
    if sum(t / q for t, q in zip(pi, p, strict=True)) == 0:  # no weight (a subnormal pi / p is 0 too):
        return  # the estimate is the middle of the range, whatever the rewards
    base = estimators.snips(r, p, pi, reward_range=(-1.0, 1.0), resamples=200)
    moved = estimators.snips([x + shift for x in r], p, pi, reward_range=(-1.5, 1.5), resamples=200)
    assert abs(moved.value - (base.value + shift)) < 1e-9


@settings(max_examples=60, deadline=None)
@given(logs, st.randoms(use_true_random=False))
def test_estimates_do_not_depend_on_the_order_of_events(
    rows: list[tuple[float, float, float, float, float]], shuffler: random.Random
) -> None:
    shuffled = list(rows)
    shuffler.shuffle(shuffled)

    def values(data: list[tuple[float, float, float, float, float]]) -> tuple[float, float]:
        r, p, pi, q, m = _columns(data)
        dr = estimators.doubly_robust(r, p, pi, q, m, reward_range=(-1.0, 1.0)).value
        return estimators.ips(r, p, pi, reward_range=(-1.0, 1.0)).value, dr

    assert np.allclose(values(rows), values(shuffled), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(logs)
def test_evaluating_the_logging_policy_on_its_own_logs_is_the_average_reward(
    rows: list[tuple[float, float, float, float, float]],
) -> None:
    # Target = logging policy: every weight is 1, IPS and SNIPS are the plain mean of the rewards.
    r, p, _, _, _ = _columns(rows)
    assert abs(estimators.ips(r, p, p, reward_range=(-1.0, 1.0)).value - float(np.mean(r))) < 1e-9
    assert abs(estimators.snips(r, p, p, reward_range=(-1.0, 1.0), resamples=200).value - float(np.mean(r))) < 1e-9


def test_ips_of_the_logging_policy_is_unbiased_over_many_logs() -> None:
    # A uniform logger over 4 actions with known expected rewards; the target always takes action 0.
    rng = np.random.default_rng(3)
    means = np.array([0.7, 0.2, 0.4, 0.1])
    values = []
    for _ in range(300):
        actions = rng.integers(0, 4, size=400)
        rewards = (rng.random(400) < means[actions]).astype(float)
        values.append(
            estimators.ips(rewards, np.full(400, 0.25), (actions == 0).astype(float), reward_range=(0, 1)).value
        )
    assert abs(float(np.mean(values)) - 0.7) < 0.02  # standard error of the mean ~0.005
