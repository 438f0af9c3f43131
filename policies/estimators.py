"""Off-policy value estimators with confidence intervals, for logged contextual-bandit data.

Notation, for ``n`` logged events ``i``: the logging policy showed action ``a_i`` with probability
``p_i`` and saw reward ``r_i``; the target policy would show ``a_i`` with probability ``pi_i``;
the importance weight is ``w_i = pi_i / p_i``. A reward model (supplied by the caller) predicts
``q_i`` = the expected reward of ``a_i`` and ``m_i`` = sum over actions of pi(a|x_i) * q(x_i, a), the
target policy's value under the model (the "direct method" term).

- IPS: ``V = (1/n) sum w_i r_i`` (Horvitz and Thompson 1952): unbiased when every action the target
  can take had p > 0 and the logged p are right; high variance when weights are large.
- SNIPS: ``V = sum w_i r_i / sum w_i`` (Swaminathan and Joachims 2015, "The Self-Normalized Estimator
  for Counterfactual Learning"): slightly biased, much lower variance, invariant to a shift of rewards.
- DR: ``V = (1/n) sum [m_i + w_i (r_i - q_i)]`` (Dudik, Langford and Li 2011, "Doubly Robust Policy
  Evaluation and Learning"): unbiased when the logged p are right, whatever the model; variance
  shrinks as the model gets better.

Confidence intervals (two-sided, level ``1 - delta``):

- IPS and DR: the empirical Bernstein bound of Maurer and Pontil 2009 ("Empirical Bernstein Bounds and
  Sample Variance Penalization", Theorem 4), applied to each side with ``delta / 2``: for i.i.d. terms
  ``X_i`` in an interval of known width ``R``, with sample variance ``S^2`` (unbiased),
  ``|mean - E X| <= sqrt(2 S^2 ln(4/delta) / n) + 7 R ln(4/delta) / (3 (n - 1))``.
  It holds for every n (no normal approximation) and is conservative. ``R`` comes from the reward range
  and the largest possible weight ``max_weight`` (1 / the smallest logging probability when not given).
  With ``interval="normal"`` instead: the normal approximation ``z S / sqrt(n)`` (central limit theorem),
  much tighter but only asymptotically valid; trust it when the effective sample size is large.
- SNIPS: a percentile bootstrap (Efron and Tibshirani 1993) over resampled events, seeded, so the same
  logs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[float] | FloatArray
IntervalKind = Literal["bernstein", "normal"]
INTERVAL_NAMES: dict[str, str] = {"bernstein": "empirical Bernstein", "normal": "normal approximation"}


class EstimatorError(ValueError):
    """Inputs an estimator refuses; the message says which and why."""


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate and its confidence interval."""

    estimator: str  # "ips", "snips" or "dr"
    value: float
    low: float
    high: float
    n: int
    confidence: float
    interval: str  # how [low, high] was computed
    effective_sample_size: float  # (sum w)^2 / sum w^2: how many events the estimate is really worth

    def to_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def _array(name: str, values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise EstimatorError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(array)):
        raise EstimatorError(f"{name} holds a value that is not finite (NaN or infinity)")
    return array


