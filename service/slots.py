"""Multi-slot ranking (RankSlots): one action per slot, each slot a decision of its own.

Why not VW's conditional contextual bandit (``ccb_explore_adf``)? Kairos runs the reduction CCB itself
runs, one ``cb_explore_adf`` decision per slot in slot order, conditioned on the slot (its features and its
id, in the ``_slot`` namespace, crossed with every interaction as CCB does) and with the actions earlier
slots took removed, but it does the removal itself:

- Honest propensities. ``ccb_explore_adf`` removes from the later slots the *first* action it lists for a
  slot (measured with VW 9.11: its most likely one), so an application that shows that action shows it
  deterministically while the log says it had probability p < 1; one that samples instead contradicts what
  VW removed from the later slots. Here each slot draws its action from its distribution (seeded by the
  event and slot, as Rank does), the drawn action leaves the later slots, and the probability logged is the
  one it was drawn with. ``python -m benchmarks.slots``: 0.97 of the oracle's clicks against 0.95 for raw
  ``ccb_explore_adf``, same features and explorer, on a page where each offer's value depends on the slot
  and the audience; 100% against 0% of slot decisions logged with their true probability.
- One model and one journal. A slot decision is an ordinary logged decision (the shared line carries the
  slot) learned by the decision point's ``cb_explore_adf`` model through the same exactly-once journal,
  checkpoints and replay; Rank and RankSlots can feed the same model. A CCB workspace needs its own model
  type, label format and example layout, so learning, replay, export and the evaluator would each need a
  second path.
- Tooling as it is. ``kairos export`` writes each slot as a cb DSJSON event (``EVENT<US>k``), so
  ``kairos evaluate``/``tune`` replay multi-slot traffic with their existing estimators.
- Durability and windows per slot. Every slot's decision is committed in the same LMDB transaction before
  the reply; each has its own reward, reward window and default reward; activation applies to them all.

Storage: the first slot's decision is logged under the event id (and lists every slot id), slot k > 0
under ``slot_event_id(event_id, k)``; a slot left with no action (its eligible actions all taken by
earlier slots) has no decision and no reward.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from policies.contact import NO_TERMS
from policies.features import FeatureError, FeatureGroup, shared_line
from policies.ranking import Ranking, draw_for
from policies.slots import Placement, SlotChoice, assign, assign_fallback
from policies.vw import PolicyError, Prediction
from service import modes
from service.customers import RankContext
from service.domain import MAX_SLOTS, Decision, slot_event_id
from service.errors import invalid
from service.learning.models import ModelState, now_ms
from service.plane import DecisionPlane, RankCandidate, RankInput, check_id, event_kind_error, log
from service.store.lmdb_store import DAY_MS, Store, Txn


@dataclass(frozen=True)
class SlotInput:
    id: str
    features: Sequence[FeatureGroup] = ()
    excluded_action_ids: Sequence[str] = ()
    # What the existing system would show in this slot: the fallback ranking puts it there.
    baseline_action_id: str = ""


@dataclass(frozen=True)
class RankSlotsInput:
    decision_point: str
    slots: Sequence[SlotInput]
    candidates: Sequence[RankCandidate] = ()  # empty: the decision point's catalog
    context: Sequence[FeatureGroup] = ()
    event_id: str = ""
    subject_id: str = ""
    defer_activation: bool = False
    channel: str = ""
    deadline: float | None = None  # the caller's deadline on time.monotonic()'s clock


@dataclass(frozen=True)
class SlotOutput:
    slot_id: str
    # The slot's ranking of the actions it could take, ranking[0] its action; empty when none was left.
    ranking: list[tuple[str, float]]

    @property
    def action_id(self) -> str:
        return self.ranking[0][0] if self.ranking else ""


@dataclass(frozen=True)
class RankSlotsOutput:
    event_id: str
    slots: list[SlotOutput]
    model_version: str
    fallback_reason: str = ""


@dataclass
class _Served:
    """How each slot was served (its learning-mode route) and the model's prediction where it made one."""

    routes: list[modes.Route]
    predictions: dict[int, Prediction] = field(default_factory=dict)

    def model_probabilities(self, index: int) -> list[float]:
        return modes.model_predicted(self.routes[index], self.predictions.get(index))[0]

    def model_scores(self, index: int) -> list[float]:
        return modes.model_predicted(self.routes[index], self.predictions.get(index))[1]


