"""Personalizer's JSON features -> Kairos feature groups.

Personalizer sends context and action features as a list of JSON objects. Each top-level key of each
object names a namespace; its value holds the namespace's features:

- an object: its keys are features; nested objects flatten, their keys joined with ``.``
  (``{"user": {"device": {"os": "ios"}}}`` -> namespace ``user``, feature ``device.os = "ios"``);
- a scalar: one feature named after the namespace (``{"time": "morning"}`` -> ``time.time = "morning"``).

Numbers are numeric features, strings categorical ones, ``true`` a present flag (``false`` and ``null``
carry nothing). A list of strings is a set of categorical values (``tags: ["a", "b"]`` -> ``tags=a``,
``tags=b``); a list of numbers becomes ``name.0``, ``name.1``, ... Keys starting with ``_`` are not
features (Personalizer and VW's JSON format treat them so). Objects in the list that name the same
namespace add to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from policies.features import FeatureGroup, FeatureScalar

MAX_DEPTH = 8  # of nested objects inside a namespace


class JsonFeatureError(ValueError):
    """Features the REST layer cannot read; the message names where and why."""


def feature_groups(items: Any, where: str) -> tuple[FeatureGroup, ...]:
    """``items`` (a list of JSON objects, or null) as feature groups, in first-seen namespace order."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise JsonFeatureError(f"{where} must be a list of JSON objects, not {_kind(items)}")
    namespaces: dict[str, dict[str, FeatureScalar]] = {}
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise JsonFeatureError(f"{where}[{number}] must be a JSON object, not {_kind(item)}")
        for namespace, value in item.items():
            if namespace.startswith("_"):
                continue
            features = namespaces.setdefault(namespace, {})
            path = f"{where}[{number}].{namespace}"
            if isinstance(value, dict):
                _flatten(value, "", features, path, 1)
            else:
                _add(namespace, value, features, path)
    return tuple(FeatureGroup(namespace, features) for namespace, features in namespaces.items() if features)


def _flatten(obj: Mapping[str, Any], prefix: str, into: dict[str, FeatureScalar], path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise JsonFeatureError(f"{path}: features nest deeper than {MAX_DEPTH} objects")
    for key, value in obj.items():
        if key.startswith("_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, f"{name}.", into, f"{path}.{key}", depth + 1)
        else:
            _add(name, value, into, f"{path}.{key}")


def _add(name: str, value: Any, into: dict[str, FeatureScalar], path: str) -> None:
    if value is None:
        return
    if isinstance(value, bool | str):
        into[name] = value
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise JsonFeatureError(f"{path}: {value} is not a finite number")
        into[name] = float(value)
    elif isinstance(value, list):
        for position, element in enumerate(value):
            if isinstance(element, str):
                into[f"{name}={element}"] = True
            elif element is None or isinstance(element, bool | int | float):
                _add(f"{name}.{position}", element, into, f"{path}[{position}]")
            else:
                raise JsonFeatureError(
                    f"{path}[{position}]: a list of features may hold strings, numbers or booleans, "
                    f"not {_kind(element)}"
                )
    else:
        raise JsonFeatureError(f"{path}: {_kind(value)} is not a feature value")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
