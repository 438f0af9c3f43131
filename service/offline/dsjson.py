"""Logged decisions as VW DSJSON (one JSON object per line), and the checks applied when reading them back.

An exported event looks like this (one line; VW's ``--dsjson`` parser reads it as is)::

    {"_label_cost": -1.0, "_label_probability": 0.6, "_label_Action": 2, "_labelIndex": 1,
     "Timestamp": "2026-01-05T10:00:00.000Z", "EventId": "e-1", "a": [2, 1], "p": [0.6, 0.4],
     "c": {"a": {"tier=gold": 1, "age": 41.0}, "@": {"web": 1},
           "_multi": [{"!": {"offer-1": 1}, "b": {"price": 2.0}}, {"!": {"offer-2": 1}}]},
     "_kairos": {"decision_point": "offers", "actions": ["offer-1", "offer-2"],
                 "namespaces": {"a": "user", "b": "offer", "!": "_action", "@": "_channel"},
                 "reward_range": [-1.0, 1.0], "default_reward": false, "model_version": "offers:1:40"}}

Namespaces are keyed by the same one-character VW indices the service uses (VW keys interactions on a
namespace's first character, and hashes the namespace name): VW reads exactly the features the
service's model learned from, and ``--interactions ab`` over the export is the service's
``user*offer``. ``_kairos.namespaces`` gives each index's client name. Feature names keep the
service's percent-encoding (``tier=gold``), so they hash alike too. ``a`` lists the actions (1-based) in
ranked order with their probabilities in ``p``; ``_label_*`` describe the shown action (the first of
``a``): cost = -reward, as the service learns it. VW ignores ``_kairos``; its ``reward_range`` is null
for a decision point with SUM aggregation (a sum may leave the range of one reward).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain import SLOT_SEPARATOR, Decision

# A logged probability below this is refused when reading logs: 1/p weights beyond 10^6 make any estimate
# meaningless, and VW's own floor would silently change the label.
MIN_LOGGED_PROBABILITY = 1e-6


def iso_timestamp(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC with milliseconds (``2026-01-05T10:00:00.000Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_timestamp(text: str) -> int:
    """ISO-8601 (a date, or a date and time; no zone means UTC) as milliseconds since the epoch."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date or time (for example 2026-01-05 or 2026-01-05T10:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def line_namespaces(line: str) -> dict[str, dict[str, float]]:
    """The namespaces of a stored VW text line (``shared |a x y:2 |b z``) as ``{index: {feature: value}}``.

    Stored lines come from the service's encoder: feature tokens are percent-encoded, so a space only
    separates features, ``|`` only opens a namespace and ``:`` only introduces a value.
    """
    found: dict[str, dict[str, float]] = {}
    for segment in line.split("|")[1:]:
        tokens = segment.split()
        if not tokens:
            continue
        index, features = tokens[0], found.setdefault(tokens[0], {})
        if len(index) != 1:
            raise ValueError(f"unexpected namespace {index!r} in a stored line")
        for feature in tokens[1:]:
            name, _, value = feature.partition(":")
            features[name] = float(value) if value else 1.0
    return found


def event_json(
    decision: Decision,
    action_lines: list[str],
    *,
    decision_point: str,
    namespaces: dict[str, str],
    reward: float,
    default_reward: bool,
    reward_range: tuple[float, float] | None,
) -> dict[str, Any]:
    """One closed decision as a DSJSON event."""
    return logged_event(
        slot_id=decision.slot_id,
        event_id=decision.event_id,
        ranked_at_ms=decision.ranked_at_ms,
        shared=decision.shared,
        action_lines=action_lines,
        action_ids=decision.action_ids,
        order=decision.order,
        probabilities=decision.probabilities,
        model_version=decision.model_version,
        decision_point=decision_point,
        namespaces=namespaces,
        reward=reward,
        default_reward=default_reward,
        reward_range=reward_range,
    )


def logged_event(
    *,
    event_id: str,
    ranked_at_ms: int,
    shared: str,
    action_lines: list[str],
    action_ids: list[str],
    order: list[int],
    probabilities: list[float],
    model_version: str,
    decision_point: str,
    namespaces: dict[str, str],
    reward: float,
    default_reward: bool,
    reward_range: tuple[float, float] | None,
    slot_id: str = "",
) -> dict[str, Any]:
    """A DSJSON event from VW text lines: ``order`` ranks indices into the actions (the shown one first),
    ``probabilities`` are per action in action order."""
    context: dict[str, Any] = dict(line_namespaces(shared))
    context["_multi"] = [line_namespaces(line) for line in action_lines]
    chosen = order[0]
    return {
        "_label_cost": -reward,
        "_label_probability": probabilities[chosen],
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "Timestamp": iso_timestamp(ranked_at_ms),
        "Version": "1",
        "EventId": event_id,
        "a": [i + 1 for i in order],
        "c": context,
        "p": [probabilities[i] for i in order],
        "_kairos": {
            "decision_point": decision_point,
            "actions": action_ids,
            "namespaces": namespaces,
            "reward_range": list(reward_range) if reward_range else None,
            "default_reward": default_reward,
            "model_version": model_version,
            # A RankSlots slot: exported as a decision of its own (EventId is the event id, a US character and
            # the slot's position); these say which event and slot.
            **({"event_id": event_id.partition(SLOT_SEPARATOR)[0], "slot_id": slot_id} if slot_id else {}),
        },
    }


def dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# What is wrong with a log line, in a few words: reports count bad lines by these.
INVALID_JSON = "invalid JSON"
TRUNCATED = "truncated last line"
MISSING_FIELD = "missing field"
BAD_PROBABILITY = "unusable probability"
BAD_REWARD = "unusable reward"
UNKNOWN_ACTION = "unknown chosen action"
BAD_ACTIONS = "invalid actions"
BAD_FEATURE = "invalid feature"
BAD_TIMESTAMP = "invalid timestamp"
NOT_ACTIVATED = "not activated"


class BadEvent(ValueError):
    """A log line that cannot be used; the message says why, ``kind`` (one of the reasons above) what."""

    def __init__(self, message: str, kind: str = MISSING_FIELD) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LoggedEvent:
    """What evaluation needs of one valid DSJSON line (the line itself goes to VW's parser)."""

    line: str
    reward: float
    chosen: int  # 0-based index into the actions
    probability: float  # logged probability of the chosen action
    logged_pmf: tuple[float, ...]  # per action, in action order
    actions: int
    namespaces: dict[str, str]  # VW index -> client namespace name (empty for foreign logs)
    reward_range: tuple[float, float] | None


def _number(event: dict[str, Any], key: str, kind: str) -> float:
    value = event.get(key)
    if value is None:
        raise BadEvent(f"{key} is missing", kind)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadEvent(f"{key} is {value!r}, not a number", kind)
    if not math.isfinite(value):
        raise BadEvent(f"{key} is {value}, not a finite number", kind)
    return float(value)


def read_event(line: str) -> LoggedEvent:
    """Check one DSJSON line; raise BadEvent saying what is wrong with it."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError as err:
        raise BadEvent(f"not valid JSON ({err.msg} at column {err.colno}; a truncated line?)", INVALID_JSON) from None
    if not isinstance(event, dict):
        raise BadEvent("not a JSON object", INVALID_JSON)
    cost = _number(event, "_label_cost", BAD_REWARD)
    probability = _number(event, "_label_probability", BAD_PROBABILITY)
    if not MIN_LOGGED_PROBABILITY <= probability <= 1.0:
        raise BadEvent(
            f"_label_probability is {probability}; it must be within [{MIN_LOGGED_PROBABILITY:g}, 1]", BAD_PROBABILITY
        )
    context = event.get("c")
    actions = context.get("_multi") if isinstance(context, dict) else None
    if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
        raise BadEvent("c._multi (the list of actions) is missing or empty", BAD_ACTIONS)
    index = event.get("_labelIndex")
    if index is None and isinstance(event.get("_label_Action"), int):
        index = event["_label_Action"] - 1
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(actions):
        raise BadEvent(f"_labelIndex is {index!r}; it must index one of the {len(actions)} actions", UNKNOWN_ACTION)
    logged_pmf = _logged_pmf(event, len(actions), index, probability)
    meta = event.get("_kairos")
    meta = meta if isinstance(meta, dict) else {}
    namespaces = meta.get("namespaces")
    namespaces = namespaces if isinstance(namespaces, dict) else {}
    bounds = meta.get("reward_range")
    reward_range = None
    if isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds):
        reward_range = (float(bounds[0]), float(bounds[1]))
    return LoggedEvent(
        line=line,
        reward=-cost,
        chosen=index,
        probability=probability,
        logged_pmf=logged_pmf,
        actions=len(actions),
        namespaces={str(k): str(v) for k, v in namespaces.items()},
        reward_range=reward_range,
    )


def _logged_pmf(event: dict[str, Any], actions: int, chosen: int, probability: float) -> tuple[float, ...]:
    """The logging policy's probabilities per action, from ``a`` and ``p``; checked against the label."""
    ranked, probabilities = event.get("a"), event.get("p")
    if ranked is None or probabilities is None:
        # VW's DSJSON parser reads no actions at all from an event without them.
        raise BadEvent("a and p (the actions in ranked order and their probabilities) are missing", MISSING_FIELD)
    if not (isinstance(ranked, list) and isinstance(probabilities, list) and len(ranked) == len(probabilities)):
        raise BadEvent("a and p must be lists of the same length", BAD_PROBABILITY)
    if len(ranked) != actions or sorted(ranked) != list(range(1, actions + 1)):
        raise BadEvent(f"a must list each of the {actions} actions once (1-based)", BAD_ACTIONS)
    pmf = [0.0] * actions
    for action, p in zip(ranked, probabilities, strict=True):
        if isinstance(p, bool) or not isinstance(p, int | float) or not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise BadEvent(f"p holds {p!r}; probabilities must be within [0, 1]", BAD_PROBABILITY)
        pmf[action - 1] = float(p)
    if not math.isclose(sum(pmf), 1.0, abs_tol=1e-3):
        raise BadEvent(f"p sums to {sum(pmf):.4f}, not 1", BAD_PROBABILITY)
    if not math.isclose(pmf[chosen], probability, rel_tol=1e-6, abs_tol=1e-9):
        raise BadEvent(
            f"_label_probability {probability} differs from p of the chosen action ({pmf[chosen]})", BAD_PROBABILITY
        )
    return tuple(pmf)
