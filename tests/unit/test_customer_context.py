"""The customer context in the decision plane, with an injected clock: TTL expiry, behaviour decay,
exposure recording and the race check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.contact import DAY_MS, HOUR_MS, ActionTerms, ContactPolicy, FrequencyCap, QuietHours
from policies.features import Candidate, FeatureGroup
from service import settings
from service.customers import ContactRaced
from service.domain import CatalogEntry, Decision, DecisionPointConfig
from service.errors import KairosError
from service.learning.loop import LearningLoop
from service.learning.models import now_ms
from service.plane import DecisionPlane, Limits, RankInput
from service.store.lmdb_store import Store

T0 = 1_700_000_000_000 - (1_700_000_000_000 % DAY_MS)  # midnight UTC


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[DecisionPlane]:
    opened = DecisionPlane(Store(tmp_path / "lmdb"), tmp_path / "models")
    opened.load_all()
    clock = [T0 + 12 * HOUR_MS]
    opened.clock = lambda: clock[0]
    opened.clock_cell = clock  # type: ignore[attr-defined]
    yield opened
    opened.close()
    opened.store.close()


def advance(plane: DecisionPlane, ms: int) -> None:
    plane.clock_cell[0] += ms  # type: ignore[attr-defined]


def shared_of(plane: DecisionPlane, event_id: str) -> str:
    with plane.store.read() as txn:
        decision = plane.store.get_decision(txn, "dp", event_id)
    assert decision is not None
    return decision.shared


def test_ttl_expires_features_as_the_clock_moves(plane: DecisionPlane) -> None:
    plane.create_decision_point(DecisionPointConfig(name="dp", namespace_ttl_ms=(("web", HOUR_MS),)))
    plane.customers.put_profile("s", [("web", {"page": "shoes"}), ("crm", {"tier": "gold"})], plane.clock(), False)
    ranked = plane.rank(RankInput("dp", [Candidate("a")], subject_id="s"))
    assert "page=shoes" in shared_of(plane, ranked.event_id)
    advance(plane, HOUR_MS + 1)
    ranked = plane.rank(RankInput("dp", [Candidate("a")], subject_id="s"))
    shared = shared_of(plane, ranked.event_id)
    assert "page=shoes" not in shared and "tier=gold" in shared  # crm has no TTL


def test_behaviour_interest_decays(plane: DecisionPlane) -> None:
    plane.create_decision_point(DecisionPointConfig(name="dp"))
    plane.customers.track("s", "view", "shoes", plane.clock())
    first = shared_of(plane, plane.rank(RankInput("dp", [Candidate("a")], subject_id="s")).event_id)
    assert "interest%3Dshoes:1" in first and "events_1h:1" in first
    advance(plane, 60 * DAY_MS)
    later = shared_of(plane, plane.rank(RankInput("dp", [Candidate("a")], subject_id="s")).event_id)
    assert "interest%3Dshoes" not in later and "events_7d:0" in later


def test_quiet_hours_block_a_channel(plane: DecisionPlane) -> None:
    policy = ContactPolicy(quiet_hours=(QuietHours("sms", 22, 7),))
    plane.create_decision_point(DecisionPointConfig(name="dp", contact=policy))
    plane.rank(RankInput("dp", [Candidate("a")], subject_id="s", channel="sms"))  # noon: fine
    advance(plane, 11 * HOUR_MS)  # 23:00 UTC
    with pytest.raises(KairosError) as caught:
        plane.rank(RankInput("dp", [Candidate("a")], subject_id="s", channel="sms"))
    assert caught.value.reason == "NO_ELIGIBLE_ACTIONS" and "QUIET_HOURS" in caught.value.message
    plane.rank(RankInput("dp", [Candidate("a")], subject_id="s", channel="web"))


def test_cap_window_rolls(plane: DecisionPlane) -> None:
    policy = ContactPolicy(caps=(FrequencyCap("action", 1, DAY_MS),))
    plane.create_decision_point(DecisionPointConfig(name="dp", contact=policy))
    plane.customers.put_actions("dp", [CatalogEntry("only", (FeatureGroup("offer", {"k": 1.0}),))], replace=True)
    plane.rank(RankInput("dp", [], subject_id="s"))
    with pytest.raises(KairosError):
        plane.rank(RankInput("dp", [], subject_id="s"))
    advance(plane, DAY_MS)
    assert plane.rank(RankInput("dp", [], subject_id="s")).ranking[0][0] == "only"


def test_a_concurrent_exposure_makes_rank_decide_again(plane: DecisionPlane) -> None:
    """Another process recording an exposure between Rank's read and its write is noticed in the write."""
    policy = ContactPolicy(caps=(FrequencyCap("action", 1, DAY_MS),))
    plane.create_decision_point(DecisionPointConfig(name="dp", contact=policy))
    context, _ = plane.customers.for_rank("s", "dp", {}, plane.clock(), catalog=False)
    plane.rank(RankInput("dp", [Candidate("a"), Candidate("b")], subject_id="s"))  # "the other process"
    decision = plane.rank(RankInput("dp", [Candidate("a"), Candidate("b")], subject_id="s2"))
    with plane.store.read() as txn:
        stored = plane.store.get_decision(txn, "dp", decision.event_id)
    assert stored is not None
    with pytest.raises(ContactRaced):
        plane.store.write(lambda txn: plane.customers.record_exposure(txn, context, "dp", stored, "", plane.clock()))
    # Deciding again sees the first exposure: the one left is the only one offered.
    again = plane.rank(RankInput("dp", [Candidate("a"), Candidate("b")], subject_id="s"))
    assert len(again.ranking) == 1


