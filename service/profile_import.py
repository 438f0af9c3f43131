"""Bulk import of profiles: ``kairos import-profiles FILE`` (JSON Lines or CSV), streamed in batches.

JSON Lines, one profile a line::

    {"subject_id": "c1", "features": {"user": {"tier": "gold", "age": 41}}, "update_time_ms": 1700000000000}

CSV, a header row naming ``subject_id`` and ``namespace.feature`` columns; empty cells are skipped,
``true``/``false`` become booleans and numbers numbers::

    subject_id,user.tier,user.age
    c1,gold,41

Each profile merges into the stored one as PutProfile does. Every batch is one LMDB transaction, so an
import can run next to a serving Kairos (LMDB allows writers in several processes, one at a time).
A bad line stops the import with its line number; the batches before it are committed.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from policies import profile as profiles
from policies.features import FeatureScalar
from service.customers import (
    MAX_PROFILE_BYTES,
    MAX_PROFILE_FEATURES,
    MAX_PROFILE_NAMESPACES,
    check_profile_groups,
    check_subject,
)
from service.errors import KairosError
from service.learning.models import now_ms
from service.store.lmdb_store import Store, Txn

Row = tuple[str, list[tuple[str, Mapping[str, FeatureScalar | None]]], int]


class ProfileImportError(ValueError):
    """A line that cannot be imported; the message names the line."""


def _json_rows(handle: IO[str], default_ms: int) -> Iterator[Row]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            subject = data["subject_id"]
            # Integers become floats; anything else that is not a scalar is refused by the validation after.
            groups: list[tuple[str, Mapping[str, FeatureScalar | None]]] = [
                (ns, {name: float(v) if type(v) is int else v for name, v in features.items()})
                for ns, features in data.get("features", {}).items()
            ]
            written = int(data.get("update_time_ms", default_ms))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ProfileImportError(f"line {number}: {err}") from None
        if not isinstance(subject, str):
            raise ProfileImportError(f"line {number}: subject_id must be a string")
        yield subject, groups, written


def _csv_cell(raw: str) -> FeatureScalar:
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return float(raw)
    except ValueError:
        return raw


def _csv_rows(handle: IO[str], default_ms: int) -> Iterator[Row]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or "subject_id" not in header:
        raise ProfileImportError("line 1: the CSV header must name a subject_id column")
    subject_at = header.index("subject_id")
    columns: list[tuple[int, str, str]] = []
    for index, name in enumerate(header):
        if index == subject_at:
            continue
        namespace, dot, feature = name.partition(".")
        if not dot or not namespace or not feature:
            raise ProfileImportError(f"line 1: column {name!r} must be namespace.feature")
        columns.append((index, namespace, feature))
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise ProfileImportError(f"line {number}: {len(row)} cells, the header has {len(header)}")
        groups: dict[str, dict[str, FeatureScalar | None]] = {}
        for index, namespace, feature in columns:
            if row[index] != "":
                groups.setdefault(namespace, {})[feature] = _csv_cell(row[index])
        yield row[subject_at], list(groups.items()), default_ms


def write_batch(store: Store, batch: list[Row]) -> None:
    def commit(txn: Txn) -> None:
        for subject, groups, written in batch:
            raw = store.get_subject(txn, "profiles", subject)
            if raw is None:  # a new subject: nothing to merge with
                merged = {ns: {n: (v, written) for n, v in f.items() if v is not None} for ns, f in groups if f}
            else:
                merged = profiles.merge(profiles.decode(raw), groups, written, False)
            if len(merged) > MAX_PROFILE_NAMESPACES or profiles.feature_count(merged) > MAX_PROFILE_FEATURES:
                raise ProfileImportError(
                    f"subject {subject[:80]!r}: a profile has at most {MAX_PROFILE_NAMESPACES} namespaces and "
                    f"{MAX_PROFILE_FEATURES} features"
                )
            encoded = profiles.encode(merged)
            if len(encoded) > MAX_PROFILE_BYTES:
                raise ProfileImportError(
                    f"subject {subject[:80]!r}: a profile takes at most {MAX_PROFILE_BYTES:,} bytes"
                )
            store.put_subject(txn, "profiles", subject, encoded)

    store.write(commit)


def run(
    path: Path, data_dir: Path, batch_size: int = 5000, progress: IO[str] = sys.stderr, map_size_mb: int = 1024
) -> int:
    """Import every profile of ``path``; returns how many. Progress goes to ``progress`` once a second."""
    store = Store(data_dir / "lmdb", map_size=map_size_mb << 20, owner=False)
    started = last_report = time.monotonic()
    done = 0
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = _csv_rows(handle, now_ms()) if path.suffix.lower() == ".csv" else _json_rows(handle, now_ms())
            batch: list[Row] = []
            for row in rows:
                try:
                    check_subject(row[0])
                    check_profile_groups(row[1])
                except KairosError as err:
                    raise ProfileImportError(f"profile {done + len(batch) + 1}: {err.message}") from None
                batch.append(row)
                if len(batch) >= batch_size:
                    write_batch(store, batch)
                    done += len(batch)
                    batch = []
                    if time.monotonic() - last_report >= 1.0:
                        last_report = time.monotonic()
                        rate = done / (last_report - started)
                        print(f"imported {done:,} profiles ({rate:,.0f}/s)", file=progress, flush=True)
            if batch:
                write_batch(store, batch)
                done += len(batch)
    finally:
        store.sync()
        store.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    print(f"imported {done:,} profiles in {elapsed:.1f} s ({done / elapsed:,.0f}/s)", file=progress, flush=True)
    return done
