"""Multi-slot pieces without a server: the fallback, the slot namespace, the stored slot decisions."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.features import SLOT_NAMESPACE, FeatureError, NamespaceTable, shared_line
from policies.learner_options import LearnerOptions
from policies.vw import PolicyError, Prediction
from service.domain import Decision, DecisionPointConfig, slot_event_id
from service.errors import KairosError
from service.plane import DecisionPlane
from service.slots import RankSlotsInput, SlotInput
from service.store.lmdb_store import Store
from tests.unit.test_plane import offers


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[DecisionPlane]:
    opened = DecisionPlane(Store(tmp_path / "lmdb"), tmp_path / "models")
    opened.load_all()
    opened.create_decision_point(DecisionPointConfig(name="dp", reward_wait_ms=100))
    yield opened
    opened.close()
    opened.store.close()


def page(**kwargs: object) -> RankSlotsInput:
    slots = [SlotInput("hero", baseline_action_id="o2"), SlotInput("side", baseline_action_id="o0")]
    return RankSlotsInput("dp", slots, offers(4), **kwargs)  # type: ignore[arg-type]


def test_a_model_not_loaded_fills_slots_with_their_baselines_never_learned(plane: DecisionPlane) -> None:
    plane.states["dp"].loaded = False
    out = plane.rank_slots(page())
    assert out.fallback_reason == "MODEL_NOT_LOADED" and out.model_version == ""
    assert [s.action_id for s in out.slots] == ["o2", "o0"]
    assert out.slots[1].ranking == [("o0", 1.0), ("o1", 0.0), ("o3", 0.0)]  # o2 went to the hero slot
    plane.reward("dp", out.event_id, 1.0, slot_id="hero")  # accepted, never learned
    assert plane.learn_pending(10) == 0
    counters = plane.stats("dp").counters
    assert (counters["ranks"], counters["fallbacks"], counters["rewards"]) == (1, 1, 1)


def test_a_failing_model_gives_the_fallback_for_every_slot(
    plane: DecisionPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken_second_time(shared: str, actions: list[str]) -> Prediction:
        calls.append(shared)
        if len(calls) == 2:
            raise PolicyError("VW returned 2 probabilities for 3 actions")
        return Prediction(tuple(1.0 / len(actions) for _ in actions), tuple(0.0 for _ in actions))

    monkeypatch.setattr(plane.states["dp"].policy, "predict", broken_second_time)
    out = plane.rank_slots(page())
    assert out.fallback_reason == "MODEL_ERROR"
    assert [s.action_id for s in out.slots] == ["o2", "o0"]


def test_a_deadline_too_close_for_every_slot_gives_the_fallback(plane: DecisionPlane) -> None:

    out = plane.rank_slots(page(deadline=time.monotonic()))
    assert out.fallback_reason == "DEADLINE"


def test_the_slot_namespace_comes_from_the_table_and_crosses_every_interaction() -> None:
    table = NamespaceTable()
    table.index("user")
    table.index("offer", "action")
    plain = LearnerOptions().expand_interactions(table)
    assert all(len(i) == 2 for i in plain)
    with pytest.raises(FeatureError):  # clients cannot write into the slot namespace
        table.index(SLOT_NAMESPACE)
    assert shared_line([], table, slot="hero") == f"shared |{table.indices[SLOT_NAMESPACE]} id=hero"
    slot = table.indices[SLOT_NAMESPACE]
    assert slot.isalnum()  # a table index: a decision point that never ranks slots keeps its command line
    crossed = LearnerOptions().expand_interactions(table)
    assert set(crossed) == set(plain) | {i + slot for i in plain} | {slot + a for a in ("!", "A", "^")}
    with pytest.raises(FeatureError):
        table.index("_other")


def test_slot_decisions_round_trip_and_plain_ones_stay_as_they_were() -> None:
    fields = dict(
        ranked_at_ms=1,
        deadline_ms=2,
        shared="shared |a x",
        action_ids=["a", "b"],
        line_day=0,
        line_keys=b"\x00" * 16,
        order=[1, 0],
        probabilities=[0.25, 0.75],
        model_version="1.0",
        fingerprint="f",
    )
    plain = Decision(event_id="e", **fields)  # type: ignore[arg-type]
    first = Decision(event_id="e", slots=["hero", "side"], slot_id="hero", **fields)  # type: ignore[arg-type]
    second = Decision(event_id=slot_event_id("e", 1), slot_id="side", **fields)  # type: ignore[arg-type]
    # Only slot decisions carry the two slot fields: a plain Rank's record is as before slots existed.
    assert len(json.loads(first.encode())) == len(json.loads(plain.encode())) + 2
    assert Decision.decode(plain.encode()) == plain
    assert Decision.decode(first.encode()) == first
    assert Decision.decode(second.encode()) == second
    assert slot_event_id("e", 0) == "e" and not slot_event_id("e", 1).isprintable()


def stored(plane: DecisionPlane, event_id: str, index: int) -> Decision:
    with plane.store.read() as txn:
        decision = plane.store.get_decision(txn, "dp", slot_event_id(event_id, index))
    assert decision is not None
    return decision


@pytest.mark.parametrize("mode", ["logging_only", "apprentice"])
def test_baseline_modes_show_every_slot_its_baseline(plane: DecisionPlane, mode: str) -> None:
    config = plane.get_decision_point("dp").config
    plane.update_decision_point(config.with_changes(learning_mode=mode))
    with pytest.raises(KairosError) as refused:
        plane.rank_slots(
            RankSlotsInput("dp", [SlotInput("hero", baseline_action_id="o1"), SlotInput("side")], offers(4))
        )
    assert refused.value.reason == "BASELINE_REQUIRED"
    out = plane.rank_slots(page())
    assert [(s.action_id, s.ranking[0][1]) for s in out.slots] == [("o2", 1.0), ("o0", 1.0)]
    assert (out.model_version == "") == (mode == "logging_only")  # apprentice: the model was consulted
    hero, side = stored(plane, out.event_id, 0), stored(plane, out.event_id, 1)
    assert hero.served_by == side.served_by == mode
    # Apprentice keeps what the model would have done, per slot, over the actions that slot could take.
    assert len(side.model_probabilities) == (3 if mode == "apprentice" else 0)
    plane.reward("dp", out.event_id, 1.0, slot_id="hero")
    assert plane.learn_pending(10) == (1 if mode == "apprentice" else 0)


def test_a_refused_page_withdraws_the_namespaces_it_gave(plane: DecisionPlane) -> None:
    from policies.features import FeatureGroup

    bad = SlotInput("side", features=[FeatureGroup("layout", {"size": "s"}), FeatureGroup("look", {"x": math.nan})])
    with pytest.raises(KairosError) as refused:
        plane.rank_slots(RankSlotsInput("dp", [SlotInput("hero"), bad], offers(3)))
    assert refused.value.reason == "INVALID_FEATURE"
    # "_slot" and "layout" got indices while the slots were encoded; nothing was committed, so neither stays.
    assert set(plane.get_decision_point("dp").namespaces.indices) & {SLOT_NAMESPACE, "layout"} == set()
    out = plane.rank_slots(page())
    assert SLOT_NAMESPACE in plane.get_decision_point("dp").namespaces.indices and out.slots[0].action_id
