"""Running means kept as moments (count, sum, sum of squares) and their confidence intervals.

The service keeps live statistics (apprentice mode, holdout lift) as three numbers per series, updated
in the same LMDB transaction as the event they count, so they survive restarts and need no event
scan. Every interval here is two-sided at level ``confidence`` and clipped to the range the true
value must lie in (the intersection of a valid interval with the parameter's range is still valid).

- :func:`bernstein_mean`: the empirical Bernstein bound of Maurer and Pontil 2009 (Theorem 4), the same
  bound as :func:`policies.estimators.empirical_bernstein_radius`, from moments: valid for any number of
  i.i.d. terms in an interval of known width, conservative.
- :func:`normal_mean`: ``z S / sqrt(n)``, the central-limit approximation.
- :func:`wilson`: the Wilson score interval of a proportion (Wilson 1927), good even near 0 and 1.
- :func:`welch_difference`: difference of two independent means, ``z sqrt(S1^2/n1 + S2^2/n2)`` (Welch's
  unequal-variance normal approximation).
- :func:`ratio_mean`: a weighted mean ``R = sum w r / sum w`` (self-normalised importance weighting) with
  the delta-method (sandwich) variance ``sum w^2 (r - R)^2 / (sum w)^2``, normal approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

BERNSTEIN = "empirical Bernstein"
NORMAL = "normal approximation"
WILSON = "Wilson score"
WELCH = "Welch normal approximation"
DELTA = "delta-method normal approximation"


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of a series."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, x: float) -> Moments:
        return Moments(self.n + 1, self.total + x, self.squares + x * x)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Unbiased sample variance (0 below two values; never negative after rounding)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.n * self.mean * self.mean) / (self.n - 1))

    def to_list(self) -> list[float]:
        return [self.n, self.total, self.squares]

    @classmethod
    def from_list(cls, data: list[float] | None) -> Moments:
        return cls() if not data else cls(int(data[0]), float(data[1]), float(data[2]))


@dataclass(frozen=True)
class WeightedMoments:
    """What a weighted mean and its delta-method variance need: n, sum w, sum w^2, sum w r, sum (w r)^2,
    sum w^2 r."""

    n: int = 0
    w: float = 0.0
    ww: float = 0.0
    wr: float = 0.0
    wrwr: float = 0.0
    wwr: float = 0.0

    def add(self, weight: float, x: float) -> WeightedMoments:
        return WeightedMoments(
            self.n + 1,
            self.w + weight,
            self.ww + weight * weight,
            self.wr + weight * x,
            self.wrwr + (weight * x) ** 2,
            self.wwr + weight * weight * x,
        )

    def to_list(self) -> list[float]:
        return [self.n, self.w, self.ww, self.wr, self.wrwr, self.wwr]

    @classmethod
    def from_list(cls, data: list[float] | None) -> WeightedMoments:
        return cls() if not data else cls(int(data[0]), *(float(v) for v in data[1:6]))


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    count: int
    method: str


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _clip(value: float, low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float, float]:
    lo, hi = bounds
    return min(max(value, lo), hi), max(low, lo), min(high, hi)


def bernstein_mean(moments: Moments, width: float, bounds: tuple[float, float], confidence: float = 0.95) -> Interval:
    """Mean of terms that lie in an interval of ``width``; the true mean lies in ``bounds``.

    ``sqrt(2 S^2 ln(4/delta) / n) + 7 width ln(4/delta) / (3 (n - 1))``; below two terms the interval
    is all of ``bounds``.
    """
    if moments.n < 2:
        return Interval(moments.mean if moments.n else 0.0, bounds[0], bounds[1], moments.n, BERNSTEIN)
    log_term = math.log(4.0 / (1.0 - confidence))
    radius = math.sqrt(2.0 * moments.variance * log_term / moments.n) + 7.0 * width * log_term / (3.0 * (moments.n - 1))
    value, low, high = _clip(moments.mean, moments.mean - radius, moments.mean + radius, bounds)
    return Interval(value, low, high, moments.n, BERNSTEIN)


def normal_mean(moments: Moments, bounds: tuple[float, float], confidence: float = 0.95) -> Interval:
    if moments.n < 2:
        return Interval(moments.mean, bounds[0], bounds[1], moments.n, NORMAL)
    radius = _z(confidence) * math.sqrt(moments.variance / moments.n)
    value, low, high = _clip(moments.mean, moments.mean - radius, moments.mean + radius, bounds)
    return Interval(value, low, high, moments.n, NORMAL)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Proportion ``successes / n`` with the Wilson score interval; [0, 1] when n is 0."""
    if n <= 0:
        return Interval(0.0, 0.0, 1.0, 0, WILSON)
    z = _z(confidence)
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    radius = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(share, max(0.0, centre - radius), min(1.0, centre + radius), n, WILSON)


def welch_difference(a: Moments, b: Moments, bounds: tuple[float, float], confidence: float = 0.95) -> Interval:
    """``mean(a) - mean(b)`` of two independent groups; below two values in either, all of ``bounds``."""
    difference = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Interval(difference if a.n and b.n else 0.0, bounds[0], bounds[1], a.n + b.n, WELCH)
    radius = _z(confidence) * math.sqrt(a.variance / a.n + b.variance / b.n)
    value, low, high = _clip(difference, difference - radius, difference + radius, bounds)
    return Interval(value, low, high, a.n + b.n, WELCH)


def ratio_mean(moments: WeightedMoments, bounds: tuple[float, float], confidence: float = 0.95) -> Interval:
    """``sum w x / sum w`` with the delta-method interval; all of ``bounds`` below two events or without weight."""
    if moments.n < 2 or moments.w <= 0.0:
        value = moments.wr / moments.w if moments.w > 0.0 else 0.0
        return Interval(value, bounds[0], bounds[1], moments.n, DELTA)
    ratio = moments.wr / moments.w
    residuals = max(0.0, moments.wrwr - 2.0 * ratio * moments.wwr + ratio * ratio * moments.ww)
    radius = _z(confidence) * math.sqrt(residuals * moments.n / (moments.n - 1)) / moments.w
    value, low, high = _clip(ratio, ratio - radius, ratio + radius, bounds)
    return Interval(value, low, high, moments.n, DELTA)
