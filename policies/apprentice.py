"""Apprentice mode, transport-free: serve the baseline, compare the model with it.

In apprentice mode the caller's baseline action is shown first; the model's own distribution ``pi``
and predicted costs are kept beside the decision. When the event's reward ``r`` is known, three
figures are updated (see :func:`outcome`):

- whether the model's most likely action is the baseline (the match rate);
- the baseline's reward ``r`` (the baseline's mean reward is measured, not estimated);
- the doubly robust term of the model's value (Dudik, Langford and Li 2011) under the baseline's
  logging policy, which showed the baseline ``b`` with probability 1:
  ``sum_a pi(a) q(a) + pi(b) (r - q(b))``, with ``q(a)`` the learner's predicted reward of ``a``
  (minus its predicted cost, clipped to the reward range) made at Rank, before it learned the event.
  Its expectation is the model's value whenever the predictions are right for the actions the
  baseline did not show: the baseline's share of ``pi`` is measured, the rest is the learner's own
  prediction, which the baseline's choices never test. Each term lies in
  ``[low - (high - low), high + (high - low)]``: a width of three reward ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policies.intervals import Interval
from policies.ranking import Ranking, normalise


def model_order(pmf: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Candidates by the model's preference: most likely first, then lower predicted cost, then input order."""
    return sorted(range(len(pmf)), key=lambda i: (-pmf[i], scores[i], i))


def serve_baseline(pmf: Sequence[float], scores: Sequence[float], baseline: int) -> Ranking:
    """The baseline first with probability 1 (how it was chosen), the others in the model's order."""
    rest = [i for i in model_order(pmf, scores) if i != baseline]
    return Ranking(order=(baseline, *rest), probabilities=tuple(1.0 if i == baseline else 0.0 for i in range(len(pmf))))


@dataclass(frozen=True)
class Outcome:
    matched: bool  # the model's most likely action was the baseline
    baseline_reward: float
    model_term: float  # the doubly robust term of the model's value


def outcome(
    pmf: Sequence[float], scores: Sequence[float], baseline: int, reward: float, reward_range: tuple[float, float]
) -> Outcome:
    low, high = reward_range
    pi = normalise(pmf)
    predicted = [min(max(-score, low), high) for score in scores]
    direct = sum(p * q for p, q in zip(pi, predicted, strict=True))
    term = direct + pi[baseline] * (reward - predicted[baseline])
    return Outcome(model_order(pi, scores)[0] == baseline, reward, term)


def term_width(reward_range: tuple[float, float]) -> float:
    """Width of the interval every doubly robust term lies in (importance weight at most 1)."""
    return 3.0 * (reward_range[1] - reward_range[0])


def should_promote(model: Interval, baseline: Interval, min_events: int) -> bool:
    """Switch to online once enough events closed and the model's lower bound beats the baseline's mean."""
    return model.count >= min_events and baseline.count >= min_events and model.low > baseline.value
