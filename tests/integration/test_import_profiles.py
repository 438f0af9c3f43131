"""`kairos import-profiles`: JSON Lines and CSV into the data directory, read back through GetProfile."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service._pb.kairos.v1 import feature_service_pb2 as fpb
from tests.server import RunningServer


def run_import(path: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "import-profiles",
            str(path),
            "--data-dir",
            str(data_dir),
            "--batch-size",
            "7",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_import_json_lines_and_csv_then_serve(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    lines = tmp_path / "profiles.jsonl"
    lines.write_text(
        "\n".join(
            json.dumps(
                {"subject_id": f"c{i}", "features": {"user": {"tier": "gold", "age": 20 + i, "vip": i % 2 == 0}}}
            )
            for i in range(50)
        )
        + "\n"
    )
    table = tmp_path / "extra.csv"
    table.write_text("subject_id,crm.churn,crm.segment\nc1,0.25,young\nc2,,old\n")
    server = make_server()
    first = run_import(lines, server.data_dir)
    assert first.returncode == 0, first.stderr
    assert "imported 50 profiles" in first.stderr
    second = run_import(table, server.data_dir)
    assert second.returncode == 0 and "imported 2 profiles" in second.stderr

    server.start()
    profile = server.features.GetProfile(fpb.GetProfileRequest(subject_id="c1"))
    groups = {g.namespace: g for g in profile.features}
    assert groups["user"].features["age"].number_value == 21.0 and groups["user"].features["vip"].bool_value is False
    assert (
        groups["crm"].features["churn"].number_value == 0.25
        and groups["crm"].features["segment"].string_value == "young"
    )
    crm2 = next(
        g for g in server.features.GetProfile(fpb.GetProfileRequest(subject_id="c2")).features if g.namespace == "crm"
    )
    assert set(crm2.features) == {"segment"}  # empty cells are skipped
    assert server.stop() == 0


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"subject_id": "a", "features": {"user": {"x": 1}}}\n{"subject_id": "b", "features": {"user": {"x": [1]}}}\n'
    )
    result = run_import(bad, tmp_path / "data")
    assert result.returncode == 1 and "line 2" in result.stderr and "strings, numbers or booleans" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"subject_id": "a"}\nnot json\n')
    result = run_import(broken, tmp_path / "data")
    assert result.returncode == 1 and "line 2" in result.stderr


def _stored_profiles(data_dir: Path) -> dict[str, object]:
    from policies import profile as profiles
    from service.store.lmdb_store import Store

    store = Store(data_dir / "lmdb", map_size=64 << 20, owner=False)
    try:
        with store.read() as txn:
            raws = {subject: store.get_subject(txn, "profiles", subject) for subject in "abcde"}
        return {subject: None if raw is None else profiles.decode(raw) for subject, raw in raws.items()}
    finally:
        store.close()


@pytest.mark.parametrize("jobs", [1, 2])
def test_parallel_import_writes_what_one_process_writes(tmp_path: Path, jobs: int) -> None:
    from service import profile_import

    first = tmp_path / "first.jsonl"
    first.write_text(
        "\n".join(
            json.dumps({"subject_id": s, "features": {"user": {"x": i, "y": "old"}}, "update_time_ms": 1000})
            for i, s in enumerate("abc")
        )
        + "\n"
    )
    lines = [
        {"subject_id": "a", "features": {"user": {"x": 10}}, "update_time_ms": 2000},  # merges into a
        {"subject_id": "b", "features": {"user": {"y": None}}, "update_time_ms": 2000},  # removes b's y
        {"subject_id": "d", "features": {"crm": {"z": True}}, "update_time_ms": 2000},  # new
        {"subject_id": "d", "features": {"crm": {"z": False}}, "update_time_ms": 3000},  # later line wins
        {"subject_id": "e", "features": {"user": {"only": None}}, "update_time_ms": 2000},  # nothing to keep
    ]
    second = tmp_path / "second.jsonl"
    second.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    data = tmp_path / "data"
    for path in (first, second):
        assert profile_import.run(path, data, batch_size=2, progress=io.StringIO(), jobs=jobs) > 0
    assert _stored_profiles(data) == {
        "a": {"user": {"x": (10.0, 2000), "y": ("old", 1000)}},
        "b": {"user": {"x": (1.0, 1000)}},
        "c": {"user": {"x": (2.0, 1000), "y": ("old", 1000)}},
        "d": {"crm": {"z": (False, 3000)}},
        "e": {},
    }


def test_parallel_import_stops_at_the_bad_line_after_writing_the_lines_before(tmp_path: Path) -> None:
    from service import profile_import

    path = tmp_path / "p.csv"
    # A quoted cell spans two lines: line numbers are the file's, not the row count.
    path.write_text('subject_id,user.note\na,"two\nlines"\nb,fine\nc,ok\n,missing\nd,never\n')
    with pytest.raises(profile_import.ProfileImportError, match="line 6: subject_id is required"):
        profile_import.run(path, tmp_path / "data", batch_size=2, progress=io.StringIO(), jobs=2)
    stored = _stored_profiles(tmp_path / "data")
    assert stored["a"] is not None and stored["b"] is not None and stored["c"] is not None
    assert stored["d"] is None
