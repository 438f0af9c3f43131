"""Consistent copies of a data directory: `kairos backup` (hot, while a server runs) and the copy taken
before a format migration.

A copy is the LMDB environment (``Environment.copy`` takes a consistent snapshot, also while another
process writes) plus the checkpoint files that snapshot refers to. Checkpoints are written before they
are recorded in LMDB and deleted only after a newer one is recorded, so: copy the files present now,
then the LMDB snapshot, then any file the snapshot refers to that appeared meanwhile; finally check
every referenced file against its recorded SHA-256 (and start over in the rare case that the server
pruned one in between).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import lmdb
import structlog

from service.learning import challenger as challengers
from service.store.lmdb_store import CheckpointMeta, Store

log = structlog.get_logger(__name__)
ATTEMPTS = 3


class BackupError(RuntimeError):
    """The copy could not be made; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    destination: Path
    decision_points: int
    checkpoints: int
    bytes: int


def backup(data_dir: Path, destination: Path) -> BackupReport:
    """Copy ``data_dir`` to ``destination`` (which must not exist, or be empty) while it may be in use."""
    source = data_dir / "lmdb"
    if not (source / "data.mdb").exists():
        raise BackupError(f"{data_dir} is not a Kairos data directory (no lmdb/data.mdb)")
    store = Store(source, readonly=True)
    try:
        return copy_environment(store.env, data_dir / "models", destination)
    finally:
        store.close()


def copy_environment(env: lmdb.Environment, models_dir: Path, destination: Path) -> BackupReport:
    """The copy itself, from an open environment (the server's own, or a read-only one)."""
    if destination.exists() and any(destination.iterdir()):
        raise BackupError(f"{destination} exists and is not empty; choose a new directory")
    for _attempt in range(ATTEMPTS):
        shutil.rmtree(destination, ignore_errors=True)
        (destination / "lmdb").mkdir(parents=True)
        _copy_files(models_dir, destination / "models", None)
        env.copy(str(destination / "lmdb"), compact=True)
        referenced = _referenced(destination / "lmdb")
        _copy_files(models_dir, destination / "models", referenced)
        if all(_intact(destination / "models", name, meta) for name, meta in referenced):
            _drop_unreferenced(destination / "models", referenced)
            size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
            return BackupReport(destination, _decision_points(destination / "lmdb"), len(referenced), size)
        log.info("backup_retry", reason="a checkpoint was replaced during the copy")
    raise BackupError(f"the checkpoints kept changing during {ATTEMPTS} attempts; try again")


def _referenced(lmdb_dir: Path) -> list[tuple[str, CheckpointMeta]]:
    store = Store(lmdb_dir, readonly=True)
    try:
        with store.read() as txn:
            names = list(store.load_decision_points(txn))
            champions = [(name, meta) for name in names for meta in store.all_checkpoints(txn, name)]
            return champions + [
                (name, meta) for name in names for meta in challengers.checkpoint_metas(store, txn, name)
            ]
    finally:
        store.close()


def _decision_points(lmdb_dir: Path) -> int:
    store = Store(lmdb_dir, readonly=True)
    try:
        with store.read() as txn:
            return len(store.load_decision_points(txn))
    finally:
        store.close()


def _copy_files(models_dir: Path, target: Path, only: list[tuple[str, CheckpointMeta]] | None) -> None:
    wanted = (
        [models_dir / name / meta.file for name, meta in only]
        if only is not None
        else [p for p in _model_files(models_dir) if not p.name.startswith(".tmp-")]
    )
    for path in wanted:
        copy = target / path.relative_to(models_dir)
        if copy.exists():
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile: the LMDB snapshot decides
            shutil.copyfile(path, copy)


def _intact(models_dir: Path, name: str, meta: CheckpointMeta) -> bool:
    path = models_dir / name / meta.file
    return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == meta.sha256


def _drop_unreferenced(models_dir: Path, referenced: list[tuple[str, CheckpointMeta]]) -> None:
    keep = {models_dir / name / meta.file for name, meta in referenced}
    for path in _model_files(models_dir):
        if path not in keep:
            path.unlink()


def _model_files(models_dir: Path) -> list[Path]:
    """Champion checkpoints (NAME/*.vw) and challenger checkpoints (NAME/challenger/*.vw)."""
    return [*models_dir.glob("*/*.vw"), *models_dir.glob(f"*/{challengers.FOLDER}/*.vw")]