def _check_slots(slots: Sequence[SlotInput]) -> None:
    if not slots:
        raise invalid("NO_SLOTS", "the request has no slots; send at least one in `slots`")
    if len(slots) > MAX_SLOTS:
        raise invalid(
            "TOO_MANY_SLOTS", f"{len(slots)} slots sent; at most {MAX_SLOTS} are allowed", limit=str(MAX_SLOTS)
        )
    seen: set[str] = set()
    baselines: set[str] = set()
    for slot in slots:
        check_id("slot_id", slot.id)
        if slot.id in seen:
            raise invalid("DUPLICATE_SLOT_ID", f"slot id {slot.id[:80]!r} appears more than once")
        seen.add(slot.id)
        if slot.baseline_action_id:
            if slot.baseline_action_id in baselines:
                raise invalid(
                    "DUPLICATE_BASELINE_ACTION",
                    f"baseline action {slot.baseline_action_id[:80]!r} is given for more than one slot; each slot "
                    "shows a different action, so each needs its own baseline",
                )
            baselines.add(slot.baseline_action_id)
            if slot.baseline_action_id in slot.excluded_action_ids:
                raise invalid(
                    "BASELINE_ACTION_EXCLUDED",
                    f"slot {slot.id[:80]!r} excludes its own baseline action {slot.baseline_action_id[:80]!r}",
                )


def _choices(
    slots: Sequence[SlotInput], candidates: Sequence[RankCandidate], sent: set[str] | None
) -> list[SlotChoice]:
    """``sent``: the ids of the actions the request sent (None: it ranks the catalog, whose actions the
    contact rules may have left out, so a baseline missing from ``candidates`` is simply not shown)."""
    ids = [c.id for c in candidates]
    choices = []
    for slot in slots:
        if sent is not None and slot.baseline_action_id and slot.baseline_action_id not in sent:
            raise invalid(
                "UNKNOWN_BASELINE_ACTION",
                f"the baseline action {slot.baseline_action_id[:80]!r} of slot {slot.id[:80]!r} is not one of the "
                "actions",
            )
        excluded = set(slot.excluded_action_ids)
        eligible = tuple(i for i, action_id in enumerate(ids) if action_id not in excluded)
        if not eligible:
            raise invalid(
                "ALL_ACTIONS_EXCLUDED", f"slot {slot.id[:80]!r} excludes every action; nothing is left to put there"
            )
        choices.append(SlotChoice(eligible, slot.baseline_action_id))
    return choices


