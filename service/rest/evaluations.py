"""Personalizer's offline evaluations, run by Kairos's counterfactual evaluator.

An evaluation replays a decision point's logged (closed) decisions of a time range through the current
learning settings and the ones the request names (``policies``; with ``enablePolicyOptimization`` also
Kairos's search space), on a worker thread so serving never waits for it. Its record (status, results,
and the learner options behind each result, for applyFromEvaluation) is a JSON file in the data
directory: results survive restarts; an evaluation a restart interrupted is marked Failed.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from policies.learner_options import LearnerOptions
from service.domain import DecisionPointRecord
from service.errors import Code, KairosError, invalid, not_found
from service.grpc.errors import without_paths
from service.offline import evaluate as evaluator
from service.offline import spec as specs
from service.offline.dsjson import iso_timestamp, parse_timestamp
from service.offline.export import ExportProgress
from service.plane import DecisionPlane

log = structlog.get_logger("kairos.evaluations")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_POLICIES = 20
# Where a result's policy comes from; "Logged" (what was served) is Kairos's addition to Personalizer's list.
ONLINE, RANDOM, CUSTOM, SEARCH, LOGGED = "Online", "Random", "Custom", "OfflineExperimentation", "Logged"
RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
PRIVATE = "_kairos"  # the record's own part, never sent


def _now_iso() -> str:
    return iso_timestamp(int(time.time() * 1000))


class EvaluationJobs:
    def __init__(
        self,
        plane: DecisionPlane,
        root: Path,
        parse_policy: Callable[[Any, DecisionPointRecord], LearnerOptions],
    ) -> None:
        self.plane, self.root, self.parse_policy = plane, root, parse_policy
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kairos-evaluation")
        self._tasks: set[asyncio.Task[None]] = set()
        self._interrupted()

    def _path(self, decision_point: str, evaluation_id: str) -> Path:
        return self.root / decision_point / f"{evaluation_id}.json"

    def _interrupted(self) -> None:
        """Records left Running by a stopped process will never finish: mark them Failed."""
        for path in self.root.glob("*/*.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                log.warning("evaluation_record_unreadable", file=path.name, error=str(err))
                continue
            if record.get("status") == RUNNING:
                record["status"] = FAILED
                record["description"] = "interrupted by a restart of Kairos; create it again"
                _write(path, record)

    def create(self, decision_point: str, evaluation_id: str, body: Any) -> None:
        record = self.plane.get_decision_point(decision_point)
        if not ID_PATTERN.fullmatch(evaluation_id):
            raise invalid("INVALID_EVALUATION_ID", f"evaluation id must match {ID_PATTERN.pattern}")
        if not isinstance(body, dict):
            raise invalid("INVALID_EVALUATION", "the evaluation must be a JSON object")
        path = self._path(decision_point, evaluation_id)
        if path.exists():
            raise KairosError(
                Code.ALREADY_EXISTS, "EVALUATION_EXISTS", f"evaluation {evaluation_id!r} exists; delete it first"
            )
        try:
            since = parse_timestamp(str(body.get("startTime") or "1970-01-01"))
            until = parse_timestamp(str(body["endTime"])) if body.get("endTime") else int(time.time() * 1000) + 1
        except ValueError as err:
            raise invalid("INVALID_EVALUATION", f"startTime/endTime: {err}") from None
        if until <= since:
            raise invalid("INVALID_EVALUATION", "endTime must be later than startTime")
        candidates = self._candidates(record, body)
        stored = {
            "id": evaluation_id,
            "name": str(body.get("name") or evaluation_id),
            "startTime": iso_timestamp(since),
            "endTime": iso_timestamp(until),
            "creationTime": _now_iso(),
            "evaluationType": "Manual",
            "status": RUNNING,
            PRIVATE: {"options": {c.label: c.options.to_dict() for c, _ in candidates if c.options}},
        }
        _write(path, stored)
        pages = self.plane.export_decisions(decision_point, ExportProgress(), since_ms=since, until_ms=until)
        bounds = (record.config.reward_min, record.config.reward_max)
        sources = {c.label: source for c, source in candidates}
        loop = asyncio.get_running_loop()

        async def run() -> None:
            try:
                results = await loop.run_in_executor(
                    self._executor, _evaluate, pages, [c for c, _ in candidates], bounds
                )
            except (evaluator.EvaluationError, KairosError, OSError, ValueError) as err:
                message = err.message if isinstance(err, KairosError) else str(err)
                self._finish(path, FAILED, description=without_paths(message))
                return
            except Exception:
                log.exception("evaluation_failed", decision_point=decision_point, evaluation=evaluation_id)
                self._finish(path, FAILED, description="internal error; the server log has the details")
                return
            self._finish(path, SUCCEEDED, content=_content(results, sources, since, until))

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    def _finish(self, path: Path, status: str, **fields: Any) -> None:
        if not path.exists():  # deleted while it ran
            return
        stored = json.loads(path.read_text())
        stored.update(status=status, **fields)
        if status == SUCCEEDED:
            stored["optimalPolicy"] = fields["content"]["optimalPolicy"]
            del stored["content"]["optimalPolicy"]
        _write(path, stored)

    def get(self, decision_point: str, evaluation_id: str) -> dict[str, Any]:
        self.plane.get_decision_point(decision_point)
        path = self._path(decision_point, evaluation_id) if ID_PATTERN.fullmatch(evaluation_id) else None
        if path is None or not path.exists():
            raise not_found("EVALUATION_NOT_FOUND", f"evaluation {evaluation_id[:80]!r} does not exist")
        stored: dict[str, Any] = json.loads(path.read_text())
        return stored

    def public(self, stored: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in stored.items() if key != PRIVATE}

    def list(self, decision_point: str) -> list[dict[str, Any]]:
        self.plane.get_decision_point(decision_point)
        found = [json.loads(p.read_text()) for p in sorted((self.root / decision_point).glob("*.json"))]
        return sorted(found, key=lambda e: e["creationTime"])

    def delete(self, decision_point: str, evaluation_id: str) -> None:
        self.get(decision_point, evaluation_id)
        self._path(decision_point, evaluation_id).unlink(missing_ok=True)

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
        for task in list(self._tasks):
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _evaluate(pages: Any, candidates: list[evaluator.Candidate], bounds: tuple[float, float]) -> evaluator.Evaluation:
    """Export the decisions to a temporary DSJSON file and replay it (on the evaluation thread)."""
    with tempfile.TemporaryDirectory(prefix="kairos-evaluation-") as folder:
        logs = Path(folder) / "decisions.json"
        with logs.open("w") as out:
            for page in pages:
                out.writelines(line + "\n" for line in page)
        try:
            return evaluator.evaluate(logs, candidates, reward_range=bounds)
        except evaluator.EvaluationError as err:
            raise evaluator.EvaluationError(str(err).replace(str(logs), "the logged decisions")) from None


def _content(results: evaluator.Evaluation, sources: dict[str, str], since: int, until: int) -> dict[str, Any]:
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
    return {
        "startTime": iso_timestamp(since),
        "endTime": iso_timestamp(until),
        "events": results.events,
        "value": values,
        "optimalPolicy": best["name"] if best else "",
    }


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":")))
    tmp.replace(path)
