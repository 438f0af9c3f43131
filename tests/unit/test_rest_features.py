"""Personalizer's JSON features -> feature groups (service.rest.features)."""

from __future__ import annotations

import pytest

from policies.features import FeatureGroup
from service.rest.features import MAX_DEPTH, JsonFeatureError, feature_groups


def as_dict(groups: tuple[FeatureGroup, ...]) -> dict[str, dict[str, object]]:
    return {g.namespace: dict(g.features) for g in groups}


def test_top_level_keys_are_namespaces_and_nested_objects_flatten() -> None:
    groups = feature_groups(
        [{"user": {"age": 31, "device": {"os": "ios", "screen": {"w": 390}}}}, {"time": "morning"}], "contextFeatures"
    )
    assert as_dict(groups) == {
        "user": {"age": 31.0, "device.os": "ios", "device.screen.w": 390.0},
        "time": {"time": "morning"},
    }


def test_numbers_are_numeric_strings_categorical_and_flags_present_only_when_true() -> None:
    groups = feature_groups([{"f": {"n": 2, "x": 0.5, "s": "red", "yes": True, "no": False, "none": None}}], "c")
    assert as_dict(groups) == {"f": {"n": 2.0, "x": 0.5, "s": "red", "yes": True, "no": False}}
    assert isinstance(as_dict(groups)["f"]["n"], float)


def test_lists_of_strings_are_sets_of_categories_and_lists_of_numbers_are_indexed() -> None:
    groups = feature_groups([{"item": {"tags": ["a", "b"], "vec": [1, 2.5]}}], "c")
    assert as_dict(groups) == {"item": {"tags=a": True, "tags=b": True, "vec.0": 1.0, "vec.1": 2.5}}


def test_objects_naming_the_same_namespace_add_to_it_and_underscore_keys_are_skipped() -> None:
    groups = feature_groups([{"u": {"a": 1}}, {"u": {"b": "x", "_meta": "ignored"}}, {"_id": "ignored"}], "c")
    assert as_dict(groups) == {"u": {"a": 1.0, "b": "x"}}


def test_none_and_empty_give_no_groups() -> None:
    assert feature_groups(None, "c") == ()
    assert feature_groups([{"u": {}}], "c") == ()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"u": 1}, "contextFeatures must be a list"),
        (["text"], r"contextFeatures\[0\] must be a JSON object"),
        ([{"u": {"v": [{"nested": 1}]}}], r"contextFeatures\[0\]\.u\.v\[0\]: a list of features"),
        ([{"u": {"v": float("inf")}}], "not a finite number"),
    ],
)
def test_unreadable_features_are_refused_with_where_and_why(items: object, message: str) -> None:
    with pytest.raises(JsonFeatureError, match=message):
        feature_groups(items, "contextFeatures")


def test_nesting_is_bounded() -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(MAX_DEPTH + 1):
        deep = {"k": deep}
    with pytest.raises(JsonFeatureError, match="nest deeper"):
        feature_groups([{"u": deep}], "c")
