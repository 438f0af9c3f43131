"""Learning modes and holdout in the decision plane, without a transport: real LMDB and VW."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.features import Candidate, FeatureGroup
from service.domain import SERVED_APPRENTICE, Decision, DecisionPointConfig
from service.errors import Code, KairosError
from service.offline.export import export
from service.plane import DecisionPlane, RankInput
from service.store.lmdb_store import Store

PREFERRED = {"gold": "o1", "silver": "o2"}


def offers(n: int = 3) -> list[Candidate]:
    return [Candidate(f"o{k}", (FeatureGroup("offer", {"kind": f"k{k}"}),)) for k in range(n)]


def open_plane(path: Path) -> DecisionPlane:
    plane = DecisionPlane(Store(path / "lmdb"), path / "models")
    plane.load_all()
    return plane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[DecisionPlane]:
    opened = open_plane(tmp_path)
    yield opened
    opened.close()
    opened.store.close()


def create(plane: DecisionPlane, **changes: object) -> None:
    plane.create_decision_point(DecisionPointConfig(name="dp", reward_min=0.0, reward_max=1.0).with_changes(**changes))


def teach(plane: DecisionPlane, events: int, seed: int = 7) -> list[str]:
    """Ranks with a random baseline, rewarded 1 when the baseline is the segment's preferred offer."""
    rng = random.Random(seed)
    served = []
    for i in range(events):
        segment = rng.choice(sorted(PREFERRED))
        baseline = rng.choice(["o0", "o1", "o2"])
        out = plane.rank(
            RankInput("dp", offers(), (FeatureGroup("user", {"segment": segment}),), baseline_action_id=baseline)
        )
        served.append(out.ranking[0][0])
        plane.reward("dp", out.event_id, 1.0 if out.ranking[0][0] == PREFERRED[segment] else 0.0)
        if i % 20 == 0:
            plane.learn_pending(1000)
    plane.learn_pending(10_000)
    return served


def test_apprentice_serves_the_baseline_logs_both_policies_and_learns(plane: DecisionPlane) -> None:
    create(plane, learning_mode="apprentice")
    out = plane.rank(RankInput("dp", offers(), baseline_action_id="o2", event_id="e1"))
    assert out.ranking[0] == ("o2", 1.0)
    assert [p for _, p in out.ranking[1:]] == [0.0, 0.0]
    assert out.served_by == SERVED_APPRENTICE and out.model_version == "1.0"
    with plane.store.read() as txn:
        decision = plane.store.get_decision(txn, "dp", "e1")
    assert decision is not None
    assert decision.chosen_probability == 1.0  # the truth about how it was chosen
    assert len(decision.model_probabilities) == 3 and sum(decision.model_probabilities) == pytest.approx(1.0)
    assert len(decision.model_scores) == 3
    assert Decision.decode(decision.encode()) == decision
    plane.reward("dp", "e1", 1.0)
    assert plane.learn_pending(10) == 1
    assert plane.states["dp"].learned == 1


def test_apprentice_learns_a_clear_preference_and_reports_it(plane: DecisionPlane) -> None:
    create(plane, learning_mode="apprentice")
    served = teach(plane, 400)
    assert set(served) == {"o0", "o1", "o2"}  # always the baseline, drawn at random
    for segment, best in PREFERRED.items():
        out = plane.rank(
            RankInput("dp", offers(), (FeatureGroup("user", {"segment": segment}),), baseline_action_id="o0")
        )
        assert out.ranking[1][0] == best  # the model's favourite comes right after the baseline
    summary = plane.stats("dp").apprentice
    assert summary is not None
    assert summary.baseline_reward.count == 400
    # A random baseline is the preferred offer a third of the time.
    assert summary.baseline_reward.value == pytest.approx(1 / 3, abs=0.08)
    assert 0.2 < summary.match_rate.value < 0.5  # the model agrees with a random baseline a third of the time
    assert summary.match_rate.low < summary.match_rate.value < summary.match_rate.high
    assert summary.model_reward.value > summary.baseline_reward.value + 0.3
    assert summary.model_reward.low < summary.model_reward.value
    assert summary.model_reward_dr.low > summary.baseline_reward.value


def test_auto_promotion_switches_to_online_and_is_audited(plane: DecisionPlane) -> None:
    create(plane, learning_mode="apprentice", apprentice_auto_promote=True, apprentice_min_events=200)
    teach(plane, 600)
    record = plane.get_decision_point("dp")
    assert record.config.learning_mode == "online"
    records, _ = plane.audit.page(10, 0)
    promoted = [r for r in records if r.action == "AutoPromote"]
    assert len(promoted) == 1 and promoted[0].actor == "auto-promotion"
    assert promoted[0].before is not None and promoted[0].before["learning_mode"] == "apprentice"
    assert promoted[0].after is not None and promoted[0].after["events"] >= 200
    assert promoted[0].after["model_reward_low"] > promoted[0].after["baseline_reward_high"]
    assert promoted[0].after["model_reward_dr_low"] > promoted[0].after["baseline_reward_high"]
    out = plane.rank(RankInput("dp", offers(), (FeatureGroup("user", {"segment": "gold"}),)))
    assert out.served_by == ""  # the model serves now, without a baseline


def test_no_promotion_without_the_option(plane: DecisionPlane) -> None:
    create(plane, learning_mode="apprentice", apprentice_min_events=50)
    teach(plane, 300)
    assert plane.get_decision_point("dp").config.learning_mode == "apprentice"


