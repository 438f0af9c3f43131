"""Personalizer's JSON bodies <-> the decision plane's values. Translation and defaults only."""

from __future__ import annotations

import json
import math
from typing import Any

from policies.features import Candidate, FeatureGroup
from service.errors import invalid
from service.plane import RankInput, RankOutput
from service.rest.features import JsonFeatureError, feature_groups


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """The request body as JSON; a clear INVALID_JSON error when it is not (NaN and Infinity included)."""
    if not raw:
        raise invalid("INVALID_JSON", "the request needs a JSON body")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise invalid("INVALID_JSON", f"the request body is not valid JSON: {err}") from None


def optional(body: dict[str, Any], key: str, kind: type, description: str) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise invalid("INVALID_FIELD", f"{key} must be {description}, not {json.dumps(value)[:80]}")
    return value


def rank_input(decision_point: str, body: Any) -> RankInput:
    if not isinstance(body, dict):
        raise invalid("INVALID_JSON", "the rank request must be a JSON object with contextFeatures and actions")
    actions = optional(body, "actions", list, "a list of actions") or []
    excluded = optional(body, "excludedActions", list, "a list of action ids") or []
    if not all(isinstance(action_id, str) for action_id in excluded):
        raise invalid("INVALID_FIELD", "excludedActions must hold action ids (strings)")
    event_id = optional(body, "eventId", str, "a string") or ""
    defer = bool(optional(body, "deferActivation", bool, "true or false"))
    context, candidates = context_and_actions(body, actions)
    skipped = set(excluded)
    baseline = next((c.id for c in candidates if c.id not in skipped), "")
    return RankInput(
        decision_point=decision_point,
        candidates=candidates,
        context=context,
        event_id=event_id,
        excluded_action_ids=excluded,
        defer_activation=defer,
        baseline_action_id=baseline,  # Personalizer's baseline: the first action not excluded
    )


def context_and_actions(body: dict[str, Any], actions: list[Any]) -> tuple[tuple[FeatureGroup, ...], list[Candidate]]:
    """The ``contextFeatures`` and the ``actions`` of a rank request (single- or multi-slot)."""
    try:
        context = feature_groups(body.get("contextFeatures"), "contextFeatures")
        return context, [_candidate(number, action) for number, action in enumerate(actions)]
    except JsonFeatureError as err:
        raise invalid("INVALID_FEATURE", str(err)) from None


def _candidate(number: int, action: Any) -> Candidate:
    if not isinstance(action, dict) or not isinstance(action.get("id"), str):
        raise JsonFeatureError(f"actions[{number}] must be an object with a string id and a list of features")
    features = feature_groups(action.get("features"), f"actions[{number}].features")
    # The encoding cache keys on the exact features: their canonical JSON.
    key = json.dumps([action["id"], action.get("features")], sort_keys=True, separators=(",", ":")).encode()
    return Candidate(action["id"], features, cache_key=b"rest\x00" + key)


def rank_response(output: RankOutput, request: RankInput) -> dict[str, Any]:
    """Personalizer's answer: every action, excluded ones last with probability 0; the chosen one first."""
    ranking = [{"id": action_id, "probability": probability} for action_id, probability in output.ranking]
    ranked = {action_id for action_id, _ in output.ranking}
    ranking += [{"id": c.id, "probability": 0.0} for c in request.candidates if c.id not in ranked]
    return {"eventId": output.event_id, "ranking": ranking, "rewardActionId": output.ranking[0][0]}


def reward_value(body: Any) -> float:
    """The reward of ``{"value": 0.5}`` (both SDKs send that object)."""
    value = body.get("value") if isinstance(body, dict) else body
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid("INVALID_REWARD", 'the reward must be a JSON object {"value": <finite number>}')
    return float(value)
