"""The load scenarios build the requests they claim to."""

from __future__ import annotations

import pytest

from benchmarks.workload import build_workload
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb


def _features(groups: list[tpb.FeatureGroup]) -> int:
    return sum(len(group.features) for group in groups)


def test_profile_scenario_sends_candidates_and_a_subject_with_a_stored_profile() -> None:
    workload = build_workload("profile", seed=1, pool=20, actions=24, catalog_size=200, subjects=5)
    requests = [dpb.RankRequest.FromString(r) for r in workload.requests]
    assert all(len(r.actions) == 24 and r.subject_id for r in requests)
    assert {r.subject_id for r in requests} == {subject for subject, _ in workload.profiles}
    assert all(_features(list(r.context)) == 5 for r in requests)
    assert all(_features(groups) == 19 for _, groups in workload.profiles)
    assert not workload.catalog and workload.contact_policy is None


def test_catalog_scenario_sends_no_candidates_and_stores_a_catalog_with_rules() -> None:
    workload = build_workload("catalog", seed=1, pool=20, actions=30, catalog_size=200, subjects=20)
    requests = [dpb.RankRequest.FromString(r) for r in workload.requests]
    assert all(not r.actions and r.subject_id and r.channel == "web" for r in requests)
    assert len(workload.catalog) == 30
    assert workload.contact_policy is not None and len(workload.contact_policy.frequency_caps) == 2
    consents = [g for _, groups in workload.profiles for g in groups if g.namespace == "consent"]
    assert len(consents) == 20 and all(g.features["web"].bool_value for g in consents)


def test_inline_scenario_keeps_everything_in_the_request() -> None:
    workload = build_workload("inline", seed=1, pool=10, actions=24, catalog_size=200, subjects=0)
    requests = [dpb.RankRequest.FromString(r) for r in workload.requests]
    assert all(len(r.actions) == 24 and not r.subject_id and _features(list(r.context)) == 15 for r in requests)
    assert not workload.profiles


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        build_workload("nope", seed=1, pool=1, actions=1, catalog_size=1, subjects=1)
