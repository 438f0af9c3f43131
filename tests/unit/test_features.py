from __future__ import annotations

import math

import pytest

from policies.features import (
    ACTION_ALPHABET,
    ACTION_ID_NAMESPACE,
    CHANNEL_NAMESPACE,
    CONTEXT_ALPHABET,
    NAMESPACE_ALPHABET,
    Candidate,
    FeatureError,
    FeatureGroup,
    NamespaceTable,
    action_line,
    encode_feature,
    role_of,
    shared_line,
    token,
)

FORBIDDEN = set(" \t\n\r|:")


def test_tokens_never_contain_vw_syntax() -> None:
    for text in ["a b", "x|y", "k:v", "line\nbreak", "tab\t", "ünïcødé", "%25", ""]:
        assert not FORBIDDEN & set(token(text))


def test_distinct_strings_stay_distinct() -> None:
    assert token("a b") != token("a_b") != token("a%20b")
    assert token("a b") == "a%20b" and token("a%20b") == "a%2520b"


def test_feature_encoding() -> None:
    assert encode_feature("segment", "gold") == "segment=gold"
    assert encode_feature("age", 31) == "age:31"
    assert encode_feature("vip", True) == "vip"
    assert encode_feature("vip", False) is None


def test_tiny_numbers_flush_to_zero() -> None:
    # VW parses "1e-166" as NaN and the model is poisoned for good.
    assert encode_feature("x", 1e-166) == "x:0"
    assert encode_feature("x", 2.5e-7) == "x:2.5e-07"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e7])
def test_bad_numbers_are_refused(bad: float) -> None:
    with pytest.raises(FeatureError):
        encode_feature("x", bad)


def test_namespace_indices_are_stable_and_distinct() -> None:
    table = NamespaceTable()
    # "session" and "situation" share a first letter: VW would merge them; the table must not.
    assert table.index("session") != table.index("situation")
    assert table.index("session") == table.index("session") == "a"


def test_namespace_limit_per_role() -> None:
    table = NamespaceTable()
    for i in range(len(CONTEXT_ALPHABET)):
        table.index(f"ns{i}", "context")
    with pytest.raises(FeatureError, match="at most 31 are supported"):
        table.index("one-too-many", "context")
    assert table.index("offer", "action") == "A"  # the other role has its own alphabet


def test_roles_follow_first_sight_and_old_tables_read_as_context() -> None:
    table = NamespaceTable()
    assert table.index("offer", "action") == "A" and role_of("A") == "action"
    assert table.index("offer", "context") == "A"  # once given, an index never changes
    assert table.index("user", "context") == "a" and role_of("a") == "context"
    assert (role_of(ACTION_ID_NAMESPACE), role_of(CHANNEL_NAMESPACE)) == ("action", "context")
    assert set(CONTEXT_ALPHABET).isdisjoint(ACTION_ALPHABET) and len(NAMESPACE_ALPHABET) == 62


def test_reserved_namespaces_are_refused() -> None:
    with pytest.raises(FeatureError):
        NamespaceTable().index("_mine")


def test_lines() -> None:
    table = NamespaceTable()
    line = shared_line([FeatureGroup("user", {"segment": "gold"})], table, channel="web")
    assert line == "shared |a segment=gold |@ web"
    assert (
        action_line(Candidate("offer 1", (FeatureGroup("offer", {"price": 9.5}),)), table)
        == "|! offer%201 |A price:9.5"
    )
    assert shared_line([], NamespaceTable()) == "shared |"
