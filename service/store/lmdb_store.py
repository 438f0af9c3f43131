"""Everything Kairos keeps, in one LMDB environment.

Named databases and their keys (``dp`` is the decision point name plus a NUL,
which a name can never contain; integers are 8-byte big-endian so keys sort
by number):

- ``meta``: ``format`` -> data directory format version; ``decision_points_version`` -> a counter
  bumped by every decision point change; ``snapshot:NAME`` -> the newest published model snapshot
- ``decision_points``: ``name`` -> DecisionPointRecord JSON
- ``events``: ``dp + event_id`` -> Decision JSON
- ``due``: ``deadline + dp + event_id`` -> "" (reward windows still open, by deadline)
- ``by_time``: ``ranked_at + dp + event_id`` -> "" (for retention)
- ``lines``: ``day + line key`` -> a VW action line; stored once per day and shared by every
  decision of that day that offered the same action, dropped with the day by retention
- ``journal``: ``dp + seq`` -> what to learn, in learning order
- ``counters``: ``dp`` -> counters JSON; ``dp + kind`` -> other running statistics of the decision point
  as JSON (``modes``: apprentice and holdout moments, see service.modes)
- ``checkpoints``: ``dp + generation + seq`` -> checkpoint metadata JSON
- ``audit``: ``seq`` -> an audit record of an administrative change, JSON
- ``profiles``: ``subject_id`` -> profile JSON (per feature: value and update time)
- ``behaviour``: ``subject_id`` -> the subject's recent behavioural events (bounded)
- ``contacts``: ``subject_id`` -> the subject's contact history: exposures (bounded)
- ``subject_events``: ``blake2b-128(subject_id) + dp + event_id`` -> "" (decisions that carry the subject
  id, so forgetting a subject finds them; the hash keeps keys within LMDB's 511 bytes)
- ``catalog``: ``dp + action_id`` -> CatalogEntry JSON; ``meta`` keeps ``catalog_version:dp``, bumped by
  every change, so each process knows when its cached copy is stale
- ``budgets``: ``dp + action_id + NUL + period`` -> shows of a budgeted catalog action in that period

Durability: with ``sync=False`` (the default) a commit is in the OS page
cache when Rank or Reward returns, which survives ``kill -9`` of the process
but not a power loss; ``sync=True`` fsyncs every commit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import lmdb
import structlog

from policies.lru import LRU
from service.domain import LINE_KEY_BYTES, CatalogEntry, Decision, DecisionPointRecord
from service.errors import Code, KairosError

FORMAT_VERSION = 1
_U64 = struct.Struct(">Q")
DB_NAMES = (
    "meta",
    "decision_points",
    "events",
    "due",
    "by_time",
    "lines",
    "journal",
    "counters",
    "checkpoints",
    "audit",
    "profiles",
    "behaviour",
    "contacts",
    "subject_events",
    "catalog",
    "budgets",
)
_U32 = struct.Struct(">I")
DAY_MS = 86_400_000
T = TypeVar("T")
log = structlog.get_logger(__name__)
# py-lmdb types keys and values as bytes | memoryview; every transaction here is
# opened with buffers=False, so they are bytes.
Txn = Any


class DataDirError(RuntimeError):
    """The data directory cannot be used by this build; the message says what to do."""


def _lock_exclusively(path: Path) -> IO[bytes]:
    """One Kairos per data directory: two would both learn and checkpoint the same models."""
    handle = open(path, "ab")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirError(
            f"another Kairos process is using the data directory {path.parent.parent}; stop it first, "
            "or give this one its own --data-dir"
        ) from None
    return handle


def _dp(name: str) -> bytes:
    return name.encode() + b"\x00"


def _subject_prefix(subject_id: str) -> bytes:
    """A fixed-size stand-in for a subject id in index keys: a 256-byte subject id, a decision point name
    and a 256-byte event id together would pass LMDB's 511-byte key limit."""
    return hashlib.blake2b(subject_id.encode(), digest_size=16).digest()