def test_apprentice_and_logging_only_need_a_baseline_among_the_candidates(plane: DecisionPlane) -> None:
    for mode in ("apprentice", "logging_only"):
        if "dp" in plane.states:
            plane.delete_decision_point("dp")
        create(plane, learning_mode=mode)
        with pytest.raises(KairosError) as missing:
            plane.rank(RankInput("dp", offers()))
        assert missing.value.code is Code.INVALID_ARGUMENT and missing.value.reason == "BASELINE_REQUIRED"
        with pytest.raises(KairosError) as absent:
            plane.rank(RankInput("dp", offers(), baseline_action_id="o1", excluded_action_ids=["o1"]))
        assert absent.value.reason == "BASELINE_NOT_A_CANDIDATE"
        assert "o1" in absent.value.message


def test_logging_only_serves_the_baseline_and_never_learns(plane: DecisionPlane) -> None:
    create(plane, learning_mode="logging_only")
    for i in range(5):
        out = plane.rank(RankInput("dp", offers(), baseline_action_id="o1", event_id=f"e{i}"))
        assert [a for a, _ in out.ranking] == ["o1", "o0", "o2"]
        assert out.model_version == ""
        plane.reward("dp", out.event_id, 1.0)
    assert plane.learn_pending(100) == 0
    stats = plane.stats("dp")
    assert stats.learned == 0 and stats.counters["rewards"] == 5 and stats.counters["open_events"] == 0


def test_holdout_is_stable_and_reports_lift(plane: DecisionPlane) -> None:
    create(plane, holdout_share=0.5)
    subjects = [f"s{i}" for i in range(60)]
    first: dict[str, str] = {}
    for _ in range(2):
        for subject in subjects:
            out = plane.rank(RankInput("dp", offers(), subject_id=subject, baseline_action_id="o0"))
            first.setdefault(subject, out.served_by)
            assert out.served_by == first[subject]  # the same subject is always in or out
            held = out.served_by == "holdout_baseline"
            assert not held or out.ranking[0] == ("o0", 1.0)
            plane.reward("dp", out.event_id, 0.0 if held else 1.0)
    groups = set(first.values())
    assert groups == {"holdout_baseline", "model"}
    held_events = 2 * sum(1 for v in first.values() if v == "holdout_baseline")
    plane.learn_pending(1000)
    stats = plane.stats("dp")
    assert stats.learned == 120 - held_events  # held-out baseline events are not learned
    assert stats.holdout is not None
    assert stats.holdout.holdout_reward.count == held_events
    assert stats.holdout.model_reward.count == 120 - held_events
    assert stats.holdout.lift.value == pytest.approx(1.0)
    assert stats.holdout.lift.low == stats.holdout.lift.high == pytest.approx(1.0)  # no variance in either group


def test_holdout_without_baseline_is_uniform_and_learned(plane: DecisionPlane) -> None:
    create(plane, holdout_share=0.5)
    held = 0
    for i in range(40):
        out = plane.rank(RankInput("dp", offers(4), subject_id=f"s{i}"))
        if out.served_by == "holdout_random":
            held += 1
            assert all(p == 0.25 for _, p in out.ranking)
        plane.reward("dp", out.event_id, 1.0)
    assert held > 5
    assert plane.learn_pending(1000) == 40


def test_mode_figures_survive_a_restart(tmp_path: Path) -> None:
    plane = open_plane(tmp_path)
    create(plane, learning_mode="apprentice")
    teach(plane, 50)
    before = plane.stats("dp").apprentice
    plane.close()
    plane.store.close()
    again = open_plane(tmp_path)
    try:
        assert again.stats("dp").apprentice == before
        assert before is not None and before.baseline_reward.count == 50
    finally:
        again.close()
        again.store.close()


def test_entering_apprentice_mode_starts_its_figures_again(plane: DecisionPlane) -> None:
    create(plane, learning_mode="apprentice")
    teach(plane, 30)
    config = plane.get_decision_point("dp").config
    plane.update_decision_point(config.with_changes(learning_mode="online"))
    plane.update_decision_point(config.with_changes(learning_mode="apprentice"))
    summary = plane.stats("dp").apprentice
    assert summary is not None and summary.baseline_reward.count == 0


@pytest.mark.parametrize("share", [-0.1, 0.51, float("nan"), float("inf")])
def test_holdout_share_outside_the_range_is_refused(plane: DecisionPlane, share: float) -> None:
    with pytest.raises(KairosError) as caught:
        create(plane, holdout_share=share)
    assert caught.value.code is Code.INVALID_ARGUMENT and caught.value.reason == "INVALID_HOLDOUT_SHARE"


def test_decisions_written_before_learning_modes_still_read() -> None:
    earlier = json.loads(Decision("e", 1, 2, "s", ["a"], 1, bytes(8), [0], [1.0], "1.0", "ff").encode())[:20]
    decision = Decision.decode(json.dumps(earlier).encode())
    assert decision.served_by == "" and decision.model_probabilities == [] and decision.model_scores == []


def test_apprentice_events_export_with_the_probability_they_were_served_with(plane: DecisionPlane) -> None:
    create(plane, learning_mode="apprentice")
    out = plane.rank(RankInput("dp", offers(), baseline_action_id="o2"))
    plane.reward("dp", out.event_id, 1.0)
    written = io.StringIO()
    export(plane.store, "dp", written)
    (event,) = [json.loads(line) for line in written.getvalue().splitlines()]
    assert event["_labelIndex"] == 2 and event["_label_probability"] == 1.0
    assert event["p"] == [1.0, 0.0, 0.0]
