"""The data directory's format version: refuse newer ones, migrate older ones after backing them up.

``Store`` reads the recorded format (0 for a directory made before it was recorded) and refuses one
newer than this build. Before migrating an older one, a full copy goes to ``DATA_DIR/backups/``, so the
previous Kairos version can be pointed at it (``--data-dir DATA_DIR/backups/format-0-...``) if the
upgrade has to be rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import structlog

from service.backup import BackupError, copy_environment
from service.store.lmdb_store import FORMAT_VERSION, DataDirError, Store

log = structlog.get_logger(__name__)


def _record_format(store: Store) -> None:
    """0 -> 1: the layout did not change; the directory only starts recording its format."""


# MIGRATIONS[n] turns format n into n + 1.
MIGRATIONS: dict[int, Callable[[Store], None]] = {0: _record_format}


def prepare(store: Store, data_dir: Path) -> Path | None:
    """Bring an older directory to FORMAT_VERSION; returns where its backup went (None: nothing to do)."""
    found = store.format_found
    if found >= FORMAT_VERSION:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    destination = data_dir / "backups" / f"format-{found}-{stamp}"
    try:
        report = copy_environment(store.env, data_dir / "models", destination)
    except (BackupError, OSError, lmdb.Error) as err:
        raise DataDirError(
            f"the data directory has the older format {found}; it is migrated only after a backup, and the "
            f"backup to {destination} failed ({err}); free some space and start again"
        ) from None
    log.warning(
        "data_dir_migrating",
        from_format=found,
        to_format=FORMAT_VERSION,
        backup=str(destination),
        backup_bytes=report.bytes,
    )
    for version in range(found, FORMAT_VERSION):
        MIGRATIONS[version](store)
    store.set_format(FORMAT_VERSION)
    store.format_found = FORMAT_VERSION
    log.info("data_dir_migrated", format=FORMAT_VERSION)
    return destination
