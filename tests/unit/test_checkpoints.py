"""Checkpoints written off the serving thread: the file on the flush thread, the record on the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from policies.features import Candidate, FeatureGroup
from service.domain import DecisionPointConfig
from service.learning import models
from service.learning.loop import LearningLoop
from service.learning.models import now_ms
from service.plane import DecisionPlane, RankInput
from service.settings import Settings
from service.store.lmdb_store import Store


def offers(n: int) -> list[Candidate]:
    return [Candidate(f"o{k}", (FeatureGroup("offer", {"kind": f"k{k}"}),)) for k in range(n)]


def open_plane(path: Path) -> DecisionPlane:
    plane = DecisionPlane(Store(path / "lmdb"), path / "models")
    plane.load_all()
    return plane


def learn_some(plane: DecisionPlane, name: str, events: int) -> None:
    for _ in range(events):
        event = plane.rank(RankInput(name, offers(3), (FeatureGroup("user", {"tier": "gold"}),))).event_id
        plane.reward(name, event, 1.0)
    plane.close_windows(now_ms() + 1_000)
    while plane.learn_pending(100):
        pass


async def checkpoint_with_loop(plane: DecisionPlane, data_dir: Path) -> None:
    loop = LearningLoop(plane, Settings(data_dir=data_dir))
    try:
        await loop.checkpoint_all()
    finally:
        await loop.stop()


def test_a_checkpoint_written_on_the_flush_thread_is_what_a_restart_loads(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    plane.create_decision_point(DecisionPointConfig(name="dp", reward_wait_ms=100))
    learn_some(plane, "dp", 20)
    before = plane.states["dp"].policy.to_bytes()
    asyncio.run(checkpoint_with_loop(plane, tmp_path))
    state = plane.states["dp"]
    assert state.checkpoint_seq == state.applied_seq > 0 and plane.to_checkpoint() == []
    plane.close()
    plane.store.close()
    reopened = open_plane(tmp_path)
    assert len(reopened.states["dp"].backlog) == 0  # nothing left to replay
    assert reopened.states["dp"].policy.to_bytes() == before
    reopened.close()
    reopened.store.close()


def test_a_file_written_for_a_decision_point_deleted_meanwhile_is_not_recorded(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    plane.create_decision_point(DecisionPointConfig(name="dp", reward_wait_ms=100))
    learn_some(plane, "dp", 5)
    state = plane.states["dp"]
    copy = models.copy_model(state)
    sha = models.write_checkpoint_file(plane.models_dir, copy)
    plane.delete_decision_point("dp")
    assert plane.record_checkpoint(state, copy, sha) is False
    assert not copy.path(plane.models_dir).exists()
    plane.close()
    plane.store.close()
