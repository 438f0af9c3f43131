"""DSJSON events: what the export writes and what evaluation accepts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.features import Candidate, FeatureGroup, NamespaceTable, action_line, shared_line, token
from service.offline.dsjson import BadEvent, iso_timestamp, line_namespaces, parse_timestamp, read_event

GOOD = {
    "_label_cost": -1.0,
    "_label_probability": 0.6,
    "_labelIndex": 1,
    "a": [2, 1],
    "p": [0.6, 0.4],
    "c": {"a": {"x": 1}, "_multi": [{"!": {"o1": 1}}, {"!": {"o2": 1}}]},
}


def _line(**changes: object) -> str:
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not None})


def test_a_good_event() -> None:
    event = read_event(_line())
    assert (event.reward, event.chosen, event.probability, event.actions) == (1.0, 1, 0.6, 2)
    assert event.logged_pmf == (0.4, 0.6)
    assert event.reward_range is None and event.namespaces == {}


def test_a_and_p_are_needed() -> None:
    with pytest.raises(BadEvent, match="a and p"):
        read_event(_line(a=None, p=None))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (_line(_label_cost=None), "_label_cost is missing"),
        (_line(_label_cost="high"), "not a number"),
        (_line(_label_cost=float("nan")), "not a finite number"),
        (_line(_label_probability=0, p=[0, 1.0]), "_label_probability is 0.0"),
        (_line(_label_probability=1.5), "_label_probability is 1.5"),
        (_line(_labelIndex=2), "must index one of the 2 actions"),
        (_line(c={"a": {}}), "c._multi"),
        (_line(p=[0.6, 0.6]), "p sums to 1.2000"),
        (_line(p=[0.5, 0.5]), "differs from p of the chosen action"),
        (_line(a=[1, 1]), "a must list each of the 2 actions once"),
        (_line()[:40], "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_bad_events_say_why(line: str, reason: str) -> None:
    with pytest.raises(BadEvent) as caught:
        read_event(line)
    assert reason in str(caught.value)


def test_timestamps_round_trip_in_utc() -> None:
    assert iso_timestamp(1_767_607_200_123) == "2026-01-05T10:00:00.123Z"
    assert parse_timestamp("2026-01-05T10:00:00.123Z") == 1_767_607_200_123
    assert parse_timestamp("2026-01-05T11:00:00.123+01:00") == 1_767_607_200_123
    assert parse_timestamp("2026-01-05") == 1_767_571_200_000
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_timestamp("last week")


text = st.text(max_size=20)
names = st.text(min_size=1, max_size=20)  # an empty name is no feature in VW's text format either
scalars = st.one_of(text, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.booleans())


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(names, scalars, max_size=5), st.dictionaries(names, scalars, max_size=5), names)
def test_stored_lines_become_the_same_features(
    user: dict[str, str | float | bool], offer: dict[str, str | float | bool], action_id: str
) -> None:
    table = NamespaceTable()
    shared = shared_line([FeatureGroup("user", user)], table, channel="web")
    action = action_line(Candidate(action_id, (FeatureGroup("offer", offer),)), table)
    namespaces = line_namespaces(shared)
    assert namespaces.get("@") == {"web": 1.0}
    expected_user = {k for k, v in user.items() if v is not False}
    assert len(namespaces.get("a", {})) == len(expected_user)
    actions = line_namespaces(action)
    assert actions["!"] == {token(action_id): 1.0}
    for name, value in offer.items():
        if isinstance(value, bool):
            assert (token(name) in actions.get(table.indices["offer"], {})) is value
        elif isinstance(value, str):
            assert actions[table.indices["offer"]][f"{token(name)}={token(value)}"] == 1.0
        else:
            assert actions[table.indices["offer"]][token(name)] == pytest.approx(
                value if abs(value) >= 1e-20 else 0.0, rel=1e-8
            )
