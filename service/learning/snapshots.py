"""Model snapshots: how the learning process hands its models to serving workers.

The learner saves each decision point's model to ``snapshots/NAME/`` whenever
it has learned something (at most every ``PUBLISH_INTERVAL_S``) and records
the newest file in LMDB; workers poll that record and load new files. Snapshots
are not checkpoints: they are not fsynced and only the newest few are kept.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from service.learning.models import ModelState
from service.store.lmdb_store import Store, Txn

PUBLISH_INTERVAL_S = 1.0
KEPT = 3  # a worker may still be reading the previous file


@dataclass(frozen=True)
class SnapshotMeta:
    file: str
    generation: int
    learned: int


def _key(name: str) -> bytes:
    return b"snapshot:" + name.encode()


def read(store: Store, txn: Txn, name: str) -> SnapshotMeta | None:
    raw = store.get_meta(txn, _key(name))
    return None if raw is None else SnapshotMeta(**json.loads(raw))


def publish(store: Store, snapshots_dir: Path, state: ModelState) -> SnapshotMeta:
    folder = snapshots_dir / state.name
    meta = SnapshotMeta(
        file=f"{state.record.generation:06d}-{state.learned:012d}.vw",
        generation=state.record.generation,
        learned=state.learned,
    )
    state.policy.save(folder / meta.file, durable=False)
    store.write(lambda txn: store.put_meta(txn, _key(state.name), json.dumps(asdict(meta)).encode()))
    for old in sorted(folder.glob("*.vw"))[:-KEPT]:
        old.unlink(missing_ok=True)
    return meta


def is_current(meta: SnapshotMeta | None, state: ModelState) -> bool:
    return meta is not None and (meta.generation, meta.learned) == (state.record.generation, state.learned)
