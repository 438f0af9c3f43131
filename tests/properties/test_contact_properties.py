"""Properties of the contact rule evaluator and of profile merging (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import profile as profiles
from policies.contact import (
    DAY_MS,
    OPERATORS,
    ActionTerms,
    Condition,
    ContactPolicy,
    Exposure,
    FrequencyCap,
    Operator,
    Subject,
    eligible,
)
from policies.features import FeatureScalar

NOW = 1_700_000_000_000
names = st.sampled_from(["a", "b", "c", "tier", "age"])
scalars: st.SearchStrategy[FeatureScalar] = st.one_of(
    st.booleans(), st.sampled_from(["gold", "silver", "", "1"]), st.floats(-1e3, 1e3, allow_nan=False)
)
features = st.dictionaries(st.sampled_from(["user", "ctx"]), st.dictionaries(names, scalars, max_size=4), max_size=2)
operators: st.SearchStrategy[Operator] = st.sampled_from(OPERATORS)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    op = draw(operators)
    numeric = op in ("lt", "le", "gt", "ge")
    value = draw(st.floats(-1e3, 1e3, allow_nan=False)) if numeric else draw(scalars)
    values = tuple(draw(st.lists(scalars, min_size=1, max_size=3)))
    return Condition(draw(st.sampled_from(["user", "ctx"])), draw(names), op, value, values)


@given(conditions(), features)
def test_condition_is_total_and_negations_are_exact(condition: Condition, subject: dict) -> None:  # type: ignore[type-arg]
    condition.validate()
    result = condition.holds(subject)
    assert isinstance(result, bool)
    present = condition.feature in subject.get(condition.namespace, {})
    opposite: dict[str, Operator] = {
        "eq": "ne",
        "ne": "eq",
        "in": "not_in",
        "not_in": "in",
        "present": "absent",
        "absent": "present",
    }
    if condition.operator in opposite and (present or condition.operator in ("present", "absent")):
        negated = Condition(
            condition.namespace,
            condition.feature,
            opposite[condition.operator],
            condition.value,
            condition.values,
        )
        assert negated.holds(subject) is (not result)
    if not present:
        assert result is (condition.operator == "absent")


@given(st.booleans(), st.floats(-10, 10, allow_nan=False))
def test_kinds_never_compare_equal(flag: bool, number: float) -> None:
    assert not Condition("u", "f", "eq", number).holds({"u": {"f": flag}})
    assert not Condition("u", "f", "eq", str(number)).holds({"u": {"f": number}})


exposures = st.builds(
    Exposure,
    shown_ms=st.integers(NOW - 10 * DAY_MS, NOW),
    decision_point=st.sampled_from(["dp", "other"]),
    action_id=st.sampled_from(["a", "b", "c", "d"]),
    channel=st.sampled_from(["web", "email", "app"]),
    event_id=st.just("e"),
    deadline_ms=st.integers(NOW - 10 * DAY_MS, NOW + DAY_MS),
    shared=st.booleans(),
    rewarded=st.booleans(),
    pending=st.booleans(),
)


@settings(max_examples=200)
@given(
    st.lists(exposures, max_size=40),
    st.integers(1, 3),
    st.integers(0, 3),
    st.sampled_from(["web", "email", ""]),
    st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, min_size=1),
)
def test_eligible_is_an_ordered_subset_that_respects_caps(
    history: list[Exposure], cap: int, suppress: int, channel: str, candidates: list[str]
) -> None:
    policy = ContactPolicy(caps=(FrequencyCap("action", cap, DAY_MS),), suppress_after_ignored=suppress)
    subject = Subject({}, history, "dp", channel, NOW)
    verdict = eligible(policy, subject, [(a, ActionTerms()) for a in candidates])
    assert verdict.eligible == [a for a in candidates if a in verdict.eligible]  # order kept
    assert len(verdict.eligible) + sum(verdict.excluded.values()) == len(candidates)
    for action in verdict.eligible:  # recount from scratch: what passed is within the cap
        mine = [e for e in history if e.key() == ("dp", action) and not e.pending]
        assert sum(1 for e in mine if NOW - e.shown_ms < DAY_MS) < cap
        if suppress:
            assert sum(1 for e in mine if e.ignored(NOW) and NOW - e.shown_ms < 30 * DAY_MS) < suppress


@given(st.lists(exposures, max_size=20))
def test_more_history_never_makes_more_actions_eligible(history: list[Exposure]) -> None:
    policy = ContactPolicy(caps=(FrequencyCap("action", 1, DAY_MS),), suppress_after_ignored=1)
    candidates = [(a, ActionTerms()) for a in "abcd"]
    before = set(eligible(policy, Subject({}, history[:-1], "dp", "web", NOW), candidates).eligible)
    after = set(eligible(policy, Subject({}, history, "dp", "web", NOW), candidates).eligible)
    assert after <= before


groups = st.lists(
    st.tuples(st.sampled_from(["user", "crm", "web"]), st.dictionaries(names, st.one_of(st.none(), scalars))),
    max_size=3,
)


@given(st.lists(st.tuples(groups, st.booleans()), max_size=5))
def test_profile_merge_matches_a_simple_model(writes: list[tuple[list, bool]]) -> None:  # type: ignore[type-arg]
    stored: profiles.Stored = {}
    model: dict[str, dict[str, FeatureScalar]] = {}
    for time_ms, (batch, replace) in enumerate(writes, start=1):
        stored = profiles.merge(stored, batch, time_ms, replace)
        for namespace, feats in batch:
            target = {} if replace else model.get(namespace, {})
            for name, value in feats.items():
                if value is None:
                    target.pop(name, None)
                else:
                    target[name] = value
            model[namespace] = target
        model = {ns: f for ns, f in model.items() if f}
        assert {ns: {n: v for n, (v, _) in f.items()} for ns, f in stored.items()} == model
        assert profiles.decode(profiles.encode(stored)) == stored


@given(groups, groups)
def test_join_lets_the_request_win_per_feature(stored_groups: list, request_groups: list) -> None:  # type: ignore[type-arg]
    from policies.features import FeatureGroup

    stored = [FeatureGroup(ns, {n: v for n, v in f.items() if v is not None}) for ns, f in stored_groups]
    request = [FeatureGroup(ns, {n: v for n, v in f.items() if v is not None}) for ns, f in request_groups]
    joined = profiles.as_features(profiles.join(stored, request))
    for group in request:
        for name, value in group.features.items():
            last = [g.features[name] for g in request if g.namespace == group.namespace and name in g.features][-1]
            assert joined[group.namespace][name] == last or value != last
    for group in stored:
        for name in group.features:
            assert name in joined[group.namespace]
