"""Estimators against small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies import estimators
from policies.estimators import EstimatorError

# Three events: logged probabilities, the target's probabilities of the logged actions, rewards.
P = [0.5, 0.25, 1.0]
PI = [1.0, 0.5, 0.0]
R = [1.0, 0.0, 1.0]
# Weights 2, 2, 0.


def test_ips_by_hand() -> None:
    found = estimators.ips(R, P, PI, reward_range=(0.0, 1.0))
    assert found.value == pytest.approx((2 * 1 + 2 * 0 + 0 * 1) / 3)
    # Terms 2, 0, 0: sample variance 4/3; max weight 1 / 0.25 = 4, so the terms' width is 4.
    log_term = math.log(4 / 0.05)
    radius = math.sqrt(2 * (4 / 3) * log_term / 3) + 7 * 4 * log_term / (3 * 2)
    assert found.low == pytest.approx(found.value - radius)
    assert found.high == pytest.approx(found.value + radius)
    assert found.effective_sample_size == pytest.approx(16 / 8)
    assert found.interval == "empirical Bernstein"


def test_ips_with_negative_rewards_uses_the_whole_width() -> None:
    found = estimators.ips([-1.0, 1.0], [0.5, 0.5], [1.0, 1.0], reward_range=(-1.0, 1.0), max_weight=2.0)
    assert found.value == pytest.approx(0.0)
    log_term = math.log(4 / 0.05)
    radius = math.sqrt(2 * 8 * log_term / 2) + 7 * 4 * log_term / 3  # terms -2, 2; width 2 * 2
    assert found.high == pytest.approx(radius)


def test_snips_by_hand() -> None:
    found = estimators.snips(R, P, PI, reward_range=(0.0, 1.0))
    assert found.value == pytest.approx((2 * 1 + 2 * 0) / (2 + 2 + 0))
    assert found.low <= found.value <= found.high
    assert found.low >= 0.0 and found.high <= 1.0  # a weighted mean of rewards stays in the range
    assert found.interval == "bootstrap"


def test_snips_is_reproducible_by_seed() -> None:
    first = estimators.snips(R * 10, P * 10, PI * 10, reward_range=(0.0, 1.0), seed=7)
    again = estimators.snips(R * 10, P * 10, PI * 10, reward_range=(0.0, 1.0), seed=7)
    assert (first.low, first.high) == (again.low, again.high)


def test_snips_without_overlap_says_nothing() -> None:
    found = estimators.snips([1.0, 1.0], [0.5, 0.5], [0.0, 0.0], reward_range=(0.0, 1.0))
    assert (found.value, found.low, found.high) == (0.5, 0.0, 1.0)


def test_dr_by_hand() -> None:
    q = [0.5, 0.5, 0.5]  # model's prediction for the logged action
    m = [0.8, 0.4, 0.6]  # model's value of the target policy
    found = estimators.doubly_robust(R, P, PI, q, m, reward_range=(0.0, 1.0))
    terms = [0.8 + 2 * (1 - 0.5), 0.4 + 2 * (0 - 0.5), 0.6 + 0]
    assert found.value == pytest.approx(sum(terms) / 3)
    log_term = math.log(4 / 0.05)
    radius = math.sqrt(2 * float(np.var(terms, ddof=1)) * log_term / 3) + 7 * 9 * log_term / 6  # width 1 * (1 + 8)
    assert found.high - found.value == pytest.approx(radius)


def test_dr_with_a_perfect_model_and_no_noise_is_exact() -> None:
    # Deterministic rewards equal to the model: DR is the model's value whatever the weights.
    found = estimators.doubly_robust([0.3, 0.7], [0.5, 0.2], [1.0, 0.0], [0.3, 0.7], [0.4, 0.9], reward_range=(0, 1))
    assert found.value == pytest.approx(0.65)


@pytest.mark.parametrize(
    ("rewards", "logging_p", "target_p", "message"),
    [
        ([1.0, 0.0], [0.0, 0.5], [1.0, 1.0], "within (0, 1]"),
        ([1.0, 0.0], [1.5, 0.5], [1.0, 1.0], "within (0, 1]"),
        ([1.0, 0.0], [0.5, 0.5], [1.2, 1.0], "within [0, 1]"),
        ([math.nan, 0.0], [0.5, 0.5], [1.0, 1.0], "not finite"),
        ([2.0, 0.0], [0.5, 0.5], [1.0, 1.0], "reward range"),
        ([1.0], [0.5], [1.0], "at least 2"),
        ([1.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0], "3 logging probabilities but 2"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(
    rewards: list[float], logging_p: list[float], target_p: list[float], message: str
) -> None:
    with pytest.raises(EstimatorError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        estimators.ips(rewards, logging_p, target_p, reward_range=(0.0, 1.0))


def test_a_weight_above_the_stated_bound_is_refused() -> None:
    with pytest.raises(EstimatorError, match="above max_weight"):
        estimators.ips([1.0, 0.0], [0.1, 0.5], [1.0, 1.0], reward_range=(0.0, 1.0), max_weight=5.0)


def test_confidence_must_be_a_probability() -> None:
    with pytest.raises(EstimatorError, match="confidence"):
        estimators.ips(R, P, PI, reward_range=(0.0, 1.0), confidence=1.0)


def test_normal_intervals_by_hand() -> None:
    # Terms 2, 0, 0 (see test_ips_by_hand): sample sd sqrt(4/3); z(0.975) = 1.959964.
    found = estimators.ips(R, P, PI, reward_range=(0.0, 1.0), interval="normal")
    assert found.high - found.value == pytest.approx(1.959964 * math.sqrt(4 / 3) / math.sqrt(3), rel=1e-6)
    assert found.interval == "normal approximation"
    dr = estimators.doubly_robust(R, P, PI, [0.5] * 3, [0.8, 0.4, 0.6], reward_range=(0.0, 1.0), interval="normal")
    terms = [0.8 + 2 * (1 - 0.5), 0.4 + 2 * (0 - 0.5), 0.6]
    assert dr.high - dr.value == pytest.approx(1.959964 * float(np.std(terms, ddof=1)) / math.sqrt(3), rel=1e-6)
    # Narrower than the empirical Bernstein interval, which pays for holding at every sample size.
    assert found.high - found.low < estimators.ips(R, P, PI, reward_range=(0.0, 1.0)).high - found.low


def test_dr_difference_by_hand() -> None:
    r, p, q = [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]
    a, m_a = [1.0, 0.0], [0.6, 0.4]
    b, m_b = [0.5, 0.5], [0.5, 0.5]
    # d = (m_a - m_b) + (w_a - w_b)(r - q) = [0.1 + 1 * 0.5, -0.1 - 1 * -0.5] = [0.6, 0.4]
    found = estimators.doubly_robust_difference(r, p, a, b, q, m_a, m_b, reward_range=(0, 1), interval="normal")
    dr_a = estimators.doubly_robust(r, p, a, q, m_a, reward_range=(0, 1))
    dr_b = estimators.doubly_robust(r, p, b, q, m_b, reward_range=(0, 1))
    assert found.value == pytest.approx(0.5) == pytest.approx(dr_a.value - dr_b.value)
    assert found.value - found.low == pytest.approx(1.959964 * math.sqrt(0.02) / math.sqrt(2), rel=1e-5)
    # Empirical Bernstein: the terms lie in an interval of width 2 (high - low)(1 + W) = 6 with W = 2.
    bernstein = estimators.doubly_robust_difference(r, p, a, b, q, m_a, m_b, reward_range=(0, 1))
    log_term = math.log(4 / 0.05)
    expected = math.sqrt(2 * 0.02 * log_term / 2) + 7 * 6 * log_term / 3
    assert bernstein.high - bernstein.value == pytest.approx(expected)


def test_dr_difference_of_a_policy_with_itself_is_exactly_zero() -> None:
    rng = np.random.default_rng(3)
    r, p = rng.uniform(0, 1, 50), rng.uniform(0.2, 1, 50)
    pi, q, m = rng.uniform(0, 1, 50) * p, rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    found = estimators.doubly_robust_difference(r, p, pi, pi, q, m, m, reward_range=(0, 1), interval="normal")
    assert found.value == 0.0 and found.low == 0.0 and found.high == 0.0
