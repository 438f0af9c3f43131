"""Progressive validation of a shadow policy on the serving policy's own traffic, in constant memory.

Each learned event ``i`` was shown by the serving (champion) policy: action ``a_i`` with the logged
probability ``p_i``, reward ``r_i``. Before the shadow (challenger) learns the event it is asked for its
distribution over the event's actions; ``pi_i`` is its probability of ``a_i`` and ``w_i = pi_i / p_i``.
The estimates (the notation of :mod:`policies.estimators`):

- champion, on-policy: ``(1/n) sum r_i``, empirical Bernstein interval over terms in the reward range;
- challenger, IPS: ``(1/n) sum w_i r_i``, empirical Bernstein interval (Maurer and Pontil 2009,
  Theorem 4) with the terms' range from the largest possible weight ``1 / min p_i``;
- challenger, SNIPS: ``sum w_i r_i / sum w_i``, normal approximation by the delta method:
  ``Var ~= sum w_i^2 (r_i - V)^2 / (sum w_i)^2`` (Swaminathan and Joachims 2015, section 4; a bootstrap
  needs every event kept, which a running service does not), clipped to the reward range.

The sums are kept, not the events, so an accumulator is a few numbers that the service persists with
the challenger's checkpoint. Means and variances use Welford's update, which does not lose precision
over millions of events as raw sums of squares would.

Progressive validation (Blum, Kalai and Langford 1999): the challenger is scored on each event before
it learns it, so every term is an honest out-of-sample estimate of the policy it was at that moment,
and the mean estimates the value of the challenger as it would have learned online. The terms are then
a martingale difference sequence rather than i.i.d.; the empirical Bernstein radius is used as for
i.i.d. terms (its martingale form, Freedman's inequality, has the same shape).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from policies.estimators import Estimate

BERNSTEIN = "empirical Bernstein"
NORMAL = "normal approximation (delta method)"


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations of a stream (Welford 1962)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def variance(self) -> float:
        """The unbiased sample variance (0 below 2 values)."""
        return max(self.m2, 0.0) / (self.n - 1) if self.n > 1 else 0.0


def bernstein_radius(n: int, variance: float, width: float, confidence: float) -> float:
    """Half-width of the two-sided empirical Bernstein interval, from the sample variance of ``n`` terms
    in an interval of width ``width`` (the formula of :func:`policies.estimators.empirical_bernstein_radius`)."""
    log_term = math.log(4.0 / (1.0 - confidence))
    return math.sqrt(2.0 * variance * log_term / n) + 7.0 * width * log_term / (3.0 * (n - 1))


@dataclass(frozen=True)
class ShadowReport:
    """The champion's on-policy value and the challenger's estimated value over the same events."""

    events: int
    champion: Estimate
    ips: Estimate
    snips: Estimate


@dataclass
class ShadowValue:
    """Running sums of one challenger's progressive validation (see the module docstring)."""

    rewards: RunningMoments
    ips_terms: RunningMoments
    sum_w: float = 0.0
    sum_w2: float = 0.0
    sum_wr: float = 0.0
    sum_w2r: float = 0.0
    sum_w2r2: float = 0.0
    max_weight: float = 0.0  # 1 / the smallest logged probability seen: no weight can exceed it
    reward_low: float = math.inf  # rewards seen (business values can take rewards past the range)
    reward_high: float = -math.inf

    @classmethod
    def empty(cls) -> ShadowValue:
        return cls(RunningMoments(), RunningMoments())

    @property
    def events(self) -> int:
        return self.rewards.n

    def add(self, reward: float, logged_p: float, challenger_p: float) -> None:
        """One event, scored before the challenger learns it. ``logged_p`` in (0, 1], ``challenger_p`` in [0, 1]."""
        if not (0.0 < logged_p <= 1.0 and 0.0 <= challenger_p <= 1.0 and math.isfinite(reward)):
            raise ValueError(f"cannot score reward {reward} with probabilities {logged_p} and {challenger_p}")
        w = challenger_p / logged_p
        self.rewards.add(reward)
        self.ips_terms.add(w * reward)
        self.sum_w += w
        self.sum_w2 += w * w
        self.sum_wr += w * reward
        self.sum_w2r += w * w * reward
        self.sum_w2r2 += w * w * reward * reward
        self.max_weight = max(self.max_weight, 1.0 / logged_p)
        self.reward_low = min(self.reward_low, reward)
        self.reward_high = max(self.reward_high, reward)

    def report(self, reward_range: tuple[float, float], confidence: float = 0.95) -> ShadowReport:
        """Estimates with two-sided intervals at ``confidence``. Below two events an interval is the
        widest the reward range (and the weights) allow."""
        low, high = min(reward_range[0], self.reward_low), max(reward_range[1], self.reward_high)
        n = self.events
        ess = self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

        def estimate(name: str, value: float, radius: float, floor: float, ceiling: float, kind: str) -> Estimate:
            return Estimate(
                name, value, max(value - radius, floor), min(value + radius, ceiling), n, confidence, kind, ess
            )

        if n < 2:
            # Nothing to measure a spread from: the interval is everything that is possible.
            champion = self.rewards.mean if n else (low + high) / 2
            weight = max(self.max_weight, 1.0)
            return ShadowReport(
                n,
                estimate("on_policy", champion, math.inf, low, high, BERNSTEIN),
                estimate(
                    "ips", self.ips_terms.mean, math.inf, min(0.0, weight * low), max(0.0, weight * high), BERNSTEIN
                ),
                estimate("snips", self._snips(low, high), math.inf, low, high, NORMAL),
            )
        champion_radius = bernstein_radius(n, self.rewards.variance, high - low, confidence)
        ips_width = max(0.0, self.max_weight * high) - min(0.0, self.max_weight * low)
        ips_radius = bernstein_radius(n, self.ips_terms.variance, ips_width, confidence)
        snips, snips_radius = self._snips(low, high), self._snips_radius(confidence, low, high)
        return ShadowReport(
            n,
            estimate("on_policy", self.rewards.mean, champion_radius, low, high, BERNSTEIN),
            estimate("ips", self.ips_terms.mean, ips_radius, -math.inf, math.inf, BERNSTEIN),
            estimate("snips", snips, snips_radius, low, high, NORMAL),
        )

    def _snips(self, low: float, high: float) -> float:
        # The challenger never took a logged action: the logs say nothing about it (as estimators.snips).
        return self.sum_wr / self.sum_w if self.sum_w > 0 else (low + high) / 2

    def _snips_radius(self, confidence: float, low: float, high: float) -> float:
        if self.sum_w <= 0:
            return math.inf
        value = self._snips(low, high)
        spread = self.sum_w2r2 - 2.0 * value * self.sum_w2r + value * value * self.sum_w2
        z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
        return z * math.sqrt(max(spread, 0.0)) / self.sum_w

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # JSON has no infinities: an accumulator without events has no reward bounds yet.
        for key in ("reward_low", "reward_high"):
            data[key] = None if math.isinf(data[key]) else data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShadowValue:
        fields = dict(data)
        fields["rewards"] = RunningMoments(**fields["rewards"])
        fields["ips_terms"] = RunningMoments(**fields["ips_terms"])
        if fields.get("reward_low") is None:
            fields["reward_low"] = math.inf
        if fields.get("reward_high") is None:
            fields["reward_high"] = -math.inf
        return cls(**fields)
