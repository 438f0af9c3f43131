"""FeatureService through gRPC against a real server: profiles joined to Rank, catalog ranking, contact
history, frequency caps across channels, suppression of ignored offers, TTL, consent, focus rules,
forgetting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service._pb.kairos.v1 import types_pb2 as tpb
from service.domain import Decision
from service.store.lmdb_store import Store
from tests.helpers import group, value
from tests.server import RunningServer

DP = "offers"


def reason_of(err: grpc.RpcError) -> str:
    for key, raw in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(raw)
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            return str(info.reason)
    return ""


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(int(seconds * 1000))
    return d


def create(server: RunningServer, **fields: object) -> None:
    server.admin.CreateDecisionPoint(
        apb.CreateDecisionPointRequest(decision_point=tpb.DecisionPoint(name=DP, **fields))  # type: ignore[arg-type]
    )


def catalog_action(action_id: str, **terms: object) -> fpb.CatalogAction:
    return fpb.CatalogAction(
        action=tpb.Action(id=action_id, features=[group("offer", kind=action_id)]),
        **terms,  # type: ignore[arg-type]
    )


def put_catalog(server: RunningServer, *actions: fpb.CatalogAction) -> None:
    server.features.PutActions(fpb.PutActionsRequest(decision_point=DP, actions=list(actions), replace=True))


def rank(server: RunningServer, subject: str = "", channel: str = "", **kwargs: object) -> dpb.RankResponse:
    response: dpb.RankResponse = server.decisions.Rank(
        dpb.RankRequest(decision_point=DP, subject_id=subject, channel=channel, **kwargs)  # type: ignore[arg-type]
    )
    return response


def stored_decision(server: RunningServer, event_id: str) -> Decision:
    """Read a logged decision the way Kairos stores it (another reader of the same LMDB)."""
    store = Store(server.data_dir / "lmdb", owner=False)
    try:
        with store.read() as txn:
            decision = store.get_decision(txn, DP, event_id)
    finally:
        store.close()
    assert decision is not None
    return decision


@pytest.fixture
def served(server: RunningServer) -> Iterator[RunningServer]:
    yield server
    assert server.stop() == 0


def test_profile_merges_by_namespace_and_joins_rank(served: RunningServer) -> None:
    create(served)
    put = served.features.PutProfile
    put(
        fpb.PutProfileRequest(subject_id="c1", features=[group("user", tier="gold", age=40.0), group("crm", churn=0.2)])
    )
    put(fpb.PutProfileRequest(subject_id="c1", features=[group("user", age=41.0)]))
    profile = served.features.GetProfile(fpb.GetProfileRequest(subject_id="c1"))
    user = next(g for g in profile.features if g.namespace == "user")
    assert user.features["tier"].string_value == "gold" and user.features["age"].number_value == 41.0
    assert {(u.namespace, u.name) for u in profile.feature_updates} == {
        ("user", "tier"),
        ("user", "age"),
        ("crm", "churn"),
    }
    assert all(u.update_time.seconds > 0 for u in profile.feature_updates)

    put(fpb.PutProfileRequest(subject_id="c1", features=[group("crm", score=3.0)], replace=True))
    crm = next(
        g for g in served.features.GetProfile(fpb.GetProfileRequest(subject_id="c1")).features if g.namespace == "crm"
    )
    assert set(crm.features) == {"score"}  # replace: the namespace sent replaced the stored one whole

    # The request's feature wins over the stored one of the same namespace and name.
    response = rank(
        served, "c1", context=[group("user", tier="silver")], actions=[tpb.Action(id="a"), tpb.Action(id="b")]
    )
    shared = stored_decision(served, response.event_id).shared
    assert "tier=silver" in shared and "tier=gold" not in shared and "age:41" in shared and "score:3" in shared
    # An unknown subject is a new visitor, not an error.
    assert len(rank(served, "nobody", actions=[tpb.Action(id="a")]).ranking) == 1

    with pytest.raises(grpc.RpcError) as err:
        served.features.GetProfile(fpb.GetProfileRequest(subject_id="nobody"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_profile_limits_are_invalid_argument(served: RunningServer) -> None:
    cases = [
        (fpb.PutProfileRequest(subject_id="x" * 300, features=[group("user", a=1.0)]), "SUBJECT_ID_TOO_LONG"),
        (fpb.PutProfileRequest(subject_id="a\nb", features=[group("user", a=1.0)]), "INVALID_SUBJECT_ID"),
        (fpb.PutProfileRequest(subject_id="c", features=[group("user", a=float("inf"))]), "INVALID_FEATURE"),
        (fpb.PutProfileRequest(subject_id="c", features=[group("_kairos", a=1.0)]), "INVALID_NAMESPACE"),
        (
            fpb.PutProfileRequest(subject_id="c", features=[group("user", **{f"f{i}": 1.0 for i in range(1100)})]),
            "PROFILE_TOO_LARGE",
        ),
        (
            fpb.PutProfileRequest(subject_id="c", features=[group(f"ns{i}", a=1.0) for i in range(70)]),
            "TOO_MANY_NAMESPACES",
        ),
        (
            fpb.PutProfileRequest(
                subject_id="c", features=[group("user", **{f"f{i}": "x" * 1000 for i in range(300)})]
            ),
            "PROFILE_TOO_LARGE",
        ),
    ]
    for request, reason in cases:
        with pytest.raises(grpc.RpcError) as err:
            served.features.PutProfile(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason_of(err.value) == reason
        assert "at most" in (err.value.details() or "") or reason not in ("PROFILE_TOO_LARGE", "TOO_MANY_NAMESPACES")


def test_stale_namespace_is_not_used(served: RunningServer) -> None:
    create(served, namespace_ttl={"purchases": duration(3600)})
    old = timestamp_pb2.Timestamp()
    old.FromSeconds(int(time.time()) - 5 * 365 * 86400)  # a purchase five years ago
    served.features.PutProfile(
        fpb.PutProfileRequest(subject_id="c2", features=[group("purchases", last="tv")], update_time=old)
    )
    served.features.PutProfile(fpb.PutProfileRequest(subject_id="c2", features=[group("user", tier="gold")]))
    shared = stored_decision(served, rank(served, "c2", actions=[tpb.Action(id="a")]).event_id).shared
    assert "tier=gold" in shared and "last=tv" not in shared
    served.features.PutProfile(fpb.PutProfileRequest(subject_id="c2", features=[group("purchases", last="phone")]))
    shared = stored_decision(served, rank(served, "c2", actions=[tpb.Action(id="a")]).event_id).shared
    assert "last=phone" in shared


def test_rank_without_candidates_ranks_the_eligible_catalog(served: RunningServer) -> None:
    create(served)
    now = int(time.time())
    past, future = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    past.FromSeconds(now - 60)
    future.FromSeconds(now + 3600)
    gold_only = tpb.Condition(
        namespace="user", feature="tier", operator=tpb.CONDITION_OPERATOR_IN, values=[value("gold"), value("vip")]
    )
    put_catalog(
        served,
        catalog_action("web-banner", channels=["web"]),
        catalog_action("email-coupon", channels=["email"]),
        catalog_action("expired", valid_to=past),
        catalog_action("not-yet", valid_from=future),
        catalog_action("gold-upgrade", eligibility=[gold_only]),
    )
    listed = served.features.ListActions(fpb.ListActionsRequest(decision_point=DP, page_size=2))
    assert [a.action.id for a in listed.actions] == ["email-coupon", "expired"] and listed.next_page_token
    served.features.PutProfile(fpb.PutProfileRequest(subject_id="g", features=[group("user", tier="gold")]))

    ranked = {r.action_id for r in rank(served, "g", channel="web").ranking}
    assert ranked == {"web-banner", "gold-upgrade"}
    ranked = {r.action_id for r in rank(served, "silver", channel="email").ranking}
    assert ranked == {"email-coupon"}
    response = rank(served, "g", channel="web", excluded_action_ids=["web-banner"])
    assert [r.action_id for r in response.ranking] == ["gold-upgrade"]

    served.features.DeleteAction(fpb.DeleteActionRequest(decision_point=DP, action_id="email-coupon"))
    with pytest.raises(grpc.RpcError) as err:
        rank(served, "silver", channel="email")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(err.value) == "NO_ELIGIBLE_ACTIONS" and "CHANNEL" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        served.features.DeleteAction(fpb.DeleteActionRequest(decision_point=DP, action_id="email-coupon"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_frequency_caps_count_across_channels(served: RunningServer) -> None:
    policy = tpb.ContactPolicy(
        frequency_caps=[
            tpb.FrequencyCap(scope=tpb.CAP_SCOPE_ACTION, max_exposures=1, window=duration(86400)),
            tpb.FrequencyCap(scope=tpb.CAP_SCOPE_CHANNEL, channel="email", max_exposures=2, window=duration(7 * 86400)),
        ]
    )
    create(served, contact_policy=policy)
    put_catalog(served, *(catalog_action(f"offer-{k}") for k in range(6)))
    shown = [rank(served, "c3", channel=ch).ranking[0].action_id for ch in ("web", "app", "email")]
    assert len(set(shown)) == 3  # at most one per offer per day, whatever the channel
    remaining = {r.action_id for r in rank(served, "c3", channel="web").ranking}
    assert remaining == {f"offer-{k}" for k in range(6)} - set(shown)
    rank(served, "c3", channel="email")  # the second email of the week
    with pytest.raises(grpc.RpcError) as err:
        rank(served, "c3", channel="email")
    assert reason_of(err.value) == "NO_ELIGIBLE_ACTIONS" and "CHANNEL_CAP" in (err.value.details() or "")
    history = served.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="c3")).exposures
    assert [e.channel for e in history] == ["email", "web", "email", "app", "web"]  # newest first
    assert all(e.outcome == fpb.EXPOSURE_OUTCOME_OPEN for e in history)


def test_ignored_offers_are_suppressed_and_rewards_count(served: RunningServer) -> None:
    policy = tpb.ContactPolicy(suppress_after_ignored=2)
    create(served, contact_policy=policy, reward_wait=duration(0.2))
    put_catalog(served, catalog_action("a"), catalog_action("b"))
    ignored: dict[str, int] = {}
    for _ in range(12):
        try:
            response = rank(served, "c4")
        except grpc.RpcError as err:
            assert reason_of(err) == "NO_ELIGIBLE_ACTIONS" and "IGNORED" in (err.details() or "")
            break
        chosen = response.ranking[0].action_id
        ignored[chosen] = ignored.get(chosen, 0) + 1
        time.sleep(0.25)  # the reward window closes without a reward: ignored
    else:
        pytest.fail("offers ignored twice were never suppressed")
    assert ignored == {"a": 2, "b": 2}
    outcomes = {
        e.outcome for e in served.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="c4")).exposures
    }
    assert outcomes == {fpb.EXPOSURE_OUTCOME_IGNORED}

    response = rank(served, "c5")
    served.decisions.Reward(dpb.RewardRequest(decision_point=DP, event_id=response.event_id, value=1.0))
    history = served.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="c5")).exposures
    assert [e.outcome for e in history] == [fpb.EXPOSURE_OUTCOME_REWARDED]


def test_exposure_features_reach_the_model(served: RunningServer) -> None:
    create(served)
    first = rank(served, "c6", actions=[tpb.Action(id="a"), tpb.Action(id="b")])
    shown = first.ranking[0].action_id
    second = rank(served, "c6", actions=[tpb.Action(id="a"), tpb.Action(id="b")])
    store = Store(served.data_dir / "lmdb", owner=False)
    try:
        with store.read() as txn:
            decision = store.get_decision(txn, DP, second.event_id)
            assert decision is not None
            lines = dict(zip(decision.action_ids, store.lines_of(txn, decision), strict=True))
    finally:
        store.close()
    assert "|^ shown:1" in lines[shown]
    assert "|^" not in lines[next(a for a in lines if a != shown)]


def test_consent_and_focus_rules(served: RunningServer) -> None:
    open_ticket = tpb.Condition(
        namespace="support", feature="open_ticket", operator=tpb.CONDITION_OPERATOR_EQUAL, value=value(True)
    )
    policy = tpb.ContactPolicy(
        consent_namespace="consent", focus_rules=[tpb.FocusRule(conditions=[open_ticket], tag="service")]
    )
    create(served, contact_policy=policy)
    put_catalog(served, catalog_action("fix-router", tags=["service"]), catalog_action("upgrade"), catalog_action("tv"))
    served.features.PutProfile(
        fpb.PutProfileRequest(subject_id="c7", features=[group("consent", email=False, web=True)])
    )
    with pytest.raises(grpc.RpcError) as err:
        rank(served, "c7", channel="email")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "NO_CONSENT" in (err.value.details() or "")
    assert len(rank(served, "c7", channel="web").ranking) == 3
    response = rank(served, "c7", channel="web", context=[group("support", open_ticket=True)])
    assert [r.action_id for r in response.ranking] == ["fix-router"]  # service action first: only it


def test_track_event_derives_features_and_can_rank_at_once(served: RunningServer) -> None:
    create(served)
    put_catalog(served, catalog_action("push-a"), catalog_action("push-b"))
    served.features.TrackEvent(fpb.TrackEventRequest(subject_id="c8", event_type="view", category="sports_shoes"))
    response = served.features.TrackEvent(
        fpb.TrackEventRequest(
            subject_id="c8",
            event_type="abandoned_cart",
            category="sports_shoes",
            rank=dpb.RankRequest(decision_point=DP),
        )
    )
    assert len(response.rank.ranking) == 2
    shared = stored_decision(served, response.rank.event_id).shared
    assert "last_type=abandoned_cart" in shared and "interest%3Dsports_shoes" in shared and "events_1h:2" in shared
    assert stored_decision(served, response.rank.event_id).subject_id == "c8"


def test_delete_profile_forgets_the_subject(served: RunningServer) -> None:
    create(served)
    put_catalog(served, catalog_action("a"), catalog_action("b"))
    served.features.PutProfile(fpb.PutProfileRequest(subject_id="c9", features=[group("user", tier="gold")]))
    served.features.TrackEvent(fpb.TrackEventRequest(subject_id="c9", event_type="view"))
    events = [rank(served, "c9").event_id for _ in range(3)]
    shared_before = stored_decision(served, events[0]).shared
    forgotten = served.features.DeleteProfile(fpb.DeleteProfileRequest(subject_id="c9"))
    assert forgotten.decisions_forgotten == 3
    with pytest.raises(grpc.RpcError) as err:
        served.features.GetProfile(fpb.GetProfileRequest(subject_id="c9"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert not served.features.GetContactHistory(fpb.GetContactHistoryRequest(subject_id="c9")).exposures
    for event_id in events:
        decision = stored_decision(served, event_id)
        assert decision.subject_id == ""
    assert stored_decision(served, events[0]).shared == shared_before  # features kept: replay stays exact
    # Rewards of forgotten events still teach the model.
    served.decisions.Reward(dpb.RewardRequest(decision_point=DP, event_id=events[0], value=1.0))
    shared = stored_decision(served, rank(served, "c9").event_id).shared
    assert "tier=gold" not in shared and "last_type" not in shared


def test_catalog_needs_an_existing_decision_point(served: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError) as err:
        put_catalog(served, catalog_action("a"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    create(served)
    with pytest.raises(grpc.RpcError) as err:
        rank(served, "c10")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason_of(err.value) == "NO_CANDIDATES"


def test_shared_actions_are_capped_across_decision_points(served: RunningServer) -> None:
    cap = tpb.FrequencyCap(scope=tpb.CAP_SCOPE_ACTION, max_exposures=1, window=duration(86400))
    for name in (DP, "push"):
        served.admin.CreateDecisionPoint(
            apb.CreateDecisionPointRequest(
                decision_point=tpb.DecisionPoint(name=name, contact_policy=tpb.ContactPolicy(frequency_caps=[cap]))
            )
        )
        served.features.PutActions(
            fpb.PutActionsRequest(decision_point=name, actions=[catalog_action("coupon", shared=True)])
        )
    rank(served, "c11")
    with pytest.raises(grpc.RpcError) as err:
        served.decisions.Rank(dpb.RankRequest(decision_point="push", subject_id="c11"))
    assert "ACTION_CAP" in (err.value.details() or "")
    for name in (DP, "push"):  # an action that is not shared is capped per decision point
        served.features.PutActions(fpb.PutActionsRequest(decision_point=name, actions=[catalog_action("local")]))
    assert rank(served, "c12", excluded_action_ids=["coupon"]).ranking[0].action_id == "local"
    response = served.decisions.Rank(
        dpb.RankRequest(decision_point="push", subject_id="c12", excluded_action_ids=["coupon"])
    )
    assert response.ranking[0].action_id == "local"


def test_budget_caps_an_offer_over_all_subjects(served: RunningServer) -> None:
    create(served)
    budget = fpb.Budget(max_exposures=2, period=duration(86400))
    put_catalog(served, catalog_action("coupon", budget=budget))
    listed = served.features.ListActions(fpb.ListActionsRequest(decision_point=DP)).actions
    assert listed[0].budget.max_exposures == 2
    rank(served, "a")
    rank(served)  # anonymous catalog ranks spend the budget too
    with pytest.raises(grpc.RpcError) as err:
        rank(served, "b")
    assert reason_of(err.value) == "NO_ELIGIBLE_ACTIONS" and "BUDGET" in (err.value.details() or "")
