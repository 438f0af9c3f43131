"""Personalizer's offline evaluations, run by Kairos's counterfactual evaluator.

An evaluation replays a decision point's logged (closed) decisions of a time range through the current
learning settings and the ones the request names (``policies``; with ``enablePolicyOptimization`` also
Kairos's search space), in the background (service.rest.jobs: the lifecycle it shares with feature
importances). Its record keeps the learner options behind each result, for applyFromEvaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from policies.learner_options import LearnerOptions
from service.domain import DecisionPointRecord
from service.errors import invalid
from service.offline import evaluate as evaluator
from service.offline import spec as specs
from service.offline.dsjson import iso_timestamp
from service.plane import DecisionPlane
from service.rest import jobs
from service.rest.jobs import PRIVATE, SUCCEEDED, JobStore

MAX_POLICIES = 20
# Where a result's policy comes from; "Logged" (what was served) is Kairos's addition to Personalizer's list.
ONLINE, RANDOM, CUSTOM, SEARCH, LOGGED = "Online", "Random", "Custom", "OfflineExperimentation", "Logged"


class EvaluationJobs:
    def __init__(
        self,
        plane: DecisionPlane,
        root: Path,
        parse_policy: Callable[[Any, DecisionPointRecord], LearnerOptions],
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.plane, self.parse_policy = plane, parse_policy
        self.store = JobStore(plane, root, "evaluation", executor or jobs.new_executor())

    def create(self, decision_point: str, evaluation_id: str, body: Any) -> None:
        self.store.check_new(decision_point, evaluation_id)
        record = self.plane.get_decision_point(decision_point)
        if not isinstance(body, dict):
            raise invalid("INVALID_EVALUATION", "the evaluation must be a JSON object")
        span = jobs.time_range(body, "INVALID_EVALUATION")
        candidates = self._candidates(record, body)
        stored = {
            "id": evaluation_id,
            "name": str(body.get("name") or evaluation_id),
            "startTime": iso_timestamp(span.since_ms),
            "endTime": iso_timestamp(span.until_ms),
            "creationTime": jobs.now_iso(),
            "evaluationType": "Manual",
            PRIVATE: {"options": {c.label: c.options.to_dict() for c, _ in candidates if c.options}},
        }
        bounds = (record.config.reward_min, record.config.reward_max)
        sources = {c.label: source for c, source in candidates}
        work = partial(_evaluate, candidates=[c for c, _ in candidates], bounds=bounds)
        finish = partial(_content, sources=sources, span=span)
        self.store.start(decision_point, evaluation_id, stored, span, work, finish)

    def _candidates(self, record: DecisionPointRecord, body: dict[str, Any]) -> list[tuple[evaluator.Candidate, str]]:
        current = specs.format_spec(record.config.learner)
        found = [(evaluator.Candidate(current, record.config.learner), ONLINE)]
        policies = body.get("policies") or []
        if not isinstance(policies, list) or len(policies) > MAX_POLICIES:
            raise invalid("INVALID_EVALUATION", f"policies must be a list of at most {MAX_POLICIES} objects")
        for number, policy in enumerate(policies):
            if not isinstance(policy, dict):
                raise invalid("INVALID_EVALUATION", f"policies[{number}] must be an object with name and arguments")
            name = str(policy.get("name") or f"policy-{number + 1}")
            if any(c.label == name for c, _ in found):
                raise invalid("INVALID_EVALUATION", f"policies[{number}]: the name {name!r} is used twice")
            found.append((evaluator.Candidate(name, self.parse_policy(policy.get("arguments"), record)), CUSTOM))
        if body.get("enablePolicyOptimization"):
            for spec in specs.SEARCH_SPACE:
                if all(c.label != spec for c, _ in found):
                    found.append((evaluator.Candidate(spec, specs.parse_spec(spec)), SEARCH))
        return found

    def get(self, decision_point: str, evaluation_id: str) -> dict[str, Any]:
        return self.store.get(decision_point, evaluation_id)

    def public(self, stored: dict[str, Any]) -> dict[str, Any]:
        return jobs.public(stored)

    def list(self, decision_point: str) -> list[dict[str, Any]]:
        return self.store.list(decision_point)

    def delete(self, decision_point: str, evaluation_id: str) -> None:
        self.store.delete(decision_point, evaluation_id)

    def options_of(self, decision_point: str, evaluation_id: str, policy_name: str) -> LearnerOptions:
        """The learner options behind ``policy_name``'s result in a finished evaluation."""
        stored = self.get(decision_point, evaluation_id)
        if stored["status"] != SUCCEEDED:
            raise invalid("EVALUATION_NOT_SUCCEEDED", f"evaluation {evaluation_id!r} is {stored['status']}")
        options = stored[PRIVATE]["options"].get(policy_name)
        if options is None:
            names = ", ".join(sorted(stored[PRIVATE]["options"]))
            raise invalid(
                "POLICY_NOT_IN_EVALUATION", f"evaluation {evaluation_id!r} has no policy {policy_name!r}: {names}"
            )
        return LearnerOptions.from_dict(options)

    async def stop(self) -> None:
        await self.store.stop()


def _evaluate(logs: Path, candidates: list[evaluator.Candidate], bounds: tuple[float, float]) -> evaluator.Evaluation:
    return evaluator.evaluate(logs, candidates, reward_range=bounds)


def _content(results: evaluator.Evaluation, sources: dict[str, str], span: jobs.TimeRange) -> dict[str, Any]:
    """The record's fields of a finished evaluation: its results and the best learnable policy."""
    values: list[dict[str, Any]] = []
    for result in results.results:
        source = {evaluator.LOGGED: LOGGED, evaluator.UNIFORM: RANDOM}.get(result.label) or sources[result.label]
        estimate = result.snips
        values.append(
            {
                "name": result.label,
                "arguments": " ".join(result.vw_args),
                "policySource": source,
                "summary": {"expectedReward": estimate.value, "confidenceInterval": [estimate.low, estimate.high]},
                "kairos": {"ips": result.ips.to_dict(), "snips": result.snips.to_dict(), "dr": result.dr.to_dict()},
            }
        )
    learnable = [v for v in values if v["policySource"] in (ONLINE, CUSTOM, SEARCH)]
    best = max(learnable, key=lambda v: v["summary"]["confidenceInterval"][0]) if learnable else None
    content = {
        "startTime": iso_timestamp(span.since_ms),
        "endTime": iso_timestamp(span.until_ms),
        "events": results.events,
        "value": values,
    }
    return {"content": content, "optimalPolicy": best["name"] if best else ""}
