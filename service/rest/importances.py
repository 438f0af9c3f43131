"""Personalizer's feature importances, computed by Kairos's ablation (``kairos importance``).

A feature importance replays a decision point's logged (closed) decisions of a time range through its
current learning settings, with every feature and without each namespace and each feature of the top
namespaces (service.offline.importance), in the background with the lifecycle evaluations have
(service.rest.jobs). A feature's ``score`` is the drop in the policy's estimated value (doubly robust)
without it: above 0 the policy gains from it, near 0 it does not matter, below 0 it hurts. Kairos adds
the paired interval and verdict of each score, and the namespaces' own scores, under ``kairos``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from service.errors import invalid
from service.offline import spec as specs
from service.offline.dsjson import iso_timestamp
from service.offline.importance import Ablation, Importance, feature_importance
from service.plane import DecisionPlane
from service.rest import jobs
from service.rest.jobs import JobStore

# The features of this many namespaces (the most important first) are ablated one by one; each
# feature costs one more replay of the log beside the others.
FEATURE_NAMESPACES = 8


class ImportanceJobs:
    def __init__(self, plane: DecisionPlane, root: Path, executor: ThreadPoolExecutor | None = None) -> None:
        self.plane = plane
        self.store = JobStore(plane, root, "feature importance", executor or jobs.new_executor())

    def create(self, decision_point: str, importance_id: str, body: Any) -> None:
        self.store.check_new(decision_point, importance_id)
        record = self.plane.get_decision_point(decision_point)
        if not isinstance(body, dict):
            raise invalid("INVALID_FEATURE_IMPORTANCE", "the feature importance must be a JSON object")
        span = jobs.time_range(body, "INVALID_FEATURE_IMPORTANCE")
        policy = specs.format_spec(record.config.learner)
        stored = {
            "id": importance_id,
            "name": str(body.get("name") or importance_id),
            "startTime": iso_timestamp(span.since_ms),
            "endTime": iso_timestamp(span.until_ms),
            "creationTime": jobs.now_iso(),
        }
        bounds = (record.config.reward_min, record.config.reward_max)
        work = partial(_importance, policy=policy, bounds=bounds)
        self.store.start(decision_point, importance_id, stored, span, work, scores)

    def get(self, decision_point: str, importance_id: str) -> dict[str, Any]:
        return jobs.public(self.store.get(decision_point, importance_id))

    def list(self, decision_point: str) -> list[dict[str, Any]]:
        return [jobs.public(record) for record in self.store.list(decision_point)]

    def delete(self, decision_point: str, importance_id: str) -> None:
        self.store.delete(decision_point, importance_id)

    async def stop(self) -> None:
        await self.store.stop()


def _importance(logs: Path, policy: str, bounds: tuple[float, float]) -> Importance:
    return feature_importance(logs, policy, features=True, top=FEATURE_NAMESPACES, reward_range=bounds)


def _details(ablation: Ablation) -> dict[str, Any]:
    return {"verdict": ablation.verdict, "drop": ablation.drop.to_dict(), "valueWithout": ablation.estimate.to_dict()}


def scores(result: Importance) -> dict[str, Any]:
    """The record's fields of a finished feature importance: Personalizer's ``featureScores`` (largest
    first) and Kairos's details."""
    return {
        "featureScores": [
            {"namespace": a.namespace, "featureName": a.feature, "score": a.drop.value, "kairos": _details(a)}
            for a in result.features
        ],
        "kairos": {
            "policy": result.policy,
            "events": result.events,
            "valueWithAllFeatures": result.full.to_dict(),
            "namespaces": [{"namespace": a.namespace, "score": a.drop.value, **_details(a)} for a in result.namespaces],
        },
    }
