"""Personalizer's background jobs (evaluations, feature importances): one lifecycle for both.

A job reads a decision point's logged (closed) decisions of a time range and runs on Kairos's offline
thread, so serving never waits for it. Its record is a JSON file under the data directory
(``ROOT/<decision point>/<id>.json``): status ``Running`` while it runs, then ``Succeeded`` with its
results or ``Failed`` with a reason. Records survive restarts; one a restart interrupted is marked
Failed when the server starts again. A record's ``_kairos`` part is Kairos's own and never sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from service.errors import Code, KairosError, invalid, not_found
from service.grpc.errors import without_paths
from service.offline.dsjson import iso_timestamp, parse_timestamp
from service.offline.export import ExportProgress
from service.plane import DecisionPlane

log = structlog.get_logger("kairos.jobs")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
PRIVATE = "_kairos"  # the record's own part, never sent
T = TypeVar("T")


def now_iso() -> str:
    return iso_timestamp(int(time.time() * 1000))


def new_executor() -> ThreadPoolExecutor:
    """The offline thread: one, so offline work takes at most one core from serving."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="kairos-offline")


@dataclass(frozen=True)
class TimeRange:
    since_ms: int
    until_ms: int


def time_range(body: dict[str, Any], reason: str) -> TimeRange:
    """``startTime``/``endTime`` of a job request (ISO 8601); by default all of the log until now."""
    try:
        since = parse_timestamp(str(body.get("startTime") or "1970-01-01"))
        until = parse_timestamp(str(body["endTime"])) if body.get("endTime") else int(time.time() * 1000) + 1
    except ValueError as err:
        raise invalid(reason, f"startTime/endTime: {err}") from None
    if until <= since:
        raise invalid(reason, "endTime must be later than startTime")
    return TimeRange(since, until)


def exported_logs(pages: Iterable[list[str]], folder: Path) -> Path:
    """The decision pages written as one DSJSON file in ``folder`` (on the offline thread)."""
    logs = folder / "decisions.json"
    with logs.open("w") as out:
        for page in pages:
            out.writelines(line + "\n" for line in page)
    return logs


class JobStore:
    """The records of one kind of job (``noun``: "evaluation"; errors name it, reasons use ``REASON``)."""

    def __init__(self, plane: DecisionPlane, root: Path, noun: str, executor: ThreadPoolExecutor) -> None:
        self.plane, self.root, self.noun, self.executor = plane, root, noun, executor
        self.reason = noun.upper().replace(" ", "_")
        self._tasks: set[asyncio.Task[None]] = set()
        self._interrupted()

    def _path(self, decision_point: str, job_id: str) -> Path:
        return self.root / decision_point / f"{job_id}.json"

    def _records(self, pattern: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """The readable records whose files match ``pattern``; unreadable ones are logged and left out."""
        for path in sorted(self.root.glob(pattern)):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                log.warning("job_record_unreadable", kind=self.noun, file=path.name, error=str(err))
                continue
            if isinstance(record, dict):
                yield path, record

    def _interrupted(self) -> None:
        """Records left Running by a stopped process will never finish: mark them Failed."""
        for path, record in self._records("*/*.json"):
            if record.get("status") == RUNNING:
                record["status"] = FAILED
                record["description"] = "interrupted by a restart of Kairos; create it again"
                _write(path, record)

    def check_new(self, decision_point: str, job_id: str) -> None:
        """Refuse an id that is malformed or taken (and a decision point that does not exist)."""
        self.plane.get_decision_point(decision_point)
        if not ID_PATTERN.fullmatch(job_id):
            raise invalid(f"INVALID_{self.reason}_ID", f"{self.noun} id must match {ID_PATTERN.pattern}")
        if self._path(decision_point, job_id).exists():
            raise KairosError(
                Code.ALREADY_EXISTS, f"{self.reason}_EXISTS", f"{self.noun} {job_id!r} exists; delete it first"
            )

    def start(
        self,
        decision_point: str,
        job_id: str,
        record: dict[str, Any],
        since: TimeRange,
        work: Callable[[Path], T],
        finish: Callable[[T], dict[str, Any]],
    ) -> None:
        """Write ``record`` as Running, then run ``work`` on the offline thread with the decisions of the time
        range exported to a temporary DSJSON file; the fields ``finish`` makes of its result complete the
        record (Succeeded), or the error's message does (Failed)."""
        path = self._path(decision_point, job_id)
        _write(path, {**record, "status": RUNNING})
        pages = self.plane.export_decisions(
            decision_point, ExportProgress(), since_ms=since.since_ms, until_ms=since.until_ms
        )

        def run_on_logs() -> T:
            with tempfile.TemporaryDirectory(prefix="kairos-job-") as folder:
                logs = exported_logs(pages, Path(folder))
                try:
                    return work(logs)
                except ValueError as err:  # the offline errors name the file: say what it holds instead
                    raise ValueError(str(err).replace(str(logs), "the logged decisions")) from None

        loop = asyncio.get_running_loop()

        async def run() -> None:
            try:
                result = await loop.run_in_executor(self.executor, run_on_logs)
            except (KairosError, OSError, ValueError) as err:
                message = err.message if isinstance(err, KairosError) else str(err)
                self._finish(path, FAILED, {"description": without_paths(message)})
                return
            except Exception:
                log.exception(f"{self.reason.lower()}_failed", decision_point=decision_point, job=job_id)
                self._finish(path, FAILED, {"description": "internal error; the server log has the details"})
                return
            self._finish(path, SUCCEEDED, finish(result))

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self, path: Path, status: str, fields: dict[str, Any]) -> None:
        if not path.exists():  # deleted while it ran
            return
        stored = json.loads(path.read_text())
        stored.update(status=status, **fields)
        _write(path, stored)

    def get(self, decision_point: str, job_id: str) -> dict[str, Any]:
        self.plane.get_decision_point(decision_point)
        path = self._path(decision_point, job_id) if ID_PATTERN.fullmatch(job_id) else None
        if path is None or not path.exists():
            raise not_found(f"{self.reason}_NOT_FOUND", f"{self.noun} {job_id[:80]!r} does not exist")
        stored: dict[str, Any] = json.loads(path.read_text())
        return stored

    def list(self, decision_point: str) -> list[dict[str, Any]]:
        """Every record of the decision point, oldest first."""
        self.plane.get_decision_point(decision_point)
        found = [record for _, record in self._records(f"{decision_point}/*.json")]
        return sorted(found, key=lambda record: str(record.get("creationTime")))

    def delete(self, decision_point: str, job_id: str) -> None:
        self.get(decision_point, job_id)
        self._path(decision_point, job_id).unlink(missing_ok=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


def public(stored: dict[str, Any]) -> dict[str, Any]:
    """A record as sent: without Kairos's own part."""
    return {key: value for key, value in stored.items() if key != PRIVATE}


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":")))
    tmp.replace(path)
