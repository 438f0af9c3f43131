"""Bulk import of profiles: ``kairos import-profiles FILE`` (JSON Lines or CSV), streamed in batches.

JSON Lines, one profile a line::

    {"subject_id": "c1", "features": {"user": {"tier": "gold", "age": 41}}, "update_time_ms": 1700000000000}

CSV, a header row naming ``subject_id`` and ``namespace.feature`` columns; empty cells are skipped,
``true``/``false`` become booleans and numbers numbers::

    subject_id,user.tier,user.age
    c1,gold,41

Each profile merges into the stored one as PutProfile does. Every batch is one LMDB transaction, so an
import can run next to a serving Kairos (LMDB allows writers in several processes, one at a time).
A bad line stops the import with its line number; the profiles before it are committed.

Parsing, validating and encoding a profile costs ~40 us of Python, writing it to LMDB a few: with
``jobs`` > 1 worker processes prepare batches (parse, check, encode as a new subject's profile) while
this process writes them in file order, merging into the profiles that already exist.
"""

from __future__ import annotations

import csv
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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


class ProfileImportError(ValueError):
    """A line that cannot be imported; the message names the line."""


Groups = Sequence[tuple[str, Mapping[str, FeatureScalar | None]]]
Row = tuple[str, Groups, int]  # subject, feature groups (None removes a feature), update time in ms
CsvColumns = list[tuple[int, str, str]]  # cell index, namespace, feature


@dataclass
class Prepared:
    """A batch made ready to write: per profile the subject, its encoding as a new subject's profile (with
    the update time of each feature) and the features it removes (None values: the encoding cannot hold
    them)."""

    profiles: list[tuple[str, bytes, list[tuple[str, str]]]] = field(default_factory=list)
    error: str | None = None  # the first bad line of the batch: the profiles before it are still written


def _json_row(line: str, default_ms: int) -> Row:
    try:
        data = json.loads(line)
        subject = data["subject_id"]
        # Integers become floats; anything else that is not a scalar is refused by the validation after.
        groups: Groups = [
            (ns, {name: float(v) if type(v) is int else v for name, v in features.items()})
            for ns, features in data.get("features", {}).items()
        ]
        written = int(data.get("update_time_ms", default_ms))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ProfileImportError(str(err)) from None
    if not isinstance(subject, str):
        raise ProfileImportError("subject_id must be a string")
    return subject, groups, written


def csv_cell(raw: str) -> FeatureScalar:
    """A CSV cell as a feature value: ``true``/``false`` booleans, numbers numbers, anything else a string."""
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return float(raw)
    except ValueError:
        return raw


def _csv_columns(header: list[str] | None) -> tuple[int, CsvColumns]:
    if header is None or "subject_id" not in header:
        raise ProfileImportError("line 1: the CSV header must name a subject_id column")
    subject_at = header.index("subject_id")
    columns: CsvColumns = []
    for index, name in enumerate(header):
        if index == subject_at:
            continue
        namespace, dot, feature = name.partition(".")
        if not dot or not namespace or not feature:
            raise ProfileImportError(f"line 1: column {name!r} must be namespace.feature")
        columns.append((index, namespace, feature))
    return subject_at, columns


def _csv_row(cells: list[str], width: int, subject_at: int, columns: CsvColumns, default_ms: int) -> Row:
    if len(cells) != width:
        raise ProfileImportError(f"{len(cells)} cells, the header has {width}")
    groups: dict[str, dict[str, FeatureScalar | None]] = {}
    for index, namespace, feature in columns:
        if cells[index] != "":
            groups.setdefault(namespace, {})[feature] = csv_cell(cells[index])
    return cells[subject_at], list(groups.items()), default_ms


def _check_size(subject: str, stored: profiles.Stored) -> bytes:
    if len(stored) > MAX_PROFILE_NAMESPACES or profiles.feature_count(stored) > MAX_PROFILE_FEATURES:
        raise ProfileImportError(
            f"subject {subject[:80]!r}: a profile has at most {MAX_PROFILE_NAMESPACES} namespaces and "
            f"{MAX_PROFILE_FEATURES} features"
        )
    encoded = profiles.encode(stored)
    if len(encoded) > MAX_PROFILE_BYTES:
        raise ProfileImportError(f"subject {subject[:80]!r}: a profile takes at most {MAX_PROFILE_BYTES:,} bytes")
    return encoded


