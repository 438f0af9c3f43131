"""A serving worker's copy of the decision points: records from LMDB, models from published snapshots.

The learning process owns every decision point; a worker only follows. It
reloads the records when their version in LMDB changes, and swaps in a model
whenever a newer snapshot of the same generation is published. Its namespace
tables are frozen: a Rank with a namespace the owner has not indexed yet goes
to the learning process instead (see service.grpc.forwarding).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import structlog

from policies.vw import PolicyError, VWPolicy
from service.domain import DecisionPointRecord
from service.learning import snapshots
from service.learning.models import ModelState
from service.plane import DecisionPlane

log = structlog.get_logger(__name__)


class Replica:
    def __init__(self, plane: DecisionPlane, snapshots_dir: Path) -> None:
        self.plane = plane
        self.snapshots_dir = snapshots_dir
        self._version = -1
        self._loaded: dict[str, str] = {}  # decision point -> snapshot file in use

    def refresh(self) -> None:
        store = self.plane.store
        with store.read() as txn:
            version = store.decision_points_version(txn)
            records = store.load_decision_points(txn) if version != self._version else None
            metas = {name: snapshots.read(store, txn, name) for name in (records or self.plane.states)}
        if records is not None:
            self._follow_records(records)
            self._version = version
        for name, meta in metas.items():
            state = self.plane.states.get(name)
            if state is None or meta is None or meta.generation != state.record.generation:
                continue
            if self._loaded.get(name) != meta.file:
                self._load(state, meta)

    def _follow_records(self, records: dict[str, DecisionPointRecord]) -> None:
        for name in set(self.plane.states) - set(records):
            self.plane.states.pop(name).policy.close()
            self._loaded.pop(name, None)
        for name, raw in records.items():
            record = replace(raw, namespaces=raw.namespaces.copy(frozen=True))
            state = self.plane.states.get(name)
            args = record.vw_args()
            if state is None or state.record.generation != record.generation:
                # A new decision point or model generation: untrained until its first snapshot arrives.
                if state is not None:
                    state.policy.close()
                # A new decision point's model is untrained in the learning process too: rank with it. A
                # later generation may start from an imported or rolled-back model: until its snapshot
                # arrives, Rank answers with the fallback ranking rather than from an untrained model.
                self.plane.states[name] = ModelState(
                    record=record, policy=VWPolicy(args), applied_seq=0, next_seq=0, loaded=record.generation == 1
                )
                self._loaded.pop(name, None)
                continue
            if state.policy.args != args:
                # Same generation, new options of the same shape: reload the current snapshot under them.
                self._loaded.pop(name, None)
            state.record = record

    def _load(self, state: ModelState, meta: snapshots.SnapshotMeta) -> None:
        path = self.snapshots_dir / state.name / meta.file
        try:
            policy = VWPolicy(state.vw_args(), model=path.read_bytes())
        except (OSError, PolicyError) as err:  # replaced meanwhile by a newer one: the next refresh gets it
            log.info("snapshot_skipped", decision_point=state.name, file=meta.file, error=str(err))
            return
        state.policy.close()
        state.policy = policy
        state.learned = meta.learned
        state.loaded = True
        self._loaded[state.name] = meta.file
