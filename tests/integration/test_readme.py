"""The README tells the truth: its Python example runs, and it lists every setting."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service.settings import Settings
from tests.server import RunningServer

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_python_example_runs(server: RunningServer) -> None:
    code = re.search(r"From Python.*?```python\n(.*?)```", README, re.S)
    assert code is not None
    exec(code.group(1).replace("localhost:50051", f"127.0.0.1:{server.port}"), {})
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.ranks, stats.rewards) == (1, 1)


def test_readme_lists_every_setting() -> None:
    for field in fields(Settings):
        assert f"`KAIROS_{field.name.upper()}`" in README, field.name


def test_readme_rank_slots_example_runs(server: RunningServer) -> None:
    code = re.search(r"## Several slots at once.*?```python\n(.*?)```", README, re.S)
    assert code is not None
    scope: dict[str, object] = {}
    exec(code.group(1).replace("localhost:50051", f"127.0.0.1:{server.port}"), scope)
    shown = scope["shown"]
    assert isinstance(shown, dict) and sorted(shown) == ["footer", "hero", "sidebar"]
    assert len(set(shown.values())) == 3 and shown["footer"] != "fix-my-router"
    stats = server.admin.GetStats(apb.GetStatsRequest(decision_point="demo"))
    assert (stats.ranks, stats.rewards) == (1, 1)