def test_a_retry_answers_as_before_even_when_capped_now(plane: DecisionPlane) -> None:
    policy = ContactPolicy(caps=(FrequencyCap("action", 1, DAY_MS),))
    plane.create_decision_point(DecisionPointConfig(name="dp", contact=policy))
    plane.customers.put_actions("dp", [CatalogEntry("only")], replace=True)
    first = plane.rank(RankInput("dp", [], subject_id="s", event_id="e1"))
    assert plane.rank(RankInput("dp", [], subject_id="s", event_id="e1")) == first
    assert len(plane.customers.contact_history("s")) == 1  # the retry recorded nothing


def test_a_budget_spent_meanwhile_makes_rank_decide_again(plane: DecisionPlane) -> None:
    plane.create_decision_point(DecisionPointConfig(name="dp"))
    terms = ActionTerms(budget_max=1, budget_period_ms=DAY_MS)
    plane.customers.put_actions("dp", [CatalogEntry("coupon", terms=terms), CatalogEntry("other")], replace=True)
    context, _ = plane.customers.for_rank("", "dp", {}, plane.clock(), catalog=True)
    assert context.budget_used == {"coupon": 0}
    plane.store.write(lambda txn: plane.store.add_budget_use(txn, "dp", "coupon", terms.budget_period(plane.clock())))
    decision = Decision("e", 0, 1, "shared |", ["coupon", "other"], 0, b"", [0, 1], [0.5, 0.5], "1.0", "")
    with pytest.raises(ContactRaced):
        plane.store.write(lambda txn: plane.customers.record_exposure(txn, context, "dp", decision, "", plane.clock()))
    for _ in range(5):  # deciding again sees the budget spent
        assert [a for a, _ in plane.rank(RankInput("dp", [])).ranking] == ["other"]


def test_the_sweep_deletes_features_past_every_decision_points_ttl(plane: DecisionPlane, tmp_path: Path) -> None:
    plane.create_decision_point(DecisionPointConfig(name="dp", namespace_ttl_ms=(("web", HOUR_MS), ("crm", DAY_MS))))
    plane.create_decision_point(DecisionPointConfig(name="dp2", namespace_ttl_ms=(("web", 2 * HOUR_MS),)))
    assert plane.profile_ttls() == {"web": 2 * HOUR_MS}  # crm has no TTL in dp2: kept for good
    old = now_ms() - 3 * HOUR_MS
    for k in range(450):
        plane.customers.put_profile(f"s{k}", [("web", {"page": "a"}), ("crm", {"tier": "gold"})], old, False)
    plane.customers.put_profile("only-web", [("web", {"page": "a"})], old, False)
    plane.customers.put_profile("fresh", [("web", {"page": "b"})], now_ms(), False)
    loop = LearningLoop(plane, settings.load({"data_dir": str(tmp_path)}))
    try:
        assert asyncio.run(loop.sweep_profiles()) == 451
    finally:
        asyncio.run(loop.stop())
    assert plane.customers.get_profile("s1") == {"crm": {"tier": ("gold", old)}}
    assert plane.customers.get_profile("fresh")["web"]["page"][0] == "b"
    with pytest.raises(KairosError):
        plane.customers.get_profile("only-web")  # nothing left: the profile is gone


def test_optimize_value_learns_reward_times_business_value(plane: DecisionPlane) -> None:
    plane.create_decision_point(DecisionPointConfig(name="dp", optimize_value=True))
    entries = [CatalogEntry("big", terms=ActionTerms(business_value=5.0)), CatalogEntry("plain")]
    plane.customers.put_actions("dp", entries, replace=True)
    learned: dict[str, float] = {}
    for k in range(20):
        ranked = plane.rank(RankInput("dp", [Candidate("big"), Candidate("plain")], event_id=f"e{k}"))
        plane.reward("dp", ranked.event_id, 0.5)
        learned[ranked.ranking[0][0]] = plane.states["dp"].backlog[-1].reward
    assert learned == {"big": 2.5, "plain": 0.5}  # an action without a value counts as 1


def test_longest_ids_fit_lmdb_keys_and_are_forgotten(plane: DecisionPlane) -> None:
    plane.create_decision_point(DecisionPointConfig(name="d" * 64))
    subject, event = "s" * 256, "e" * 256
    plane.customers.put_profile(subject, [("user", {"tier": "gold"})], plane.clock(), False)
    plane.rank(RankInput("d" * 64, [Candidate("a" * 256)], subject_id=subject, event_id=event))
    assert plane.customers.forget(subject) == 1
    with plane.store.read() as txn:
        decision = plane.store.get_decision(txn, "d" * 64, event)
    assert decision is not None and decision.subject_id == ""


def test_a_catalog_larger_than_max_actions_ranks_its_eligible_part(tmp_path: Path) -> None:
    plane = DecisionPlane(Store(tmp_path / "lmdb"), tmp_path / "models", Limits(max_actions=3))
    plane.load_all()
    plane.create_decision_point(DecisionPointConfig(name="dp"))
    web = [CatalogEntry(f"web{k}", terms=ActionTerms(channels=("web",))) for k in range(3)]
    email = [CatalogEntry(f"mail{k}", terms=ActionTerms(channels=("email",))) for k in range(3)]
    plane.customers.put_actions("dp", web + email, replace=True)
    assert len(plane.rank(RankInput("dp", [], channel="web")).ranking) == 3
    with pytest.raises(KairosError) as caught:
        plane.rank(RankInput("dp", []))  # no channel: all 6 are eligible
    assert caught.value.reason == "CATALOG_TOO_LARGE" and "at most 3" in caught.value.message
    plane.close()
    plane.store.close()
