"""Stream a decision point's closed decisions out of the data directory as DSJSON.

Reads in pages, each in its own short read transaction (a long one would pin old LMDB pages while a
server keeps writing), so memory stays constant however many events there are, and a running server
is never blocked: LMDB readers do not wait for the writer, and the export does not take the data
directory's lock.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import lmdb

from policies.features import RESERVED_NAMESPACES
from service.domain import EXPIRED, LEARNING, Decision, DecisionPointRecord
from service.offline import dsjson
from service.store.lmdb_store import Store

PAGE = 500
NO_END = (1 << 64) - 1


class ExportError(RuntimeError):
    """The export cannot start; the message says what to do."""


@dataclass
class ExportProgress:
    exported: int = 0
    with_default_reward: int = 0
    still_open: int = 0  # reward window not closed yet: not exported
    expired: int = 0  # deferred and never activated (never shown): not exported
    missing_lines: int = 0  # action lines already dropped by retention
    forgotten: int = 0  # their subject was forgotten (DeleteProfile): never exported
    fallback: int = 0  # ranked by the fail-open fallback, not the model (which never learns them)
    last_ranked_ms: int = 0

    def describe(self) -> str:
        skipped = f"skipped {self.still_open} still open, {self.expired} expired (never activated)"
        if self.forgotten:
            skipped += f", {self.forgotten} of forgotten subjects"
        if self.fallback:
            skipped += f", {self.fallback} ranked by the fallback"
        if self.missing_lines:
            skipped += f", {self.missing_lines} whose actions retention removed"
        return f"exported {self.exported} events ({self.with_default_reward} with the default reward); {skipped}"


def open_store(data_dir: Path) -> Store:
    """Open an existing data directory read-only (no lock, no write transaction), beside a server that may be
    running on it."""
    if not (data_dir / "lmdb" / "data.mdb").is_file():
        raise ExportError(f"no Kairos data in {data_dir} (expected {data_dir}/lmdb); pass the server's --data-dir")
    return Store(data_dir / "lmdb", owner=False, readonly=True)


def find_record(store: Store, name: str) -> DecisionPointRecord:
    with store.read() as txn:
        records = store.load_decision_points(txn)
    if name not in records:
        known = ", ".join(sorted(records)) or "none"
        raise ExportError(f"decision point {name!r} does not exist in this data directory (it has: {known})")
    return records[name]


def export_pages(
    store: Store,
    decision_point: str,
    done: ExportProgress,
    *,
    since_ms: int = 0,
    until_ms: int = NO_END,
) -> Iterator[list[str]]:
    """DSJSON events (without newlines) of ``decision_point`` ranked in [since_ms, until_ms), a page at a
    time; ``done`` counts what was exported and skipped so far. Raises ExportError for an unknown name."""
    record = find_record(store, decision_point)
    config = record.config
    namespaces = {index: name for name, index in record.namespaces.indices.items()}
    namespaces.update({index: name for name, index in RESERVED_NAMESPACES.items()})
    # A sum of rewards, or a reward times a business value, may leave the range one reward must keep;
    # then the logs state no range.
    plain = config.aggregation == "first" and not config.optimize_value
    reward_range = (config.reward_min, config.reward_max) if plain else None
    after = struct.pack(">Q", since_ms)
    while True:
        page = _read_page(store, decision_point, after, until_ms)
        if not page.keys:
            return
        after = page.keys[-1]
        events: list[str] = []
        for decision, lines in page.decisions:
            if decision.forgotten:
                done.forgotten += 1
            elif decision.state == EXPIRED:
                done.expired += 1
            elif decision.state != LEARNING:
                done.still_open += 1
            elif decision.fallback:
                done.fallback += 1
            elif lines is None:
                done.missing_lines += 1
            else:
                default = decision.reward is None
                reward = config.default_reward if decision.reward is None else decision.reward
                if config.optimize_value:  # what the model learns (see DecisionPlane._close)
                    reward *= decision.value
                event = dsjson.event_json(
                    decision,
                    lines,
                    decision_point=decision_point,
                    namespaces=namespaces,
                    reward=reward,
                    default_reward=default,
                    reward_range=reward_range,
                )
                events.append(dsjson.dumps(event))
                done.exported += 1
                done.with_default_reward += int(default)
                done.last_ranked_ms = decision.ranked_at_ms
        yield events


def export(
    store: Store,
    decision_point: str,
    out: TextIO,
    *,
    since_ms: int = 0,
    until_ms: int = NO_END,
    progress: Callable[[ExportProgress], None] | None = None,
    progress_every_s: float = 2.0,
) -> ExportProgress:
    """Write every closed decision of ``decision_point`` ranked in [since_ms, until_ms) to ``out``."""
    done = ExportProgress()
    last_report = time.monotonic()
    for events in export_pages(store, decision_point, done, since_ms=since_ms, until_ms=until_ms):
        for event in events:
            out.write(event + "\n")
        if progress is not None and time.monotonic() - last_report >= progress_every_s:
            last_report = time.monotonic()
            progress(done)
    return done


@dataclass
class _Page:
    keys: list[bytes]
    decisions: list[tuple[Decision, list[str] | None]]


def _read_page(store: Store, decision_point: str, after: bytes, until_ms: int) -> _Page:
    while True:
        try:
            with store.read() as txn:
                found = store.ranked_page(txn, after, until_ms, PAGE)
                decisions: list[tuple[Decision, list[str] | None]] = []
                for _, dp, event_id in found:
                    if dp != decision_point:
                        continue
                    decision = store.get_decision(txn, dp, event_id)
                    if decision is None:  # removed by retention since the page was listed
                        continue
                    lines: list[str] | None = None
                    if decision.state == LEARNING and not decision.forgotten:
                        try:
                            lines = store.lines_of(txn, decision)
                        except KeyError:
                            lines = None
                    decisions.append((decision, lines))
                return _Page([key for key, _, _ in found], decisions)
        except lmdb.MapResizedError:
            # The server grew the map since this process opened it: adopt the new size and retry.
            store.env.set_mapsize(0)