def _as_new_profile(subject: str, groups: Groups, written: int) -> tuple[str, bytes, list[tuple[str, str]]]:
    stored = {ns: {n: (v, written) for n, v in f.items() if v is not None} for ns, f in groups}
    removed = [(ns, n) for ns, f in groups for n, v in f.items() if v is None]
    return subject, _check_size(subject, {ns: f for ns, f in stored.items() if f}), removed


@dataclass(frozen=True)
class Batch:
    """Raw records with the line number of each: JSON Lines text, or CSV cells."""

    lines: list[tuple[int, str | list[str]]]
    default_ms: int
    csv: tuple[int, int, CsvColumns] | None = None  # header width, subject column, feature columns


def prepare(batch: Batch) -> Prepared:
    """Parse, check and encode one batch (in a worker process when jobs > 1): no storage involved."""
    prepared = Prepared()
    for number, record in batch.lines:
        try:
            if batch.csv is None:
                assert isinstance(record, str)
                subject, groups, written = _json_row(record, batch.default_ms)
            else:
                assert isinstance(record, list)
                subject, groups, written = _csv_row(record, *batch.csv, batch.default_ms)
            check_subject(subject)
            check_profile_groups(groups)
            prepared.profiles.append(_as_new_profile(subject, groups, written))
        except (ProfileImportError, KairosError) as err:
            message = err.message if isinstance(err, KairosError) else str(err)
            prepared.error = f"line {number}: {message}"
            return prepared
    return prepared


def write_prepared(store: Store, prepared: Prepared) -> None:
    """One transaction: new subjects take the prepared encoding as it is, others merge into what is stored."""

    def commit(txn: Txn) -> None:
        for subject, encoded, removed in prepared.profiles:
            raw = store.get_subject(txn, "profiles", subject)
            if raw is not None:
                merged = profiles.decode(raw)
                for namespace, features in profiles.decode(encoded).items():
                    merged.setdefault(namespace, {}).update(features)
                for namespace, name in removed:
                    merged.get(namespace, {}).pop(name, None)
                encoded = _check_size(subject, {ns: f for ns, f in merged.items() if f})
            store.put_subject(txn, "profiles", subject, encoded)

    store.write(commit)


def write_batch(store: Store, batch: Sequence[Row]) -> None:
    """Write already parsed rows (benchmarks and tests build them in memory); checks as the import does."""
    prepared = Prepared([_as_new_profile(subject, groups, written) for subject, groups, written in batch])
    write_prepared(store, prepared)


def _batches(handle: IO[str], is_csv: bool, size: int, default_ms: int) -> Iterator[Batch]:
    if is_csv:
        reader = csv.reader(handle)
        header = next(reader, None)
        subject_at, columns = _csv_columns(header)
        assert header is not None
        layout = (len(header), subject_at, columns)

        def numbered_rows() -> Iterator[tuple[int, str | list[str]]]:
            for cells in reader:
                yield reader.line_num, cells

        records: Iterator[tuple[int, str | list[str]]] = numbered_rows()
    else:
        layout = None
        records = ((n, line) for n, line in enumerate(handle, start=1) if line.strip())
    while chunk := list(itertools.islice(records, size)):
        yield Batch(chunk, default_ms, layout)


def _prepared(batches: Iterable[Batch], jobs: int) -> Iterator[Prepared]:
    if jobs <= 1:
        yield from map(prepare, batches)
        return
    # fork: the workers need nothing but this module; spawn would re-import the world per worker.
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap(prepare, batches)  # in file order, so later lines win as they would in one process


def default_jobs() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0))))


def run(
    path: Path,
    data_dir: Path,
    batch_size: int = 5000,
    progress: IO[str] = sys.stderr,
    map_size_mb: int = 1024,
    jobs: int = 1,
) -> int:
    """Import every profile of ``path``; returns how many. Progress goes to ``progress`` once a second."""
    store = Store(data_dir / "lmdb", map_size=map_size_mb << 20, owner=False)
    started = last_report = time.monotonic()
    done = 0
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            batches = _batches(handle, path.suffix.lower() == ".csv", batch_size, now_ms())
            for prepared in _prepared(batches, jobs):
                write_prepared(store, prepared)
                done += len(prepared.profiles)
                if prepared.error is not None:
                    raise ProfileImportError(prepared.error)
                if time.monotonic() - last_report >= 1.0:
                    last_report = time.monotonic()
                    rate = done / (last_report - started)
                    print(f"imported {done:,} profiles ({rate:,.0f}/s)", file=progress, flush=True)
    finally:
        store.sync()
        store.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    print(f"imported {done:,} profiles in {elapsed:.1f} s ({done / elapsed:,.0f}/s)", file=progress, flush=True)
    return done
