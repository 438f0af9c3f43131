"""Running moments and their intervals, against direct computation and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies.estimators import empirical_bernstein_radius, normal_radius
from policies.intervals import (
    Moments,
    WeightedMoments,
    bernstein_mean,
    normal_mean,
    ratio_mean,
    welch_difference,
    wilson,
)


def moments_of(values: list[float]) -> Moments:
    found = Moments()
    for v in values:
        found = found.add(v)
    return found


def test_moments_match_numpy_and_round_trip() -> None:
    values = [0.0, 1.0, 1.0, 0.5, -0.25, 1.0]
    found = moments_of(values)
    assert found.n == 6
    assert found.mean == pytest.approx(np.mean(values))
    assert found.variance == pytest.approx(np.var(values, ddof=1))
    assert Moments.from_list(found.to_list()) == found
    assert Moments.from_list(None) == Moments()


def test_bernstein_mean_equals_the_estimators_bound() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    interval = bernstein_mean(moments_of(values), width=1.0, bounds=(-10.0, 10.0))
    radius = empirical_bernstein_radius(np.array(values), 1.0, 0.95)
    assert interval.value == pytest.approx(0.7)
    assert interval.low == pytest.approx(0.7 - radius)
    assert interval.high == pytest.approx(0.7 + radius)
    assert interval.count == 10


def test_bernstein_mean_is_clipped_to_the_bounds_and_whole_below_two() -> None:
    values = [1.0] * 200  # no variance: the radius is the range term alone, 7 * 2 * ln(80) / (3 * 199)
    interval = bernstein_mean(moments_of(values), width=2.0, bounds=(-1.0, 1.0))
    assert interval.low == pytest.approx(1.0 - 7 * 2 * math.log(80) / 597)
    assert interval.high == 1.0
    assert bernstein_mean(moments_of([1.0] * 5), width=2.0, bounds=(-1.0, 1.0)).low == -1.0
    assert bernstein_mean(Moments(), 2.0, (-1.0, 1.0)).low == -1.0
    single = bernstein_mean(moments_of([0.5]), 2.0, (-1.0, 1.0))
    assert (single.value, single.low, single.high) == (0.5, -1.0, 1.0)


def test_normal_mean_equals_the_estimators_radius() -> None:
    values = [0.2, 0.4, 0.9, 0.1, 0.5]
    interval = normal_mean(moments_of(values), (-1.0, 1.0))
    assert interval.high - interval.value == pytest.approx(normal_radius(np.array(values), 0.95))


def test_wilson_hand_computed() -> None:
    # 8 of 10 at 95%: centre (0.8 + 1.96^2/20) / (1 + 1.96^2/10), the textbook [0.490, 0.943].
    interval = wilson(8, 10)
    assert interval.value == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0).low == 0.0 and wilson(0, 0).high == 1.0
    assert wilson(10, 10).high == 1.0 and wilson(10, 10).low > 0.69


def test_welch_difference_hand_computed() -> None:
    a, b = moments_of([1.0, 0.0, 1.0, 1.0]), moments_of([0.0, 0.0, 1.0, 0.0])
    interval = welch_difference(a, b, (-1.0, 1.0))
    # means 0.75 and 0.25, variances 0.25 each: radius 1.96 * sqrt(0.25/4 + 0.25/4) = 0.693
    assert interval.value == pytest.approx(0.5)
    assert interval.low == pytest.approx(0.5 - 1.959964 * math.sqrt(0.125), abs=1e-5)
    assert interval.high == 1.0  # 1.19, clipped to the largest possible difference
    assert interval.count == 8
    assert welch_difference(a, Moments(), (-1.0, 1.0)).low == -1.0


def test_ratio_mean_hand_computed() -> None:
    # weights 0.5, 1, 0.5 on rewards 1, 0, 1: R = 1 / 2; residuals w (r - R) = 0.25, -0.5, 0.25.
    found = WeightedMoments().add(0.5, 1.0).add(1.0, 0.0).add(0.5, 1.0)
    interval = ratio_mean(found, (-5.0, 5.0))
    radius = 1.959964 * math.sqrt((0.0625 + 0.25 + 0.0625) * 3 / 2) / 2.0
    assert interval.value == pytest.approx(0.5)
    assert interval.low == pytest.approx(0.5 - radius, abs=1e-6)
    assert interval.high == pytest.approx(0.5 + radius, abs=1e-6)
    assert ratio_mean(found, (0.0, 1.0)).low == 0.0  # clipped to what a mean reward can be
    assert WeightedMoments.from_list(found.to_list()) == found
    unweighted = ratio_mean(WeightedMoments().add(0.0, 1.0).add(0.0, 0.0), (0.0, 1.0))
    assert (unweighted.low, unweighted.high) == (0.0, 1.0)


def test_ratio_mean_with_equal_weights_is_the_plain_mean() -> None:
    values = [0.2, 0.4, 0.9, 0.1, 0.5]
    weighted = WeightedMoments()
    for v in values:
        weighted = weighted.add(1.0, v)
    plain = normal_mean(moments_of(values), (-1.0, 1.0))
    interval = ratio_mean(weighted, (-1.0, 1.0))
    assert interval.value == pytest.approx(plain.value)
    # The delta method's n-1 correction makes it the normal interval exactly.
    assert interval.high - interval.value == pytest.approx(plain.high - plain.value)