class SlotRanker:
    """RankSlots on the decision plane's parts (its store, models, encoders and customer context)."""

    def __init__(self, plane: DecisionPlane) -> None:
        self.plane = plane

    @property
    def store(self) -> Store:
        return self.plane.store

    def rank(self, request: RankSlotsInput) -> RankSlotsOutput:
        plane = self.plane
        state = plane.state_of(request.decision_point)
        check_id("event_id", request.event_id, required=False)
        check_id("subject_id", request.subject_id, required=False)
        _check_slots(request.slots)
        if request.event_id:  # a retry answers as before (the rules might now exclude its actions)
            with self.store.read() as txn:
                existing = self.store.get_decision(txn, state.name, request.event_id)
                if existing is not None:
                    return self._answer(txn, state.name, existing)
        as_rank = RankInput(
            decision_point=request.decision_point,
            candidates=request.candidates,
            context=request.context,
            subject_id=request.subject_id,
            channel=request.channel,
        )
        subject: RankContext | None = None
        context: Sequence[FeatureGroup] = request.context
        if request.subject_id or not request.candidates or state.record.config.optimize_value:
            subject, candidates, context = plane.subject_rank(as_rank, state)
        else:
            candidates = plane.eligible_candidates(as_rank)
        if len(request.slots) > len(candidates):
            raise invalid(
                "MORE_SLOTS_THAN_ACTIONS",
                f"{len(request.slots)} slots but only {len(candidates)} eligible actions; each slot shows a "
                "different action, so send at most as many slots as actions",
                limit=str(len(candidates)),
            )
        sent = {c.id for c in request.candidates} if request.candidates else None
        choices = _choices(request.slots, candidates, sent)
        # The learning mode and the holdout, per slot, before any encoding (a refused request leaves the
        # namespace table alone): the baseline modes need every slot's baseline among its eligible actions.
        routes = [
            modes.route(
                state.record.config,
                request.subject_id,
                slot.baseline_action_id,
                [candidates[i].id for i in choice.eligible],
            )
            for slot, choice in zip(request.slots, choices, strict=True)
        ]
        table = state.record.namespaces
        known_namespaces = len(table.indices)
        committed = False
        try:
            output, committed = self._decide(state, request, subject, candidates, context, choices, routes)
            return output
        finally:
            if not committed and len(table.indices) != known_namespaces:
                # Refused after its slots or actions gave new namespaces their indices (as Rank does).
                plane.withdraw_namespaces(state, known_namespaces)

    def _decide(
        self,
        state: ModelState,
        request: RankSlotsInput,
        subject: RankContext | None,
        candidates: Sequence[RankCandidate],
        context: Sequence[FeatureGroup],
        choices: list[SlotChoice],
        routes: list[modes.Route],
    ) -> tuple[RankSlotsOutput, bool]:
        """Encode, place and commit every slot's decision; the flag says whether this call committed them."""
        plane = self.plane
        table = state.record.namespaces
        known_namespaces = len(table.indices)
        try:
            shared = [
                shared_line([*context, *slot.features], table, request.channel, slot.id) for slot in request.slots
            ]
            lines, keys, features = plane.encode_actions(state.name, candidates, table)
            if subject is not None and subject.history:
                plane.add_exposure_features(state.name, subject, candidates, lines, keys)
        except FeatureError as err:
            raise invalid("INVALID_FEATURE", str(err)) from None
        features += sum(len(g.features) for g in request.context)
        features += sum(len(g.features) for slot in request.slots for g in slot.features)
        if features > plane.limits.max_features:
            raise invalid(
                "TOO_MANY_FEATURES",
                f"the request has {features} features; at most {plane.limits.max_features} are allowed",
                limit=str(plane.limits.max_features),
            )

        event_id = request.event_id or uuid.uuid4().hex
        served = _Served(routes)
        placements, fallback_reason = self._choose(state, request, choices, candidates, shared, lines, event_id, served)
        ranked_at = now_ms()
        line_day = ranked_at // DAY_MS
        new_lines = self.store.new_lines(line_day, keys, lines)
        fingerprint = f"{zlib.crc32(''.join(shared).encode()):08x}{zlib.crc32(b''.join(keys)):08x}"
        slot_ids = [slot.id for slot in request.slots]
        decisions: list[Decision] = []
        for index, (slot, placement) in enumerate(zip(request.slots, placements, strict=True)):
            if placement is None:
                continue
            decision = Decision(
                event_id=slot_event_id(event_id, index),
                ranked_at_ms=ranked_at,
                deadline_ms=ranked_at + state.record.config.reward_wait_ms,
                shared=shared[index],
                action_ids=[candidates[i].id for i in placement.offered],
                line_day=line_day,
                line_keys=b"".join(keys[i] for i in placement.offered),
                order=list(placement.ranking.order),
                probabilities=list(placement.ranking.probabilities),
                model_version="" if fallback_reason or not served.routes[index].uses_model else state.model_version,
                fingerprint=fingerprint,
                deferred=request.defer_activation,
                subject_id=request.subject_id,
                fallback=fallback_reason,
                served_by=served.routes[index].served_by,
                model_probabilities=served.model_probabilities(index),
                model_scores=served.model_scores(index),
                slots=slot_ids if index == 0 else [],
                slot_id=slot.id,
            )
            if subject is not None and state.record.config.optimize_value:
                chosen = subject.terms.get(decision.action_ids[decision.chosen], NO_TERMS)
                decision.value = chosen.business_value or 1.0
            decisions.append(decision)

        deltas = {"ranks": 1, "open_events": len(decisions), "fallbacks": int(bool(fallback_reason))}
        deltas["explored"] = sum(d.chosen_probability < max(d.probabilities) for d in decisions)
        existing = plane.commit_decisions(
            state,
            request.event_id,
            subject,
            decisions,
            request.channel,
            new_lines,
            deltas,
            namespaces_grew=len(table.indices) != known_namespaces,
        )
        if existing is not None:
            with self.store.read() as txn:
                return self._answer(txn, state.name, existing), False
        output = RankSlotsOutput(
            event_id=event_id,
            slots=[
                SlotOutput(slot.id, _ranking(candidates, placement) if placement else [])
                for slot, placement in zip(request.slots, placements, strict=True)
            ],
            model_version=decisions[0].model_version,
            fallback_reason=fallback_reason,
        )
        return output, True

    def _choose(
        self,
        state: ModelState,
        request: RankSlotsInput,
        choices: list[SlotChoice],
        candidates: Sequence[RankCandidate],
        shared: list[str],
        lines: list[str],
        event_id: str,
        served: _Served,
    ) -> tuple[list[Placement | None], str]:
        """Every slot's placement as its route asks (the model's, the baseline's, the holdout's), or
        (fail-open) the fallback placements and why the model did not answer."""
        config = state.record.config
        seed = config.effective_seed
        uses_model = any(route.uses_model for route in served.routes)
        needed = state.predict_s * len(choices) + self.plane.limits.fallback_margin_s  # one predict per slot
        if uses_model and not state.loaded:
            reason = "MODEL_NOT_LOADED"
        elif uses_model and request.deadline is not None and request.deadline - time.monotonic() < needed:
            reason = "DEADLINE"
        else:

            def rank_slot(index: int, offered: tuple[int, ...]) -> Ranking:
                ids = [candidates[i].id for i in offered]
                # Routed again on what is left: under the holdout an earlier slot may have taken this one's
                # baseline (the baseline modes show every slot its own, so theirs is always left).
                route = modes.route(config, request.subject_id, request.slots[index].baseline_action_id, ids)
                served.routes[index] = route
                draw = draw_for(seed, slot_event_id(event_id, index))
                if not route.uses_model:
                    return route.without_model(len(offered), draw)
                started = time.perf_counter()
                prediction = state.policy.predict(shared[index], [lines[i] for i in offered])
                state.predict_s += (time.perf_counter() - started - state.predict_s) * 0.1
                served.predictions[index] = prediction
                return route.with_model(prediction, draw)

            try:
                return assign(choices, rank_slot), ""
            except PolicyError as err:
                log.warning("model_failed_fallback_used", decision_point=state.name, error=str(err))
                reason = "MODEL_ERROR"
                served.predictions.clear()
        return assign_fallback(choices, [c.id for c in candidates]), reason

    def _answer(self, txn: Txn, name: str, first: Decision) -> RankSlotsOutput:
        """The stored answer of a multi-slot event, from its first slot's decision."""
        if not first.slot_id:
            raise event_kind_error(first.event_id, ranked_by="Rank")
        slots = []
        for index, slot_id in enumerate(first.slots):
            decision = first if index == 0 else self.store.get_decision(txn, name, slot_event_id(first.event_id, index))
            ranking = (
                []
                if decision is None
                else [(decision.action_ids[i], decision.probabilities[i]) for i in decision.order]
            )
            slots.append(SlotOutput(slot_id, ranking))
        return RankSlotsOutput(first.event_id, slots, first.model_version, first.fallback)


def _ranking(candidates: Sequence[RankCandidate], placement: Placement) -> list[tuple[str, float]]:
    ids = [candidates[i].id for i in placement.offered]
    probabilities = placement.ranking.probabilities
    return [(ids[i], probabilities[i]) for i in placement.ranking.order]
