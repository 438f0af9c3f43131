"""Search learner configurations on logged traffic and recommend one only when it is clearly better.

The rule (Azure Personalizer's): a candidate is recommended only when the lower bound of its
confidence interval beats the current configuration's point estimate. The more candidates are tried,
the likelier one of them looks good by chance, so the intervals are Bonferroni-corrected: with ``k``
candidates, each interval is computed at level ``1 - (1 - confidence) / k``, so that all ``k`` hold
together with probability at least ``confidence``. Among the candidates that pass, the one with the
highest lower bound is recommended (the safest improvement, not the luckiest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from policies.estimators import Estimate, IntervalKind
from service.offline.evaluate import Candidate, Evaluation, PolicyResult, evaluate
from service.offline.spec import SEARCH_SPACE, parse_spec

EstimatorName = Literal["dr", "snips", "ips"]


@dataclass
class TuneResult:
    evaluation: Evaluation
    current: str
    estimator: EstimatorName
    confidence: float  # the family-wide level asked for
    corrected_confidence: float  # the level of each interval after the Bonferroni correction
    recommended: PolicyResult | None
    explanation: str
    applied: str | None = None  # what --apply did, if it was asked to

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "estimator": self.estimator,
            "confidence": self.confidence,
            "corrected_confidence": self.corrected_confidence,
            "candidates": len(self.evaluation.results) - 3,  # not the current one, nor the two references
            "recommended": self.recommended.label if self.recommended else None,
            "explanation": self.explanation,
            "applied": self.applied,
            "evaluation": self.evaluation.to_dict(),
        }


def estimate_of(result: PolicyResult, estimator: EstimatorName) -> Estimate:
    found: Estimate = getattr(result, estimator)
    return found


def tune(
    path: Path,
    *,
    current: str,
    candidates: Sequence[str] = SEARCH_SPACE,
    estimator: EstimatorName = "dr",
    confidence: float = 0.95,
    reward_range: tuple[float, float] | None = None,
    seed: int = 1,
    progress: Callable[[int], None] | None = None,
    interval: IntervalKind = "bernstein",
) -> TuneResult:
    """Evaluate ``current`` and every candidate on the logs at ``path``; recommend by the rule above."""
    others = [spec for spec in dict.fromkeys(candidates) if spec != current]
    if not others:
        raise ValueError("give at least one candidate configuration other than the current one")
    corrected = 1.0 - (1.0 - confidence) / len(others)
    policies = [Candidate(current, parse_spec(current))] + [Candidate(spec, parse_spec(spec)) for spec in others]
    evaluation = evaluate(path, policies, reward_range=reward_range, confidence=corrected, seed=seed, progress=progress)
    by_label = {result.label: result for result in evaluation.results}
    baseline = estimate_of(by_label[current], estimator).value
    passing = [by_label[spec] for spec in others if estimate_of(by_label[spec], estimator).low > baseline]
    name = estimator.upper()
    if not passing:
        best = max((by_label[spec] for spec in others), key=lambda r: estimate_of(r, estimator).low)
        explanation = (
            f"keep {current!r}: no candidate's {name} lower bound ({corrected:.2%} each, Bonferroni over "
            f"{len(others)}) beats its estimate {baseline:.4f}; the closest, {best.label!r}, has "
            f"{estimate_of(best, estimator).low:.4f}"
        )
        return TuneResult(evaluation, current, estimator, confidence, corrected, None, explanation)
    chosen = max(passing, key=lambda r: estimate_of(r, estimator).low)
    found = estimate_of(chosen, estimator)
    explanation = (
        f"recommend {chosen.label!r}: its {name} lower bound {found.low:.4f} ({corrected:.2%} interval, Bonferroni "
        f"over {len(others)} candidates) beats the current {current!r} estimate {baseline:.4f} "
        f"(estimate {found.value:.4f}; {len(passing)} of {len(others)} candidates passed)"
    )
    return TuneResult(evaluation, current, estimator, confidence, corrected, chosen, explanation)


def record(result: TuneResult, directory: Path) -> Path:
    """Keep every run: one JSON file per run, named by its start time."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"tune-{stamp}.json"
    suffix = 1
    while path.exists():
        suffix += 1
        path = directory / f"tune-{stamp}-{suffix}.json"
    path.write_text(json.dumps({"recorded_at": stamp, **result.to_dict()}, indent=2) + "\n")
    return path