def _check_confidence(confidence: float) -> None:
    if not (math.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise EstimatorError(f"confidence is {confidence}; it must be within (0, 1), for example 0.95")


def _weights(logging_p: ArrayLike, target_p: ArrayLike, min_events: int = 2) -> FloatArray:
    p = _array("logging probabilities", logging_p)
    pi = _array("target probabilities", target_p)
    if p.shape != pi.shape:
        raise EstimatorError(f"{p.size} logging probabilities but {pi.size} target probabilities")
    if p.size < min_events:
        raise EstimatorError(f"{p.size} events; at least {min_events} are needed for an interval")
    if np.any(p <= 0.0) or np.any(p > 1.0):
        raise EstimatorError("every logging probability must be within (0, 1]")
    if np.any(pi < 0.0) or np.any(pi > 1.0):
        raise EstimatorError("every target probability must be within [0, 1]")
    weights: FloatArray = pi / p
    return weights


def _rewards(rewards: ArrayLike, n: int, reward_range: tuple[float, float], name: str = "rewards") -> FloatArray:
    r = _array(name, rewards)
    if r.size != n:
        raise EstimatorError(f"{r.size} {name} for {n} events")
    low, high = reward_range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise EstimatorError(f"reward range [{low}, {high}] must be finite with low < high")
    if np.any(r < low) or np.any(r > high):
        raise EstimatorError(f"every one of the {name} must lie within the reward range [{low:g}, {high:g}]")
    return r


def _max_weight(weights: FloatArray, logging_p: ArrayLike, max_weight: float | None) -> float:
    if max_weight is None:
        # pi <= 1, so no weight can exceed 1 / the smallest logging probability seen.
        return float(1.0 / np.min(np.asarray(logging_p, dtype=np.float64)))
    if not (math.isfinite(max_weight) and max_weight > 0):
        raise EstimatorError(f"max_weight is {max_weight}; it must be a positive number")
    if float(np.max(weights)) > max_weight * (1 + 1e-9):
        raise EstimatorError(f"an importance weight is {float(np.max(weights)):g}, above max_weight {max_weight:g}")
    return max_weight


def effective_sample_size(weights: FloatArray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is 0)."""
    squares = float(np.sum(weights * weights))
    return 0.0 if squares == 0.0 else float(np.sum(weights)) ** 2 / squares


def empirical_bernstein_radius(terms: FloatArray, width: float, confidence: float) -> float:
    """Half-width of the two-sided empirical Bernstein interval (Maurer and Pontil 2009, Theorem 4).

    ``terms`` are i.i.d. values in an interval of width ``width``; the bound holds with probability at
    least ``confidence``: ``sqrt(2 S^2 ln(4/delta) / n) + 7 width ln(4/delta) / (3 (n - 1))``.
    """
    n = terms.size
    if n < 2:
        raise EstimatorError("an empirical Bernstein interval needs at least 2 events")
    log_term = math.log(4.0 / (1.0 - confidence))
    variance = float(np.var(terms, ddof=1))
    return math.sqrt(2.0 * variance * log_term / n) + 7.0 * width * log_term / (3.0 * (n - 1))


def normal_radius(terms: FloatArray, confidence: float) -> float:
    """Half-width of the two-sided normal-approximation interval, ``z_(1-delta/2) S / sqrt(n)``.

    Asymptotic (central limit theorem): tight, but it can under-cover when a few large weights dominate
    (a small effective sample size).
    """
    if terms.size < 2:
        raise EstimatorError("a normal interval needs at least 2 events")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return z * float(np.std(terms, ddof=1)) / math.sqrt(terms.size)


def _radius(terms: FloatArray, width: float, confidence: float, interval: IntervalKind) -> float:
    if interval == "bernstein":
        return empirical_bernstein_radius(terms, width, confidence)
    if interval == "normal":
        return normal_radius(terms, confidence)
    raise EstimatorError(f"interval {interval!r} is unknown; choose bernstein or normal")


def ips(
    rewards: ArrayLike,
    logging_p: ArrayLike,
    target_p: ArrayLike,
    *,
    reward_range: tuple[float, float],
    max_weight: float | None = None,
    confidence: float = 0.95,
    interval: IntervalKind = "bernstein",
) -> Estimate:
    """Inverse propensity scoring: ``(1/n) sum (pi_i / p_i) r_i``, empirical Bernstein interval.

    Each term ``w r`` lies in ``[min(0, W low), max(0, W high)]`` for ``W = max_weight``.
    """
    _check_confidence(confidence)
    weights = _weights(logging_p, target_p)
    r = _rewards(rewards, weights.size, reward_range)
    bound = _max_weight(weights, logging_p, max_weight)
    terms = weights * r
    low, high = reward_range
    width = max(0.0, bound * high) - min(0.0, bound * low)
    value = float(np.mean(terms))
    radius = _radius(terms, width, confidence, interval)
    return Estimate(
        "ips",
        value,
        value - radius,
        value + radius,
        int(weights.size),
        confidence,
        INTERVAL_NAMES[interval],
        effective_sample_size(weights),
    )


def snips(
    rewards: ArrayLike,
    logging_p: ArrayLike,
    target_p: ArrayLike,
    *,
    reward_range: tuple[float, float],
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Self-normalised IPS: ``sum w_i r_i / sum w_i``, percentile bootstrap interval.

    When every weight is 0 (the target never takes a logged action) the logs say nothing about the
    target: the estimate is the middle of the reward range and the interval the whole range.
    """
    _check_confidence(confidence)
    if resamples < 100:
        raise EstimatorError(f"resamples is {resamples}; use at least 100 for a bootstrap interval")
    weights = _weights(logging_p, target_p)
    r = _rewards(rewards, weights.size, reward_range)
    low, high = reward_range
    total = float(np.sum(weights))
    if total == 0.0:
        return Estimate("snips", (low + high) / 2, low, high, int(weights.size), confidence, "bootstrap", 0.0)
    value = float(np.sum(weights * r)) / total
    rng = np.random.default_rng(seed)
    n = weights.size
    # Resample in chunks of counts per event (multinomial), so memory stays bounded for large logs.
    estimates: list[FloatArray] = []
    chunk = max(1, min(resamples, 4_000_000 // max(n, 1)))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)
        numerators = counts @ (weights * r)
        denominators = counts @ weights
        # A resample without any positive weight carries no information: count it at the range's middle.
        estimates.append(
            np.where(denominators > 0, numerators / np.where(denominators > 0, denominators, 1.0), (low + high) / 2)
        )
        done += size
    draws = np.concatenate(estimates)
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(draws, [tail, 1.0 - tail])
    # The percentile interval of a skewed statistic may miss the point estimate; widen it to include it.
    return Estimate(
        "snips",
        value,
        min(float(lower), value),
        max(float(upper), value),
        int(n),
        confidence,
        "bootstrap",
        effective_sample_size(weights),
    )


def doubly_robust(
    rewards: ArrayLike,
    logging_p: ArrayLike,
    target_p: ArrayLike,
    model_logged: ArrayLike,
    model_target: ArrayLike,
    *,
    reward_range: tuple[float, float],
    max_weight: float | None = None,
    confidence: float = 0.95,
    interval: IntervalKind = "bernstein",
) -> Estimate:
    """Doubly robust: ``(1/n) sum [m_i + w_i (r_i - q_i)]``, empirical Bernstein interval.

    ``model_logged`` is ``q_i``, the reward model's prediction for the logged action; ``model_target``
    is ``m_i``, the model's value of the target policy at context ``i``. Both must lie in the reward
    range (clip the model's output), so each term lies in ``[low - W (high - low), high + W (high - low)]``.
    """
    _check_confidence(confidence)
    weights = _weights(logging_p, target_p)
    r = _rewards(rewards, weights.size, reward_range)
    q = _rewards(model_logged, weights.size, reward_range, "model predictions of the logged actions")
    m = _rewards(model_target, weights.size, reward_range, "model values of the target policy")
    bound = _max_weight(weights, logging_p, max_weight)
    low, high = reward_range
    terms = m + weights * (r - q)
    width = (high - low) * (1.0 + 2.0 * bound)
    value = float(np.mean(terms))
    radius = _radius(terms, width, confidence, interval)
    return Estimate(
        "dr",
        value,
        value - radius,
        value + radius,
        int(weights.size),
        confidence,
        INTERVAL_NAMES[interval],
        effective_sample_size(weights),
    )


def doubly_robust_difference(
    rewards: ArrayLike,
    logging_p: ArrayLike,
    target_a: ArrayLike,
    target_b: ArrayLike,
    model_logged: ArrayLike,
    model_target_a: ArrayLike,
    model_target_b: ArrayLike,
    *,
    reward_range: tuple[float, float],
    max_weight: float | None = None,
    confidence: float = 0.95,
    interval: IntervalKind = "bernstein",
) -> Estimate:
    """How much more policy ``a`` is worth than policy ``b``, by doubly robust on the same logged events.

    The paired difference of the two DR terms, ``d_i = (m_a,i - m_b,i) + (w_a,i - w_b,i) (r_i - q_i)``, has
    mean ``DR(a) - DR(b)``. Its interval is the empirical Bernstein (or normal) interval of the ``d_i``,
    which lie in an interval of width ``2 (high - low) (1 + W)``: pairing cancels what both policies share,
    so it is far tighter than the difference of two separate intervals when the policies mostly agree
    (feature ablation). ``effective_sample_size`` is that of ``a``'s weights.
    """
    _check_confidence(confidence)
    weights_a = _weights(logging_p, target_a)
    weights_b = _weights(logging_p, target_b)
    r = _rewards(rewards, weights_a.size, reward_range)
    q = _rewards(model_logged, weights_a.size, reward_range, "model predictions of the logged actions")
    m_a = _rewards(model_target_a, weights_a.size, reward_range, "model values of policy a")
    m_b = _rewards(model_target_b, weights_a.size, reward_range, "model values of policy b")
    bound = max(_max_weight(weights_a, logging_p, max_weight), _max_weight(weights_b, logging_p, max_weight))
    low, high = reward_range
    terms = (m_a - m_b) + (weights_a - weights_b) * (r - q)
    width = 2.0 * (high - low) * (1.0 + bound)
    value = float(np.mean(terms))
    radius = _radius(terms, width, confidence, interval)
    return Estimate(
        "dr difference",
        value,
        value - radius,
        value + radius,
        int(weights_a.size),
        confidence,
        INTERVAL_NAMES[interval],
        effective_sample_size(weights_a),
    )
