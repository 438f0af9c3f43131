"""Stored subject profiles and recent behaviour: merging, freshness, and joining them to a request.

Transport-free and storage-free. A profile keeps, per namespace and feature, the value and the time it
was written, so a decision point can ignore facts older than its namespace TTL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from policies.features import FeatureGroup, FeatureScalar

# namespace -> feature name -> (value, update time in ms)
Stored = dict[str, dict[str, tuple[FeatureScalar, int]]]
HOUR_MS = 3_600_000
# Behaviour: events kept per subject, and the half-life of the decayed per-category interest.
MAX_BEHAVIOUR_EVENTS = 50
INTEREST_HALF_LIFE_MS = 72 * HOUR_MS


def merge(
    stored: Stored, groups: Iterable[tuple[str, Mapping[str, FeatureScalar | None]]], time_ms: int, replace: bool
) -> Stored:
    """``stored`` with ``groups`` written at ``time_ms``: each feature sent replaces the stored one of the
    same namespace and name, and None removes it; with ``replace`` a namespace sent replaces the stored one
    whole. Namespaces left empty disappear."""
    merged: Stored = {ns: dict(features) for ns, features in stored.items()}
    for namespace, features in groups:
        target = {} if replace else merged.get(namespace, {})
        for name, value in features.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = (value, time_ms)
        merged[namespace] = target
    return {ns: features for ns, features in merged.items() if features}


def fresh(stored: Stored, ttl_ms: Mapping[str, int], now_ms: int) -> list[FeatureGroup]:
    """The profile as feature groups, without features older than their namespace's TTL."""
    groups = []
    for namespace, features in stored.items():
        ttl = ttl_ms.get(namespace)
        kept = {name: value for name, (value, written) in features.items() if ttl is None or now_ms - written <= ttl}
        if kept:
            groups.append(FeatureGroup(namespace, kept))
    return groups


def drop_expired(stored: Stored, ttl_ms: Mapping[str, int], now_ms: int) -> Stored:
    """``stored`` without the features older than their namespace's TTL (namespaces left empty go)."""
    kept: Stored = {}
    for namespace, features in stored.items():
        ttl = ttl_ms.get(namespace)
        fresh_ones = features if ttl is None else {n: vt for n, vt in features.items() if now_ms - vt[1] <= ttl}
        if fresh_ones:
            kept[namespace] = fresh_ones
    return kept


def join(stored: Sequence[FeatureGroup], request: Sequence[FeatureGroup]) -> list[FeatureGroup]:
    """The request context with the stored profile under it: per feature, the request wins."""
    if not stored:
        return list(request)
    by_namespace: dict[str, dict[str, FeatureScalar]] = {}
    for group in (*stored, *request):
        by_namespace.setdefault(group.namespace, {}).update(group.features)
    return [FeatureGroup(ns, features) for ns, features in by_namespace.items()]


def as_features(groups: Iterable[FeatureGroup]) -> dict[str, dict[str, FeatureScalar]]:
    found: dict[str, dict[str, FeatureScalar]] = {}
    for group in groups:
        found.setdefault(group.namespace, {}).update(group.features)
    return found


def encode(stored: Stored) -> bytes:
    return json.dumps(
        {ns: {name: [v, t] for name, (v, t) in features.items()} for ns, features in stored.items()},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def decode(raw: bytes) -> Stored:
    data = json.loads(raw)
    return {ns: {name: (v, t) for name, (v, t) in features.items()} for ns, features in data.items()}


def feature_count(stored: Stored) -> int:
    return sum(len(features) for features in stored.values())


@dataclass(frozen=True)
class BehaviourEvent:
    time_ms: int
    event_type: str
    category: str = ""


def append_event(events: list[BehaviourEvent], event: BehaviourEvent) -> list[BehaviourEvent]:
    """The newest MAX_BEHAVIOUR_EVENTS events, oldest first (events may arrive out of order)."""
    merged = sorted([*events, event], key=lambda e: e.time_ms)
    return merged[-MAX_BEHAVIOUR_EVENTS:]


def encode_events(events: Sequence[BehaviourEvent]) -> bytes:
    return json.dumps([[e.time_ms, e.event_type, e.category] for e in events], separators=(",", ":")).encode()


def decode_events(raw: bytes) -> list[BehaviourEvent]:
    return [BehaviourEvent(*e) for e in json.loads(raw)]


def behaviour_features(events: Sequence[BehaviourEvent], now_ms: int) -> dict[str, FeatureScalar]:
    """What the model sees of recent behaviour: the last event and category, counts in the last hour, day
    and week, log2 of the hours since the last event, and a decaying interest per category."""
    past = [e for e in events if e.time_ms <= now_ms]
    if not past:
        return {}
    last = past[-1]
    features: dict[str, FeatureScalar] = {"last_type": last.event_type}
    if last.category:
        features["last_category"] = last.category
    hour = day = week = 0
    interest: dict[str, float] = {}
    for event in past:  # one pass: window counts and the decayed interest per category
        age = now_ms - event.time_ms
        hour += age < HOUR_MS
        day += age < 24 * HOUR_MS
        week += age < 168 * HOUR_MS
        if event.category:
            interest[event.category] = interest.get(event.category, 0.0) + 0.5 ** (age / INTEREST_HALF_LIFE_MS)
    features["events_1h"], features["events_24h"], features["events_7d"] = float(hour), float(day), float(week)
    features["log2_hours_since_last"] = round(math.log2(1.0 + (now_ms - last.time_ms) / HOUR_MS), 3)
    for category, weight in interest.items():
        if weight >= 0.01:  # decayed away: no longer steers anything
            features[f"interest={category}"] = round(weight, 3)
    return features
