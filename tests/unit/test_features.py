from __future__ import annotations

import math

import pytest

from policies.features import (
    NAMESPACE_ALPHABET,
    Candidate,
    FeatureError,
    FeatureGroup,
    NamespaceTable,
    action_line,
    encode_feature,
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


def test_namespace_limit() -> None:
    table = NamespaceTable()
    for i in range(len(NAMESPACE_ALPHABET)):
        table.index(f"ns{i}")
    with pytest.raises(FeatureError, match="at most"):
        table.index("one-too-many")


def test_reserved_namespaces_are_refused() -> None:
    with pytest.raises(FeatureError):
        NamespaceTable().index("_mine")


def test_lines() -> None:
    table = NamespaceTable()
    line = shared_line([FeatureGroup("user", {"segment": "gold"})], table, channel="web")
    assert line == "shared |a segment=gold |@ web"
    assert (
        action_line(Candidate("offer 1", (FeatureGroup("offer", {"price": 9.5}),)), table)
        == "|! offer%201 |b price:9.5"
    )
    assert shared_line([], NamespaceTable()) == "shared |"
