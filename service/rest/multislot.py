"""Personalizer's multi-slot bodies <-> the decision plane's RankSlots values. Translation only.

Rank: ``{"contextFeatures", "actions", "slots": [{"id", "features", "excludedActions",
"baselineAction"}], "eventId", "deferActivation"}`` -> ``{"eventId", "slots": [{"id",
"rewardActionId"}]}`` (a slot left without an action has no ``rewardActionId``). Reward:
``{"reward": [{"slotId", "value"}]}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from service.errors import invalid
from service.plane import check_id
from service.rest.converters import context_and_actions, optional
from service.rest.features import JsonFeatureError, feature_groups
from service.slots import RankSlotsInput, RankSlotsOutput, SlotInput


def rank_slots_input(decision_point: str, body: Any) -> RankSlotsInput:
    if not isinstance(body, dict):
        raise invalid("INVALID_JSON", "the multi-slot rank request must be a JSON object with actions and slots")
    actions = optional(body, "actions", list, "a list of actions") or []
    sent = optional(body, "slots", list, "a list of slots") or []
    event_id = optional(body, "eventId", str, "a string") or ""
    defer = bool(optional(body, "deferActivation", bool, "true or false"))
    context, candidates = context_and_actions(body, actions)
    return RankSlotsInput(
        decision_point=decision_point,
        slots=[_slot(number, slot) for number, slot in enumerate(sent)],
        candidates=candidates,
        context=context,
        event_id=event_id,
        defer_activation=defer,
    )


def _slot(number: int, slot: Any) -> SlotInput:
    where = f"slots[{number}]"
    if not isinstance(slot, dict) or not isinstance(slot.get("id"), str):
        raise invalid("INVALID_FIELD", f"{where} must be an object with a string id and a baselineAction")
    excluded = optional(slot, "excludedActions", list, "a list of action ids") or []
    if not all(isinstance(action_id, str) for action_id in excluded):
        raise invalid("INVALID_FIELD", f"{where}.excludedActions must hold action ids (strings)")
    baseline = slot.get("baselineAction")
    if not isinstance(baseline, str) or not baseline:
        # Personalizer required it too: what the application shows there without Kairos.
        raise invalid(
            "BASELINE_ACTION_REQUIRED",
            f"{where} (slot {slot['id'][:80]!r}) needs a baselineAction: the id of the action the application "
            "would show in this slot without Kairos, a different one for every slot",
        )
    try:
        features = feature_groups(slot.get("features"), f"{where}.features")
    except JsonFeatureError as err:
        raise invalid("INVALID_FEATURE", str(err)) from None
    return SlotInput(id=slot["id"], features=features, excluded_action_ids=excluded, baseline_action_id=baseline)


def rank_slots_response(output: RankSlotsOutput) -> dict[str, Any]:
    slots: list[dict[str, str]] = []
    for slot in output.slots:
        shown = {"id": slot.slot_id}
        if slot.action_id:
            shown["rewardActionId"] = slot.action_id
        slots.append(shown)
    return {"eventId": output.event_id, "slots": slots}


@dataclass(frozen=True)
class SlotReward:
    slot_id: str
    value: float


def slot_rewards(body: Any) -> list[SlotReward]:
    """The rewards of ``{"reward": [{"slotId": "hero", "value": 1.0}, ...]}``, every one checked before
    any is applied (so a bad one applies none)."""
    rewards = body.get("reward") if isinstance(body, dict) else None
    if not isinstance(rewards, list) or not rewards:
        raise invalid(
            "INVALID_REWARD", 'the multi-slot reward must be a JSON object {"reward": [{"slotId": ..., "value": ...}]}'
        )
    found = []
    for number, reward in enumerate(rewards):
        slot_id = reward.get("slotId") if isinstance(reward, dict) else None
        value = reward.get("value") if isinstance(reward, dict) else None
        if not isinstance(slot_id, str):
            shown = json.dumps(slot_id)[:80]
            raise invalid("INVALID_REWARD", f"reward[{number}] needs a slotId (a string), not {shown}")
        check_id("slot_id", slot_id)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise invalid("INVALID_REWARD", f"reward[{number}].value must be a finite number")
        found.append(SlotReward(slot_id, float(value)))
    return found