def _split_dp(key: bytes) -> tuple[str, bytes]:
    name, _, rest = key.partition(b"\x00")
    return name.decode(), rest


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    event_id: str
    reward: float
    # The decision as it was journaled, when the journaling process still holds it: the learner then
    # need not read and decode it again. Never stored; entries read from LMDB have None.
    decision: Decision | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CheckpointMeta:
    generation: int
    seq: int
    file: str
    sha256: str
    learned: int
    reward_sum: float
    created_ms: int

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()


class Store:
    def __init__(
        self,
        path: Path,
        *,
        sync: bool = False,
        map_size: int = 1 << 30,
        owner: bool = True,
        readonly: bool = False,
    ) -> None:
        """``owner``: the process that learns (one per data directory, enforced with a lock file);
        serving workers open the same environment without it. ``readonly``: for backups (no owner)."""
        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = _lock_exclusively(path / "kairos.lock") if owner and not readonly else None
        self.env = lmdb.open(
            str(path),
            max_dbs=len(DB_NAMES),
            map_size=map_size,
            sync=sync,
            metasync=sync,
            writemap=False,  # with writemap a full disk kills the process with SIGBUS
            readahead=False,
            max_readers=256,
            readonly=readonly,
            create=not readonly,
        )
        self.stale_readers_cleared = self.env.reader_check()
        # Line keys known to be in the line table, so a Rank writes only lines new to the day.
        self._stored_lines: LRU[bytes, bool] = LRU(200_000)
        self.db = {name: self.env.open_db(name.encode(), create=not readonly) for name in DB_NAMES}
        # The format of the directory as found: FORMAT_VERSION for a new one; below it, see service.datadir.
        self.format_found = self._check_format(write=not readonly)

    def _check_format(self, write: bool) -> int:
        with self.env.begin(write=write) as txn:
            raw = txn.get(b"format", db=self.db["meta"])
            if raw is None:
                if txn.stat(self.db["decision_points"])["entries"] or txn.stat(self.db["events"])["entries"]:
                    return 0  # made before the format was recorded
                if write:
                    txn.put(b"format", str(FORMAT_VERSION).encode(), db=self.db["meta"])
                return FORMAT_VERSION
        found = int(raw)
        if found > FORMAT_VERSION:
            raise DataDirError(
                f"the data directory has format {found}, newer than this build understands ({FORMAT_VERSION}); "
                "run the newer Kairos version on it, or restore a backup taken before the upgrade"
            )
        return found

    def set_format(self, version: int) -> None:
        self.write(lambda txn: txn.put(b"format", str(version).encode(), db=self.db["meta"]))

    # -- transactions -------------------------------------------------------

    def write(self, work: Callable[[Txn], T]) -> T:
        """Run ``work`` in a write transaction; grow the map and retry when it is full."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return work(txn)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)  # another process grew the map: adopt its size, then retry
            except lmdb.Error as err:
                # A full disk shows up as an I/O error at commit; the transaction was aborted cleanly.
                log.error("lmdb_write_failed", error=str(err))
                raise KairosError(
                    Code.UNAVAILABLE,
                    "STORAGE_UNAVAILABLE",
                    "Kairos cannot write its data directory right now (is the disk full?); nothing was "
                    "recorded, retry later",
                ) from None

    def read(self) -> Txn:
        try:
            return self.env.begin(buffers=False)
        except lmdb.MapResizedError:
            # Another process (the learner of --workers, kairos import-profiles) grew the map past this
            # process's size: every transaction fails until the new size is adopted.
            self.env.set_mapsize(0)
            return self.env.begin(buffers=False)

    def sync(self) -> None:
        self.env.sync(True)

    def close(self) -> None:
        self.env.close()
        if self._lock is not None:
            self._lock.close()

    def size_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return int(info["last_pgno"] + 1) * int(stat["psize"])

    # -- decision points ----------------------------------------------------

    def load_decision_points(self, txn: Txn) -> dict[str, DecisionPointRecord]:
        with txn.cursor(db=self.db["decision_points"]) as cursor:
            return {key.decode(): DecisionPointRecord.decode(value) for key, value in cursor}

    def put_decision_point(self, txn: Txn, record: DecisionPointRecord) -> None:
        txn.put(record.config.name.encode(), record.encode(), db=self.db["decision_points"])
        self._bump_decision_points_version(txn)

    def _bump_decision_points_version(self, txn: Txn) -> None:
        txn.put(b"decision_points_version", str(self.decision_points_version(txn) + 1).encode(), db=self.db["meta"])

    def get_meta(self, txn: Txn, key: bytes) -> bytes | None:
        value: bytes | None = txn.get(key, db=self.db["meta"])
        return value

    def put_meta(self, txn: Txn, key: bytes, value: bytes) -> None:
        txn.put(key, value, db=self.db["meta"])

    def decision_points_version(self, txn: Txn) -> int:
        """Changes whenever a decision point is written or deleted: other processes reload on change."""
        raw = txn.get(b"decision_points_version", db=self.db["meta"])
        return 0 if raw is None else int(raw)

    def delete_decision_point(self, txn: Txn, name: str) -> None:
        prefix = _dp(name)
        txn.delete(name.encode(), db=self.db["decision_points"])
        self._bump_decision_points_version(txn)
        for db in ("events", "journal", "counters", "checkpoints", "catalog", "budgets"):
            self._delete_prefix(txn, db, prefix)
        self._bump_catalog_version(txn, name)
        for db in ("due", "by_time"):  # keyed by time first: scan all
            with txn.cursor(db=self.db[db]) as cursor:
                keys = [key for key in cursor.iternext(values=False) if key[8:].startswith(prefix)]
            for key in keys:
                txn.delete(key, db=self.db[db])

    def _delete_prefix(self, txn: Txn, db: str, prefix: bytes) -> None:
        with txn.cursor(db=self.db[db]) as cursor:
            if not cursor.set_range(prefix):
                return
            while cursor.key().startswith(prefix):
                if not cursor.delete():
                    break

    # -- decisions ----------------------------------------------------------

    def get_decision(self, txn: Txn, dp: str, event_id: str) -> Decision | None:
        raw = txn.get(_dp(dp) + event_id.encode(), db=self.db["events"])
        return None if raw is None else Decision.decode(raw)

    def put_decision(self, txn: Txn, dp: str, decision: Decision) -> None:
        txn.put(_dp(dp) + decision.event_id.encode(), decision.encode(), db=self.db["events"])

    def add_new_decision(self, txn: Txn, dp: str, decision: Decision) -> None:
        key = _dp(dp) + decision.event_id.encode()
        txn.put(key, decision.encode(), db=self.db["events"])
        txn.put(_U64.pack(decision.deadline_ms) + key, b"", db=self.db["due"])
        txn.put(_U64.pack(decision.ranked_at_ms) + key, b"", db=self.db["by_time"])

    def close_window(self, txn: Txn, dp: str, decision: Decision) -> None:
        txn.delete(_U64.pack(decision.deadline_ms) + _dp(dp) + decision.event_id.encode(), db=self.db["due"])

    def due_before(self, txn: Txn, now_ms: int, limit: int) -> list[tuple[bytes, str, str]]:
        """Open windows whose deadline has passed, oldest first: (key, decision point, event id)."""
        found: list[tuple[bytes, str, str]] = []
        with txn.cursor(db=self.db["due"]) as cursor:
            for key in cursor.iternext(values=False):
                if _U64.unpack(key[:8])[0] > now_ms or len(found) >= limit:
                    break
                dp, event = _split_dp(key[8:])
                found.append((key, dp, event.decode()))
        return found

    def drop_due(self, txn: Txn, key: bytes) -> None:
        txn.delete(key, db=self.db["due"])

    def ranked_before(self, txn: Txn, cutoff_ms: int, limit: int) -> list[tuple[bytes, str, str]]:
        found: list[tuple[bytes, str, str]] = []
        with txn.cursor(db=self.db["by_time"]) as cursor:
            for key in cursor.iternext(values=False):
                if _U64.unpack(key[:8])[0] >= cutoff_ms or len(found) >= limit:
                    break
                dp, event = _split_dp(key[8:])
                found.append((key, dp, event.decode()))
        return found

    def ranked_page(self, txn: Txn, after_key: bytes, until_ms: int, limit: int) -> list[tuple[bytes, str, str]]:
        """Up to ``limit`` decisions of every decision point ranked before ``until_ms``, in ranking order,
        starting after the ``by_time`` key ``after_key`` (``b""``: from the start): (key, dp, event id)."""
        found: list[tuple[bytes, str, str]] = []
        with txn.cursor(db=self.db["by_time"]) as cursor:
            if not cursor.set_range(after_key):
                return found
            for key in cursor.iternext(values=False):
                if key == after_key:
                    continue
                if _U64.unpack(key[:8])[0] >= until_ms or len(found) >= limit:
                    break
                dp, event = _split_dp(key[8:])
                found.append((key, dp, event.decode()))
        return found

    def forget_decision(self, txn: Txn, time_key: bytes, dp: str, event_id: str) -> None:
        txn.delete(_dp(dp) + event_id.encode(), db=self.db["events"])
        txn.delete(time_key, db=self.db["by_time"])

    # -- action lines -------------------------------------------------------

    def new_lines(self, day: int, keys: list[bytes], lines: list[str]) -> list[tuple[bytes, str]]:
        """The (table key, line) pairs not yet known to be stored under ``day``."""
        prefix = _U32.pack(day)
        found = []
        for key, line in zip(keys, lines, strict=True):
            table_key = prefix + key
            if self._stored_lines.get(table_key) is None:
                found.append((table_key, line))
        return found

    def put_lines(self, txn: Txn, lines: list[tuple[bytes, str]]) -> None:
        for table_key, line in lines:
            txn.put(table_key, line.encode(), db=self.db["lines"], overwrite=False)

    def remember_lines(self, lines: list[tuple[bytes, str]]) -> None:
        """Call after the transaction that stored ``lines`` committed."""
        for table_key, _ in lines:
            self._stored_lines.put(table_key, True)

    def lines_of(self, txn: Txn, decision: Decision) -> list[str]:
        prefix = _U32.pack(decision.line_day)
        db = self.db["lines"]
        keys = decision.line_keys
        found = [txn.get(prefix + keys[i : i + LINE_KEY_BYTES], db=db) for i in range(0, len(keys), LINE_KEY_BYTES)]
        if any(line is None for line in found):
            raise KeyError(f"action lines of event {decision.event_id!r} are missing")
        return [line.decode() for line in found]

    def drop_lines_before(self, txn: Txn, day: int) -> int:
        removed = 0
        with txn.cursor(db=self.db["lines"]) as cursor:
            if not cursor.first():
                return 0
            while cursor.key() and _U32.unpack(cursor.key()[:4])[0] < day:
                removed += 1
                if not cursor.delete():
                    break
        self._stored_lines.clear()
        return removed

    # -- learning journal ---------------------------------------------------

    def append_journal(self, txn: Txn, dp: str, seq: int, event_id: str, reward: float) -> None:
        value = json.dumps([event_id, reward], separators=(",", ":"), ensure_ascii=False).encode()
        txn.put(_dp(dp) + _U64.pack(seq), value, db=self.db["journal"])

    def journal_after(self, txn: Txn, dp: str, seq: int) -> Iterator[JournalEntry]:
        prefix = _dp(dp)
        with txn.cursor(db=self.db["journal"]) as cursor:
            if not cursor.set_range(prefix + _U64.pack(seq + 1)):
                return
            for key, value in cursor:
                if not key.startswith(prefix):
                    return
                event_id, reward = json.loads(value)
                yield JournalEntry(_U64.unpack(key[len(prefix) :])[0], event_id, reward)

    def last_journal_seq(self, txn: Txn, dp: str) -> int:
        prefix = _dp(dp)
        with txn.cursor(db=self.db["journal"]) as cursor:
            # Step back from just past this decision point's largest possible key.
            moved = cursor.prev() if cursor.set_range(prefix + b"\xff" * 8) else cursor.last()
            if moved and cursor.key().startswith(prefix):
                return int(_U64.unpack(cursor.key()[len(prefix) :])[0])
        return 0

    def prune_journal(self, txn: Txn, dp: str, up_to_seq: int) -> int:
        prefix = _dp(dp)
        removed = 0
        with txn.cursor(db=self.db["journal"]) as cursor:
            if not cursor.set_range(prefix):
                return 0
            while cursor.key().startswith(prefix) and _U64.unpack(cursor.key()[len(prefix) :])[0] <= up_to_seq:
                removed += 1
                if not cursor.delete():
                    break
        return removed

    # -- counters -----------------------------------------------------------

    def get_counters(self, txn: Txn, dp: str) -> dict[str, int]:
        raw = txn.get(_dp(dp), db=self.db["counters"])
        return {} if raw is None else dict(json.loads(raw))

    def add_counters(self, txn: Txn, dp: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Add ``deltas`` to the stored counters inside ``txn`` (safe with several writing processes)."""
        counters = self.get_counters(txn, dp)
        for name, delta in deltas.items():
            counters[name] = counters.get(name, 0) + delta
        txn.put(_dp(dp), json.dumps(counters, separators=(",", ":")).encode(), db=self.db["counters"])
        return counters

    def get_extra_stats(self, txn: Txn, dp: str, kind: bytes) -> dict[str, Any]:
        raw = txn.get(_dp(dp) + kind, db=self.db["counters"])
        return {} if raw is None else dict(json.loads(raw))

    def put_extra_stats(self, txn: Txn, dp: str, kind: bytes, data: Mapping[str, Any]) -> None:
        txn.put(_dp(dp) + kind, json.dumps(data, separators=(",", ":")).encode(), db=self.db["counters"])

    # -- checkpoints --------------------------------------------------------

    def put_checkpoint(self, txn: Txn, dp: str, meta: CheckpointMeta) -> None:
        key = _dp(dp) + _U64.pack(meta.generation) + _U64.pack(meta.seq)
        txn.put(key, meta.encode(), db=self.db["checkpoints"])

    def checkpoints(self, txn: Txn, dp: str, generation: int) -> list[CheckpointMeta]:
        """Checkpoints of one model generation, newest first."""
        prefix = _dp(dp) + _U64.pack(generation)
        found: list[CheckpointMeta] = []
        with txn.cursor(db=self.db["checkpoints"]) as cursor:
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    data: dict[str, Any] = json.loads(value)
                    found.append(CheckpointMeta(**data))
        return found[::-1]

    def all_checkpoints(self, txn: Txn, dp: str) -> list[CheckpointMeta]:
        prefix = _dp(dp)
        with txn.cursor(db=self.db["checkpoints"]) as cursor:
            if not cursor.set_range(prefix):
                return []
            found = []
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                found.append(CheckpointMeta(**json.loads(value)))
            return found

    def delete_checkpoint(self, txn: Txn, dp: str, meta: CheckpointMeta) -> None:
        key = _dp(dp) + _U64.pack(meta.generation) + _U64.pack(meta.seq)
        txn.delete(key, db=self.db["checkpoints"])

    # -- audit --------------------------------------------------------------

    def append_audit(self, txn: Txn, make: Callable[[int], bytes]) -> int:
        """Store the record ``make(seq)`` under the next audit sequence number, and return it."""
        with txn.cursor(db=self.db["audit"]) as cursor:
            seq = _U64.unpack(cursor.key())[0] + 1 if cursor.last() else 1
        txn.put(_U64.pack(seq), make(seq), db=self.db["audit"])
        return seq

    def audit_after(self, txn: Txn, seq: int, limit: int) -> list[bytes]:
        """Up to ``limit`` audit records with a sequence number above ``seq``, oldest first."""
        found: list[bytes] = []
        with txn.cursor(db=self.db["audit"]) as cursor:
            if not cursor.set_range(_U64.pack(seq + 1)):
                return found
            for _, value in cursor:
                found.append(value)
                if len(found) >= limit:
                    break
        return found

    # -- subjects: profiles, behaviour, contact history -----------------------

    def get_subject(self, txn: Txn, db: str, subject_id: str) -> bytes | None:
        """The raw record of ``subject_id`` in ``db`` (profiles, behaviour or contacts)."""
        value: bytes | None = txn.get(subject_id.encode(), db=self.db[db])
        return value

    def put_subject(self, txn: Txn, db: str, subject_id: str, value: bytes) -> None:
        txn.put(subject_id.encode(), value, db=self.db[db])

    def delete_subject(self, txn: Txn, db: str, subject_id: str) -> bool:
        return bool(txn.delete(subject_id.encode(), db=self.db[db]))

    def subjects_after(self, txn: Txn, db: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` (subject id, record) pairs of ``db`` whose subject id sorts after ``after``."""
        found: list[tuple[str, bytes]] = []
        with txn.cursor(db=self.db[db]) as cursor:
            start = after.encode() + b"\x00" if after else b""
            if not (cursor.set_range(start) if start else cursor.first()):
                return found
            for key, value in cursor:
                if len(found) >= limit:
                    break
                found.append((key.decode(), value))
        return found

    def add_subject_event(self, txn: Txn, subject_id: str, dp: str, event_id: str) -> None:
        txn.put(_subject_prefix(subject_id) + _dp(dp) + event_id.encode(), b"", db=self.db["subject_events"])

    def subject_events(self, txn: Txn, subject_id: str) -> list[tuple[bytes, str, str]]:
        """(index key, decision point, event id) of the decisions logged with ``subject_id``."""
        prefix = _subject_prefix(subject_id)
        found: list[tuple[bytes, str, str]] = []
        with txn.cursor(db=self.db["subject_events"]) as cursor:
            if not cursor.set_range(prefix):
                return found
            for key in cursor.iternext(values=False):
                if not key.startswith(prefix):
                    break
                dp, event = _split_dp(key[len(prefix) :])
                found.append((key, dp, event.decode()))
        return found

    def drop_subject_event(self, txn: Txn, key: bytes) -> None:
        txn.delete(key, db=self.db["subject_events"])

    def drop_subject_event_of(self, txn: Txn, decision: Decision, dp: str) -> None:
        if decision.subject_id:
            key = _subject_prefix(decision.subject_id) + _dp(dp) + decision.event_id.encode()
            txn.delete(key, db=self.db["subject_events"])

    # -- catalog --------------------------------------------------------------

    def catalog_version(self, txn: Txn, dp: str) -> int:
        raw = txn.get(b"catalog_version:" + dp.encode(), db=self.db["meta"])
        return 0 if raw is None else int(raw)

    def _bump_catalog_version(self, txn: Txn, dp: str) -> None:
        txn.put(b"catalog_version:" + dp.encode(), str(self.catalog_version(txn, dp) + 1).encode(), db=self.db["meta"])

    def load_catalog(self, txn: Txn, dp: str, after: str = "", limit: int = 0) -> list[CatalogEntry]:
        """Catalog actions of ``dp`` by id, those after ``after``; at most ``limit`` (0: all)."""
        prefix = _dp(dp)
        found: list[CatalogEntry] = []
        with txn.cursor(db=self.db["catalog"]) as cursor:
            start = prefix + after.encode() + b"\x00" if after else prefix
            if not cursor.set_range(start):
                return found
            for key, value in cursor:
                if not key.startswith(prefix) or (limit and len(found) >= limit):
                    break
                found.append(CatalogEntry.decode(value))
        return found

    def put_catalog(self, txn: Txn, dp: str, entries: list[CatalogEntry], replace: bool) -> None:
        if replace:
            self._delete_prefix(txn, "catalog", _dp(dp))
        for entry in entries:
            txn.put(_dp(dp) + entry.id.encode(), entry.encode(), db=self.db["catalog"])
        self._bump_catalog_version(txn, dp)

    def budget_used(self, txn: Txn, dp: str, action_id: str, period: int) -> int:
        raw = txn.get(_dp(dp) + action_id.encode() + b"\x00" + _U64.pack(period), db=self.db["budgets"])
        return 0 if raw is None else int(raw)

    def add_budget_use(self, txn: Txn, dp: str, action_id: str, period: int) -> int:
        """Count one more show in ``period``; returns the new count."""
        used = self.budget_used(txn, dp, action_id, period) + 1
        key = _dp(dp) + action_id.encode() + b"\x00" + _U64.pack(period)
        txn.put(key, str(used).encode(), db=self.db["budgets"])
        return used

    def delete_catalog_action(self, txn: Txn, dp: str, action_id: str) -> bool:
        deleted = bool(txn.delete(_dp(dp) + action_id.encode(), db=self.db["catalog"]))
        if deleted:
            self._bump_catalog_version(txn, dp)
        return deleted
