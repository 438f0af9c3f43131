"""`kairos import-profiles`: JSON Lines and CSV into the data directory, read back through GetProfile."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

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
    assert result.returncode == 1 and "profile 2" in result.stderr and "strings, numbers or booleans" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"subject_id": "a"}\nnot json\n')
    result = run_import(broken, tmp_path / "data")
    assert result.returncode == 1 and "line 2" in result.stderr
