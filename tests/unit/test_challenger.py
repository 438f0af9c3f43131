"""Challengers in the decision plane, without a transport: real LMDB and VW in a temp directory."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.features import Candidate, FeatureGroup
from policies.learner_options import Explorer, LearnerOptions
from service.domain import DecisionPointConfig
from service.errors import Code, KairosError
from service.learning import challenger as challengers
from service.plane import DecisionPlane, RankInput
from service.store.lmdb_store import Store

ACTIONS = [Candidate(a, (FeatureGroup("offer", {"kind": a}),)) for a in ("x", "y", "z")]
BEST = {"a": "x", "b": "y"}
UNIFORM = LearnerOptions(explorer=Explorer(kind="epsilon_greedy", epsilon=1.0))
GREEDY = LearnerOptions(explorer=Explorer(kind="epsilon_greedy", epsilon=0.05))


def open_plane(path: Path) -> DecisionPlane:
    plane = DecisionPlane(Store(path / "lmdb"), path / "models")
    plane.load_all()
    return plane


def close(plane: DecisionPlane) -> None:
    plane.close()
    plane.store.close()


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[DecisionPlane]:
    opened = open_plane(tmp_path)
    opened.create_decision_point(DecisionPointConfig(name="dp", learner=UNIFORM, challenger=GREEDY))
    yield opened
    close(opened)


def traffic(plane: DecisionPlane, n: int, seed: int = 0, learn: bool = True) -> None:
    """Ranks with a clear preference per segment, each rewarded 1 for the preferred action, else 0."""
    rng = random.Random(seed)
    for _ in range(n):
        segment = rng.choice("ab")
        out = plane.rank(RankInput("dp", ACTIONS, (FeatureGroup("user", {"segment": segment}),)))
        plane.reward("dp", out.event_id, 1.0 if out.ranking[0][0] == BEST[segment] else 0.0)
    if learn:
        plane.learn_pending(10 * n)


def test_a_better_challenger_gets_a_higher_estimate(plane: DecisionPlane) -> None:
    traffic(plane, 300)
    stats = plane.stats("dp")
    assert stats.challenger is not None
    report = stats.challenger.report
    assert report.events == stats.learned == 300
    assert report.champion.value == pytest.approx(stats.average_reward)
    assert 0.2 < report.champion.value < 0.45  # uniform over three actions
    assert report.ips.value > report.champion.value + 0.3
    assert report.snips.value > report.champion.value + 0.3
    assert report.snips.low > report.champion.high  # clear enough to be sure
    assert stats.challenger.model_version == "challenger-1.300"


def test_checkpoint_and_reload_neither_miss_nor_double_learn(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    plane.create_decision_point(DecisionPointConfig(name="dp", learner=UNIFORM, challenger=GREEDY))
    traffic(plane, 60, seed=1)
    plane.checkpoint_all()
    traffic(plane, 40, seed=2)  # journaled after the checkpoint: replayed into both at the next start
    state = plane.states["dp"]
    assert state.challenger is not None
    model, value = state.challenger.policy.to_bytes(), state.challenger.value
    plane.store.close()  # as after kill -9: no final checkpoint

    again = open_plane(tmp_path)
    again.learn_pending(1000)
    running = again.states["dp"].challenger
    assert running is not None
    assert running.value == value and running.learned == 100
    assert running.policy.to_bytes() == model
    close(again)


def test_a_lagging_challenger_catches_up_from_its_older_checkpoint(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    plane.create_decision_point(DecisionPointConfig(name="dp", learner=UNIFORM, challenger=GREEDY))
    traffic(plane, 30, seed=1)
    plane.checkpoint_all()
    traffic(plane, 30, seed=2)
    plane.checkpoint_all()
    state = plane.states["dp"]
    assert state.challenger is not None
    model, value = state.challenger.policy.to_bytes(), state.challenger.value
    close(plane)

    folder = tmp_path / "models" / "dp" / challengers.FOLDER
    newest = sorted(folder.glob("*.vw"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # a torn write of the newest challenger checkpoint
    again = open_plane(tmp_path)
    running = again.states["dp"].challenger
    assert running is not None and running.applied_seq == again.states["dp"].applied_seq
    assert running.value == value and running.policy.to_bytes() == model
    close(again)


def test_set_change_clear_and_restart(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    plane.create_decision_point(DecisionPointConfig(name="dp", learner=UNIFORM))
    traffic(plane, 10)
    assert plane.stats("dp").challenger is None
    config = plane.get_decision_point("dp").config
    plane.update_decision_point(config.with_changes(challenger=GREEDY))
    traffic(plane, 10)
    stats = plane.stats("dp").challenger
    assert stats is not None and stats.report.events == 10  # only what came after it started
    plane.update_decision_point(plane.get_decision_point("dp").config)  # unchanged: keeps learning
    assert plane.states["dp"].challenger is not None and plane.states["dp"].challenger.learned == 10
    other = LearnerOptions(explorer=Explorer(kind="square_cb"))
    plane.update_decision_point(config.with_changes(challenger=other))
    fresh = plane.stats("dp").challenger
    assert fresh is not None and fresh.report.events == 0 and fresh.model_version == "challenger-2.0"
    traffic(plane, 5)
    plane.checkpoint_all()
    close(plane)

    again = open_plane(tmp_path)
    kept = again.stats("dp").challenger
    assert kept is not None and kept.learner == other and kept.report.events == 5
    again.update_decision_point(again.get_decision_point("dp").config.with_changes(challenger=None))
    assert again.stats("dp").challenger is None
    assert not (tmp_path / "models" / "dp" / challengers.FOLDER).exists()
    close(again)
    assert open_plane(tmp_path).states["dp"].challenger is None


def test_promote_swaps_the_challenger_in(plane: DecisionPlane) -> None:
    traffic(plane, 300)
    before = plane.states["dp"]
    assert before.challenger is not None
    learned_model = before.challenger.policy.to_bytes()
    record = plane.promote_challenger("dp")
    assert record.config.learner == GREEDY and record.config.challenger is None
    assert record.generation == 2 and plane.model_version("dp") == "2.300"
    assert plane.export_model("dp")[0] == learned_model
    assert plane.stats("dp").challenger is None
    shown = [
        plane.rank(RankInput("dp", ACTIONS, (FeatureGroup("user", {"segment": s}),))).ranking[0][0] == BEST[s]
        for s in "ab" * 25
    ]
    assert sum(shown) >= 40
    with pytest.raises(KairosError) as raised:
        plane.promote_challenger("dp")
    assert raised.value.code == Code.FAILED_PRECONDITION and raised.value.reason == "NO_CHALLENGER"


@pytest.mark.parametrize(
    "bad",
    [
        LearnerOptions(bits=40),
        LearnerOptions(learning_rate=-1.0),
        LearnerOptions(interactions=("user",)),
        LearnerOptions(explorer=Explorer(kind="epsilon_greedy", epsilon=2.0)),
    ],
)
def test_bad_challenger_options_are_refused_and_change_nothing(plane: DecisionPlane, bad: LearnerOptions) -> None:
    config = plane.get_decision_point("dp").config
    with pytest.raises(KairosError) as raised:
        plane.update_decision_point(config.with_changes(challenger=bad, default_reward=0.5))
    assert raised.value.code == Code.INVALID_ARGUMENT and raised.value.reason == "INVALID_CHALLENGER"
    assert plane.get_decision_point("dp").config == config
    with pytest.raises(KairosError):
        plane.create_decision_point(DecisionPointConfig(name="other", challenger=bad))
    assert "other" not in plane.states


def test_follows_new_namespaces_and_champion_resets(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    plane.create_decision_point(DecisionPointConfig(name="dp", learner=UNIFORM, challenger=GREEDY))
    traffic(plane, 20, seed=1)
    plane.checkpoint_all()
    for k in range(10):  # a context namespace the table has not seen: both models reload under it
        context = (FeatureGroup("user", {"segment": "a"}), FeatureGroup("device", {"kind": f"d{k % 2}"}))
        out = plane.rank(RankInput("dp", ACTIONS, context))
        plane.reward("dp", out.event_id, 1.0)
    plane.learn_pending(100)
    state = plane.states["dp"]
    assert state.challenger is not None
    assert state.challenger.policy.args == GREEDY.vw_args(state.record.namespaces) != state.policy.args
    plane.reset_model("dp")  # the champion starts again; the challenger keeps learning
    traffic(plane, 10, seed=3)
    assert state.challenger.learned == 40 and state.learned == 10
    model, value = state.challenger.policy.to_bytes(), state.challenger.value
    plane.store.close()

    again = open_plane(tmp_path)
    again.learn_pending(1000)
    running = again.states["dp"].challenger
    assert running is not None and running.learned == 40 and running.value == value
    assert running.policy.to_bytes() == model
    close(again)
