"""The audit log of administrative changes: who, what, when, before and after.

Each change is stored in LMDB (readable through AdminService.ListAuditRecords) and logged by the
``kairos.audit`` logger. Records are written right after the change commits, in their own transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from service.store.lmdb_store import Store

log = structlog.get_logger("kairos.audit")
MAX_PAGE = 1000


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time_ms: int
    actor: str
    """The token name of the caller ("anonymous" when authentication is off; "config-file" at start)."""
    peer: str
    action: str
    """The administrative method, for example UpdateDecisionPoint."""
    target: str
    """The decision point changed."""
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> AuditRecord:
        return cls(**json.loads(raw))


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self,
        actor: str,
        peer: str,
        action: str,
        target: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> AuditRecord:
        now = int(time.time() * 1000)
        made: list[AuditRecord] = []

        def make(seq: int) -> bytes:
            made.append(AuditRecord(seq, now, actor, peer, action, target, before, after))
            return made[-1].encode()

        self.store.write(lambda txn: self.store.append_audit(txn, make))
        record = made[-1]
        log.info(
            "audit",
            seq=record.seq,
            actor=actor,
            peer=peer,
            action=action,
            target=target,
            before=before,
            after=after,
        )
        return record

    def page(self, page_size: int, after_seq: int) -> tuple[list[AuditRecord], int | None]:
        """Records after ``after_seq``, oldest first, and the sequence number to continue after (None
        at the end)."""
        size = max(1, min(page_size, MAX_PAGE))
        with self.store.read() as txn:
            raw = self.store.audit_after(txn, after_seq, size + 1)
        records = [AuditRecord.decode(item) for item in raw[:size]]
        return records, records[-1].seq if len(raw) > size else None
