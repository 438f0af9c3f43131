"""Apprentice mode, transport-free: serve the baseline, compare the model with it.

In apprentice mode the caller's baseline action ``b`` is shown first; the model's own distribution
``pi`` and predicted costs are kept beside the decision. When the event's reward ``r`` is known, these
are updated (see :func:`outcome`):

- whether the model's most likely action is the baseline (the match rate);
- the baseline's reward ``r`` (the baseline's mean reward is measured, not estimated);
- the model's value, two ways. Both take the baseline's choice as given (probability 1: Kairos does
  not know how the caller chose), so both see only the actions the baseline shows:

  - self-normalised (the primary figure): ``sum_t pi_t(b_t) r_t / sum_t pi_t(b_t)``, the baseline's
    rewards weighted by how likely the model was to show the same action. When the baseline's choice
    varies at random within a context (independently of the reward) this is the self-normalised IPS
    estimate of the model's value (Swaminathan and Joachims 2015) under the baseline's unknown but
    context-independent propensities; when the baseline is a fixed rule it measures only where the two
    agree, and says nothing about actions the rule never shows.
  - doubly robust with the learner's own predictions (Dudik, Langford and Li 2011):
    ``sum_a pi(a) q(a) + pi(b) (r - q(b))``, ``q`` the learner's predicted reward made at Rank, before it
    learned the event. It corrects only the baseline's share of ``pi``; the rest is the learner's
    prediction, optimistic for the action it likes best (the winner's curse), so it runs high when the
    baseline varies, and it is the more cautious of the two when the baseline is a fixed rule.
    Each term lies in ``[low - (high - low), high + (high - low)]``: a width of three reward ranges.

``python -m benchmarks.apprentice`` measures both against the truth in a simulation.
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
    model_weight: float  # pi(b): the weight of this reward in the self-normalised estimate
    model_term: float  # the doubly robust term of the model's value


def outcome(
    pmf: Sequence[float], scores: Sequence[float], baseline: int, reward: float, reward_range: tuple[float, float]
) -> Outcome:
    low, high = reward_range
    pi = normalise(pmf)
    predicted = [min(max(-score, low), high) for score in scores]
    direct = sum(p * q for p, q in zip(pi, predicted, strict=True))
    term = direct + pi[baseline] * (reward - predicted[baseline])
    return Outcome(model_order(pi, scores)[0] == baseline, reward, pi[baseline], term)


def term_width(reward_range: tuple[float, float]) -> float:
    """Width of the interval every doubly robust term lies in (importance weight at most 1)."""
    return 3.0 * (reward_range[1] - reward_range[0])


def should_promote(model: Interval, model_dr: Interval, baseline: Interval, min_events: int) -> bool:
    """Switch to online once enough events closed and the lower bounds of both estimates of the model lie
    above the baseline's interval. Each estimate runs high in a different situation (see the module
    docstring); in the simulation of ``benchmarks.apprentice`` comparing with the baseline's mean instead
    promoted a model no better than the baseline in a fifth of the runs where the baseline mostly
    followed a rule, this rule in none."""
    enough = min(model.count, model_dr.count, baseline.count) >= min_events
    return enough and min(model.low, model_dr.low) > baseline.high
