"""The decision plane: Rank, Reward, Activate and decision point administration.

Transport-free: it takes and returns plain Python values and raises
:class:`KairosError`; the gRPC servicers (and later the REST layer) only
translate. Every method runs on one thread (the server's event loop), so the
models and the LMDB writer need no locks.

Every acknowledged change is committed to LMDB before the method returns;
in-memory state changes only after the commit succeeds.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from policies import profile as profiles
from policies.contact import NO_TERMS, RuleError, Subject, eligible, exposure_key, exposure_summaries
from policies.features import (
    EXPOSURE_NAMESPACE,
    CandidateLike,
    FeatureError,
    FeatureGroup,
    NamespaceTable,
    action_line,
    encode_feature,
    shared_line,
)
from policies.learner_options import OptionsError
from policies.lru import LRU
from policies.ranking import Ranking, draw_for, fallback
from policies.vw import PolicyError, Prediction, VWPolicy
from service import modes
from service.audit import AuditLog
from service.customers import ContactRaced, CustomerContext, RankContext
from service.domain import (
    EXPIRED,
    LEARNING,
    LEARNING_MODES,
    LINE_KEY_BYTES,
    MAX_HOLDOUT_SHARE,
    MAX_ID_BYTES,
    MAX_REWARD_WAIT_MS,
    MIN_REWARD_WAIT_MS,
    NAME_PATTERN,
    OPEN,
    Decision,
    DecisionPointConfig,
    DecisionPointRecord,
    slot_event_id,
)
from service.errors import Code, KairosError, failed_precondition, invalid, not_found
from service.learning import challenger as challengers
from service.learning import models
from service.learning.models import ModelState, now_ms
from service.offline.export import NO_END, ExportProgress, export_pages
from service.store.lmdb_store import DAY_MS, CheckpointMeta, JournalEntry, Store, Txn

if TYPE_CHECKING:
    from service.slots import RankSlotsInput, RankSlotsOutput

log = structlog.get_logger(__name__)
MAX_REWARD_IDS = 1000
# Encoded action lines kept per decision point, keyed by the candidate's cache_key.
ACTION_LINE_CACHE = 20_000


@dataclass(frozen=True)
class Limits:
    max_actions: int = 256
    max_features: int = 4096  # context and action features of one request together
    # Rank falls back when the caller's deadline leaves less than the model's usual predict time plus this.
    fallback_margin_s: float = 0.001


class RankCandidate(CandidateLike, Protocol):
    @property
    def cache_key(self) -> bytes:
        """Identifies the candidate's id and features exactly; empty: do not cache its encoding."""
        ...


@dataclass(frozen=True)
class RankInput:
    decision_point: str
    candidates: Sequence[RankCandidate]
    context: Sequence[FeatureGroup] = ()
    event_id: str = ""
    subject_id: str = ""
    excluded_action_ids: Iterable[str] = ()
    defer_activation: bool = False
    baseline_action_id: str = ""
    channel: str = ""
    deadline: float | None = None  # the caller's deadline on time.monotonic()'s clock


@dataclass(frozen=True)
class RankOutput:
    event_id: str
    ranking: list[tuple[str, float]]
    model_version: str
    fallback_reason: str = ""  # empty when the model answered
    served_by: str = ""  # who chose the first action (service.domain SERVED_*)


@dataclass(frozen=True)
class Stats:
    decision_point: str
    counters: dict[str, int]
    learned: int
    average_reward: float
    model_version: str
    backlog: int
    last_checkpoint_ms: int
    challenger: challengers.ChallengerSummary | None = None
    learning_mode: str = "online"
    apprentice: modes.ApprenticeSummary | None = None
    holdout: modes.HoldoutSummary | None = None


@dataclass
class _Pending:
    """What a transaction will change: counter increments (added inside the transaction, so several
    processes can write) and journal entries, applied to memory only after it commits."""

    deltas: collections.Counter[str] = field(default_factory=collections.Counter)
    journal: list[JournalEntry] = field(default_factory=list)
    # Closed events with the reward learned (or that would be): the mode statistics count them.
    outcomes: list[tuple[Decision, float]] = field(default_factory=list)


def check_id(kind: str, value: str, required: bool = True, printable: bool = True) -> None:
    if required and not value:
        raise invalid(f"{kind.upper()}_REQUIRED", f"{kind} is required")
    if len(value.encode()) > MAX_ID_BYTES:
        raise invalid(f"{kind.upper()}_TOO_LONG", f"{kind} is longer than {MAX_ID_BYTES} bytes of UTF-8")
    if printable and not value.isprintable():
        # Control, format and separator characters (NUL, newlines, bidi overrides) in an id would end
        # up in keys, logs and exports; letters of any script and spaces are fine.
        raise invalid(
            f"INVALID_{kind.upper()}",
            f"{kind} may contain only printable characters (no control or format characters such as "
            "NUL, newline or tab)",
        )


def check_reward(config: DecisionPointConfig, value: float) -> None:
    if not math.isfinite(value) or not config.reward_min <= value <= config.reward_max:
        raise invalid(
            "REWARD_OUT_OF_RANGE",
            f"reward {value} must be finite and within [{config.reward_min:g}, {config.reward_max:g}], "
            "the decision point's reward range",
        )


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise invalid(
            "INVALID_DECISION_POINT_NAME",
            f"decision point name {name[:80]!r} must match [a-z0-9][a-z0-9_-]{{0,63}}",
        )


def validate_config(config: DecisionPointConfig) -> None:
    check_name(config.name)
    try:
        config.learner.validate()
    except OptionsError as err:
        raise invalid("INVALID_LEARNER_OPTIONS", str(err)) from None
    if config.reward_wait_ms < MIN_REWARD_WAIT_MS:
        raise invalid("REWARD_WAIT_TOO_SHORT", f"reward_wait must be at least {MIN_REWARD_WAIT_MS} ms")
    if config.reward_wait_ms > MAX_REWARD_WAIT_MS:
        raise invalid("REWARD_WAIT_TOO_LONG", "reward_wait must be at most 7 days; events wait in the log until then")
    low, high = config.reward_min, config.reward_max
    if not (math.isfinite(low) and math.isfinite(high) and low < high and max(abs(low), abs(high)) <= 1e6):
        raise invalid("INVALID_REWARD_RANGE", f"reward range [{low}, {high}] must be finite, min < max, within 1e6")
    if not (math.isfinite(config.default_reward) and low <= config.default_reward <= high):
        raise invalid("INVALID_DEFAULT_REWARD", f"default_reward must lie in the reward range [{low}, {high}]")
    try:
        config.contact.validate()
    except RuleError as err:
        raise invalid("INVALID_CONTACT_POLICY", str(err)) from None
    if any(ttl <= 0 for _, ttl in config.namespace_ttl_ms):
        raise invalid("INVALID_NAMESPACE_TTL", "namespace TTLs must be positive durations")
    if config.learning_mode not in LEARNING_MODES:
        raise invalid("INVALID_LEARNING_MODE", f"learning mode {config.learning_mode!r} is unknown")
    if not (math.isfinite(config.holdout_share) and 0.0 <= config.holdout_share <= MAX_HOLDOUT_SHARE):
        raise invalid(
            "INVALID_HOLDOUT_SHARE",
            f"holdout_share is {config.holdout_share}; it must lie within [0, {MAX_HOLDOUT_SHARE}] "
            "(0 holds nobody out)",
        )
    if not 1 <= config.apprentice_min_events <= 1_000_000_000:
        raise invalid("INVALID_APPRENTICE_MIN_EVENTS", "apprentice_min_events must lie within [1, 1e9]")


class DecisionPlane:
    def __init__(
        self,
        store: Store,
        models_dir: Path,
        limits: Limits | None = None,
        checkpoints_kept: int = models.CHECKPOINTS_KEPT,
    ) -> None:
        self.store = store
        self.models_dir = models_dir
        self.limits = limits or Limits()
        self.checkpoints_kept = max(checkpoints_kept, 1)
        self.states: dict[str, ModelState] = {}
        self._action_lines: dict[str, LRU[bytes, tuple[str, int, bytes]]] = {}
        self.customers = CustomerContext(store)
        self.mode_stats = modes.ModeStats(store)
        self.audit = AuditLog(store)
        self.clock: Callable[[], int] = now_ms  # for profile freshness and contact rules; tests move it
        # Called after a commit made events learnable; the learning loop sets it.
        self.on_learnable: Callable[[], None] = lambda: None

    def load_all(self) -> None:
        """Load every decision point's newest valid checkpoint; the journal after it waits in the backlog."""
        with self.store.read() as txn:
            records = self.store.load_decision_points(txn)
        for name, record in records.items():
            self.states[name] = models.load(self.store, self.models_dir, record)

    def state_of(self, name: str) -> ModelState:
        state = self.states.get(name)
        if state is None:
            check_name(name)
            raise not_found("DECISION_POINT_NOT_FOUND", f"decision point {name!r} does not exist; create it first")
        return state

    # -- serving ------------------------------------------------------------

    def rank(self, request: RankInput) -> RankOutput:
        for _ in range(5):
            try:
                return self._rank_once(request)
            except ContactRaced:  # another process showed this subject something meanwhile: decide again
                continue
        raise KairosError(
            Code.UNAVAILABLE, "CONTACT_HISTORY_BUSY", "this subject's contact history is changing too fast; retry"
        )

    def rank_slots(self, request: RankSlotsInput) -> RankSlotsOutput:
        """One action per slot (see service.slots); every slot's decision is committed before it returns."""
        from service.slots import SlotRanker  # built on this plane's parts, so imported here

        for _ in range(5):
            try:
                return SlotRanker(self).rank(request)
            except ContactRaced:
                continue
        raise KairosError(
            Code.UNAVAILABLE, "CONTACT_HISTORY_BUSY", "this subject's contact history is changing too fast; retry"
        )

    def _rank_once(self, request: RankInput) -> RankOutput:
        state = self.state_of(request.decision_point)
        check_id("event_id", request.event_id, required=False)
        check_id("subject_id", request.subject_id, required=False)
        subject: RankContext | None = None
        context: Sequence[FeatureGroup] = request.context
        if request.subject_id or not request.candidates or state.record.config.optimize_value:
            # The customer context: stored profile, catalog, contact rules, business values.
            if request.event_id:  # a retry answers as before, even if the rules would now exclude its actions
                with self.store.read() as txn:
                    existing = self.store.get_decision(txn, state.name, request.event_id)
                if existing is not None:
                    return _answer(existing)
            subject, candidates, context = self.subject_rank(request, state)
        else:
            candidates = self.eligible_candidates(request)
        # Before any encoding: a refused request must leave the namespace table alone.
        ids = [c.id for c in candidates]
        route = modes.route(state.record.config, request.subject_id, request.baseline_action_id, ids)
        table = state.record.namespaces
        known_namespaces = len(table.indices)
        committed = False
        try:
            output, committed = self._decide(state, request, subject, candidates, context, route, known_namespaces)
            return output
        finally:
            if not committed and len(table.indices) != known_namespaces:
                # This Rank gave new namespaces their indices but was refused, or answered from an earlier
                # decision: withdraw them, or they would live on in memory only, never saved, and the model
                # would never be reloaded with their interactions. Cached action lines may use them.
                table.forget_since(known_namespaces)
                self._action_lines.pop(state.name, None)

    def _decide(
        self,
        state: ModelState,
        request: RankInput,
        subject: RankContext | None,
        candidates: list[RankCandidate],
        context: Sequence[FeatureGroup],
        route: modes.Route,
        known_namespaces: int,
    ) -> tuple[RankOutput, bool]:
        """Encode, rank and commit one decision; the flag says whether this call committed it."""
        table = state.record.namespaces
        try:
            shared = shared_line(context, table, request.channel)
            lines, keys, features = self.encode_actions(state.name, candidates, table)
            if subject is not None and subject.history:
                self.add_exposure_features(state.name, subject, candidates, lines, keys)
        except FeatureError as err:
            raise invalid("INVALID_FEATURE", str(err)) from None
        features += sum(len(group.features) for group in request.context)
        if features > self.limits.max_features:
            raise invalid(
                "TOO_MANY_FEATURES",
                f"the request has {features} features; at most {self.limits.max_features} are allowed",
                limit=str(self.limits.max_features),
            )
        line_keys = b"".join(keys)
        fingerprint = f"{zlib.crc32(shared.encode()):08x}{zlib.crc32(line_keys.hex().encode()):08x}"

        if request.event_id:
            with self.store.read() as txn:
                existing = self.store.get_decision(txn, state.name, request.event_id)
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    log.warning("rank_retry_differs", decision_point=state.name, event_id=request.event_id)
                return _answer(existing), False
        event_id = request.event_id or uuid.uuid4().hex

        ranking, fallback_reason, prediction = self._choose(state, request, candidates, shared, lines, event_id, route)
        model_probabilities, model_scores = modes.model_predicted(route, prediction)
        ranked_at = now_ms()
        line_day = ranked_at // DAY_MS
        new_lines = self.store.new_lines(line_day, keys, lines)
        decision = Decision(
            event_id=event_id,
            ranked_at_ms=ranked_at,
            deadline_ms=ranked_at + state.record.config.reward_wait_ms,
            shared=shared,
            action_ids=[c.id for c in candidates],
            line_day=line_day,
            line_keys=line_keys,
            order=list(ranking.order),
            probabilities=list(ranking.probabilities),
            model_version="" if fallback_reason or not route.uses_model else state.model_version,
            fingerprint=fingerprint,
            deferred=request.defer_activation,
            subject_id=request.subject_id,
            fallback=fallback_reason,
            served_by=route.served_by,
            model_probabilities=model_probabilities,
            model_scores=model_scores,
        )
        if subject is not None and state.record.config.optimize_value:
            chosen = subject.terms.get(decision.action_ids[decision.chosen], NO_TERMS)
            decision.value = chosen.business_value or 1.0
        pending = _Pending()
        pending.deltas["ranks"] += 1
        if fallback_reason:
            pending.deltas["fallbacks"] += 1
        pending.deltas["open_events"] += 1
        if ranking.probabilities[ranking.order[0]] < max(ranking.probabilities):
            pending.deltas["explored"] += 1  # the action shown is not among the model's most likely
        existing = self.commit_decisions(
            state,
            request.event_id,
            subject,
            [decision],
            request.channel,
            new_lines,
            pending.deltas,
            namespaces_grew=len(table.indices) != known_namespaces,
        )
        if existing is not None:
            return _answer(existing), False
        return _answer(decision), True

    def commit_decisions(
        self,
        state: ModelState,
        requested_event_id: str,
        subject: RankContext | None,
        decisions: Sequence[Decision],
        channel: str,
        new_lines: list[tuple[bytes, str]],
        deltas: Mapping[str, int],
        namespaces_grew: bool,
    ) -> Decision | None:
        """The one write transaction of a Rank (one decision) or a RankSlots event (one a slot): exposures,
        new action lines, the decisions, counters and grown namespaces. Returns the decision another process
        stored under ``requested_event_id`` meanwhile (nothing is written then), else None."""

        def commit(txn: Txn) -> Decision | None:
            if requested_event_id:  # another process may have ranked the same event id meanwhile
                existing = self.store.get_decision(txn, state.name, requested_event_id)
                if existing is not None:
                    return existing
            if subject is not None:
                self.customers.record_exposures(txn, subject, state.name, decisions, channel, self.clock())
            self.store.put_lines(txn, new_lines)
            for decision in decisions:
                self.store.add_new_decision(txn, state.name, decision)
            self.store.add_counters(txn, state.name, deltas)
            if namespaces_grew:
                self.store.put_decision_point(txn, state.record)
            return None

        existing = self.store.write(commit)
        if existing is None:
            self.store.remember_lines(new_lines)
            if namespaces_grew:
                models.follow_namespaces(self.store, self.models_dir, state, self.checkpoints_kept)
        return existing

    def withdraw_namespaces(self, state: ModelState, known: int) -> None:
        """Withdraw the namespace indices given after the first ``known`` by a call that did not commit (see
        _rank_once); cached action lines may use them."""
        state.record.namespaces.forget_since(known)
        self._action_lines.pop(state.name, None)

    def _choose(
        self,
        state: ModelState,
        request: RankInput,
        candidates: Sequence[RankCandidate],
        shared: str,
        lines: list[str],
        event_id: str,
        route: modes.Route,
    ) -> tuple[Ranking, str, Prediction | None]:
        """The ranking ``route`` asks for (the model's, the baseline's, the holdout's), or (fail-open) the
        fallback ranking and why the model did not answer; and the model's prediction when it made one."""
        if not route.uses_model:
            draw = draw_for(state.record.config.effective_seed, event_id)
            return route.without_model(len(candidates), draw), "", None
        if not state.loaded:
            reason = "MODEL_NOT_LOADED"
        elif request.deadline is not None and (
            request.deadline - time.monotonic() < state.predict_s + self.limits.fallback_margin_s
        ):
            reason = "DEADLINE"
        else:
            started = time.perf_counter()
            try:
                prediction = state.policy.predict(shared, lines)
            except PolicyError as err:
                log.warning("model_failed_fallback_used", decision_point=state.name, error=str(err))
                reason = "MODEL_ERROR"
            else:
                state.predict_s += (time.perf_counter() - started - state.predict_s) * 0.1
                draw = draw_for(state.record.config.effective_seed, event_id)
                return route.with_model(prediction, draw), "", prediction
        return fallback([c.id for c in candidates], request.baseline_action_id), reason, None

    def subject_rank(
        self, request: RankInput, state: ModelState
    ) -> tuple[RankContext, list[RankCandidate], list[FeatureGroup]]:
        """Join the subject's stored context to the request, take the catalog when no candidates were sent,
        and keep the candidates the contact rules allow."""
        config = state.record.config
        now = self.clock()
        subject, catalog = self.customers.for_rank(
            request.subject_id, state.name, dict(config.namespace_ttl_ms), now, catalog=not request.candidates
        )
        if not request.candidates and not catalog:
            raise invalid(
                "NO_CANDIDATES",
                f"the request has no actions and decision point {state.name!r} has no catalog; send the "
                "candidates in `actions` or add actions with FeatureService.PutActions",
            )
        # Sent candidates are checked (ids, limits) before the rules; a catalog is filtered by the rules first,
        # since only its eligible actions count against max_actions.
        pool: list[RankCandidate] = self.eligible_candidates(request) if request.candidates else list(catalog)
        context = profiles.join(subject.groups, request.context)
        verdict = eligible(
            config.contact,
            Subject(
                profiles.as_features(context), subject.history, state.name, request.channel, now, subject.budget_used
            ),
            [(c.id, subject.terms.get(c.id, NO_TERMS)) for c in pool],
        )
        if not verdict.eligible:
            raise failed_precondition(
                "NO_ELIGIBLE_ACTIONS", verdict.explain(), **{k: str(v) for k, v in verdict.excluded.items()}
            )
        allowed = set(verdict.eligible)
        candidates = [c for c in pool if c.id in allowed] if len(allowed) < len(pool) else pool
        if not request.candidates:
            if len(candidates) > self.limits.max_actions:
                raise failed_precondition(
                    "CATALOG_TOO_LARGE",
                    f"{len(candidates)} catalog actions are eligible; a Rank takes at most {self.limits.max_actions} "
                    "(narrow the catalog with channels, validity or eligibility, or raise --max-actions)",
                    limit=str(self.limits.max_actions),
                )
            candidates = self.eligible_candidates(dataclasses.replace(request, candidates=candidates))
        return subject, candidates, context

    def add_exposure_features(
        self, name: str, subject: RankContext, candidates: Sequence[RankCandidate], lines: list[str], keys: list[bytes]
    ) -> None:
        """Append to each action the subject has seen lately how often, how lately, and how often ignored
        (bucketed, so the day's line table stays small); the model learns fatigue from them."""
        summaries = exposure_summaries(subject.history, self.clock())
        for i, candidate in enumerate(candidates):
            terms = subject.terms.get(candidate.id, NO_TERMS)
            summary = summaries.get(exposure_key(name, candidate.id, terms.shared))
            if summary is None:
                continue
            tokens = [t for n, v in summary.features().items() if (t := encode_feature(n, v)) is not None]
            lines[i] = f"{lines[i]} |{EXPOSURE_NAMESPACE} " + " ".join(tokens)
            keys[i] = hashlib.blake2b(lines[i].encode(), digest_size=LINE_KEY_BYTES).digest()

    def eligible_candidates(self, request: RankInput) -> list[RankCandidate]:
        limits = self.limits
        if not request.candidates:
            raise invalid("NO_CANDIDATES", "the request has no actions; send the candidates in `actions`")
        if len(request.candidates) > limits.max_actions:
            raise invalid(
                "TOO_MANY_ACTIONS",
                f"{len(request.candidates)} actions sent; at most {limits.max_actions} are allowed per Rank",
                limit=str(limits.max_actions),
            )
        excluded = set(request.excluded_action_ids)
        seen: set[str] = set()
        eligible: list[RankCandidate] = []
        for candidate in request.candidates:
            check_id("action id", candidate.id, printable=False)  # a feature value: encoded, never a key
            if candidate.id in seen:
                raise invalid("DUPLICATE_ACTION_ID", f"action id {candidate.id[:80]!r} appears more than once")
            seen.add(candidate.id)
            if candidate.id not in excluded:
                eligible.append(candidate)
        if not eligible:
            raise invalid("ALL_ACTIONS_EXCLUDED", "every action is in excluded_action_ids; nothing is left to rank")
        return eligible

    def encode_actions(
        self, name: str, candidates: Sequence[RankCandidate], table: NamespaceTable
    ) -> tuple[list[str], list[bytes], int]:
        """Each candidate's VW line and line key, and the number of features; from the cache when the
        same action came before."""
        cache = self._action_lines.setdefault(name, LRU(ACTION_LINE_CACHE))
        lines: list[str] = []
        keys: list[bytes] = []
        features = 0
        for candidate in candidates:
            cache_key = candidate.cache_key
            encoded = cache.get(cache_key) if cache_key else None
            if encoded is None:
                line = action_line(candidate, table)
                line_key = hashlib.blake2b(line.encode(), digest_size=LINE_KEY_BYTES).digest()
                encoded = (line, sum(len(g.features) for g in candidate.features), line_key)
                if cache_key:
                    cache.put(cache_key, encoded)
            lines.append(encoded[0])
            features += encoded[1]
            keys.append(encoded[2])
        return lines, keys, features

    def reward(self, decision_point: str, event_id: str, value: float, reward_id: str = "", slot_id: str = "") -> None:
        """``slot_id``: the slot of a RankSlots event that the reward is for (required for those, and only)."""
        state = self.state_of(decision_point)
        config = state.record.config
        check_id("event_id", event_id)
        check_id("reward_id", reward_id, required=False)
        check_id("slot_id", slot_id, required=False)
        check_reward(config, value)
        decision = self._rewarded(state, event_id, slot_id)
        pending = _Pending()
        late = decision.state == EXPIRED or now_ms() > decision.deadline_ms
        if config.aggregation == "sum" and decision.state != OPEN:
            late = True
        if late:
            pending.deltas["late_rewards"] += 1
            self._commit(state, pending)
            raise failed_precondition(
                "REWARD_WINDOW_CLOSED",
                f"event {event_id[:80]!r} was ranked more than {config.reward_wait_ms} ms ago; its reward window "
                "has closed (raise reward_wait if rewards arrive later)",
            )
        duplicate = (
            decision.reward is not None
            if config.aggregation == "first"
            else bool(reward_id) and reward_id in decision.reward_ids
        )
        if duplicate:
            pending.deltas["duplicate_rewards"] += 1
            self._commit(state, pending)
            return
        if config.aggregation == "sum" and len(decision.reward_ids) >= MAX_REWARD_IDS:
            raise KairosError(
                Code.RESOURCE_EXHAUSTED,
                "TOO_MANY_REWARDS",
                f"event {event_id[:80]!r} already has {MAX_REWARD_IDS} rewards",
            )
        pending.deltas["rewards"] += 1
        decision.reward = value if decision.reward is None else decision.reward + value
        if reward_id:
            decision.reward_ids.append(reward_id)
        if config.aggregation == "first" and (decision.activated or not decision.deferred):
            self._close(state, decision, value, pending)
        self._commit(state, pending, decision, rewarded=value > 0)

    def activate(self, decision_point: str, event_id: str) -> None:
        """Confirm a deferred event was shown; for a RankSlots event, every slot of it."""
        state = self.state_of(decision_point)
        check_id("event_id", event_id)
        decision = self._decision(state, event_id)
        if decision.state == EXPIRED or now_ms() > decision.deadline_ms:
            raise failed_precondition(
                "ACTIVATION_WINDOW_CLOSED",
                f"event {event_id[:80]!r} can no longer be activated: its reward window has closed",
            )
        pending = _Pending()
        activated = []
        for slot in self._slot_decisions(state, decision) if decision.slot_id else [decision]:
            if not slot.deferred or slot.activated:
                continue
            slot.activated = True
            if state.record.config.aggregation == "first" and slot.reward is not None and slot.state == OPEN:
                self._close(state, slot, slot.reward, pending)
            activated.append(slot)
        if activated:
            self._commit(state, pending, activated, activated=True)

    def count(self, decision_point: str, counter: str) -> None:
        """Add one to a decision point's ``counter`` (one of models.COUNTER_NAMES), committed at once."""
        state = self.state_of(decision_point)
        pending = _Pending()
        pending.deltas[counter] += 1
        self._commit(state, pending)

    def close_windows(self, now: int, limit: int = 2000) -> int:
        """Close every reward window whose deadline has passed: learn (default reward) or expire."""
        with self.store.read() as txn:
            due = self.store.due_before(txn, now, limit)
        if not due:
            return 0
        by_state: dict[str, _Pending] = {}
        changed: list[tuple[ModelState, Decision]] = []
        with self.store.read() as txn:
            for _, name, event_id in due:
                state = self.states.get(name)
                decision = self.store.get_decision(txn, name, event_id) if state else None
                if state is None or decision is None or decision.state != OPEN:
                    continue
                pending = by_state.setdefault(name, _Pending())
                if decision.deferred and not decision.activated:
                    decision.state = EXPIRED
                    pending.deltas["expired_events"] += 1
                    pending.deltas["open_events"] -= 1
                else:
                    reward = decision.reward
                    if reward is None:
                        reward = state.record.config.default_reward
                        pending.deltas["default_rewards"] += 1
                    self._close(state, decision, reward, pending)
                changed.append((state, decision))

        def commit(txn: Txn) -> dict[str, dict[str, Any] | None]:
            for key, _, _ in due:  # windows of unknown or already closed events go too
                self.store.drop_due(txn, key)
            for state, decision in changed:
                self.store.put_decision(txn, state.name, decision)
            figures = {}
            for name, pending in by_state.items():
                self.store.add_counters(txn, name, pending.deltas)
                for entry in pending.journal:
                    self.store.append_journal(txn, name, entry.seq, entry.event_id, entry.reward)
                figures[name] = self.mode_stats.record(txn, self.states[name].record.config, pending.outcomes)
            return figures

        figures = self.store.write(commit)
        for name, pending in by_state.items():
            self._apply(self.states[name], pending)
            self._after_outcomes(self.states[name], figures[name])
        return len(due)

    def _decision(self, state: ModelState, event_id: str) -> Decision:
        with self.store.read() as txn:
            decision = self.store.get_decision(txn, state.name, event_id)
        if decision is None:
            raise not_found(
                "EVENT_NOT_FOUND",
                f"event {event_id[:80]!r} was not ranked by decision point {state.name!r} (or has passed retention)",
            )
        return decision

    def _rewarded(self, state: ModelState, event_id: str, slot_id: str) -> Decision:
        """The decision a reward is for: the event's, or for a RankSlots event the named slot's."""
        decision = self._decision(state, event_id)
        if not slot_id:
            if decision.slot_id:
                raise invalid(
                    "SLOT_ID_REQUIRED",
                    f"event {event_id[:80]!r} was ranked by RankSlots; name the slot the reward is for in slot_id "
                    "(one of " + ", ".join(repr(s[:80]) for s in decision.slots[:20]) + ")",
                )
            return decision
        if not decision.slot_id:
            raise invalid(
                "EVENT_HAS_NO_SLOTS",
                f"event {event_id[:80]!r} was ranked by Rank, which has no slots; leave slot_id empty",
            )
        if slot_id not in decision.slots:
            raise not_found(
                "SLOT_NOT_FOUND",
                f"event {event_id[:80]!r} has no slot {slot_id[:80]!r}; its slots are "
                + ", ".join(repr(s[:80]) for s in decision.slots[:20]),
            )
        index = decision.slots.index(slot_id)
        if index == 0:
            return decision
        with self.store.read() as txn:
            slot = self.store.get_decision(txn, state.name, slot_event_id(event_id, index))
        if slot is None:
            raise failed_precondition(
                "SLOT_HAS_NO_ACTION",
                f"slot {slot_id[:80]!r} of event {event_id[:80]!r} got no action (every action it could take went "
                "to an earlier slot); there is nothing to reward",
            )
        return slot

    def _slot_decisions(self, state: ModelState, first: Decision) -> list[Decision]:
        """Every slot's decision of the RankSlots event whose first slot's decision is ``first``."""
        found = [first]
        with self.store.read() as txn:
            for index in range(1, len(first.slots)):
                slot = self.store.get_decision(txn, state.name, slot_event_id(first.event_id, index))
                if slot is not None:  # a slot left without an action has none
                    found.append(slot)
        return found

    def _close(self, state: ModelState, decision: Decision, reward: float, pending: _Pending) -> None:
        """Mark the event learnable with ``reward``; its journal entry joins ``pending``."""
        decision.state = LEARNING
        pending.deltas["open_events"] -= 1
        if decision.fallback:
            return  # the model did not choose it: its probabilities say nothing the model could learn from
        if state.record.config.optimize_value:  # the journal keeps what was learned: replay stays exact
            reward *= decision.value
        pending.outcomes.append((decision, reward))
        if not modes.learns(decision):
            return
        seq = state.next_seq + len(pending.journal)
        pending.journal.append(JournalEntry(seq, decision.event_id, reward, decision))

    def _commit(
        self,
        state: ModelState,
        pending: _Pending,
        decisions: Decision | Sequence[Decision] = (),
        rewarded: bool = False,
        activated: bool = False,
    ) -> None:
        """``rewarded``/``activated``: also update the subject's contact history for ``decisions``."""
        changed = [decisions] if isinstance(decisions, Decision) else decisions

        def commit(txn: Txn) -> dict[str, Any] | None:
            for decision in changed:
                if decision.subject_id and (rewarded or activated):
                    self.customers.mark_exposure(txn, decision, rewarded=rewarded, activated=activated)
                self.store.put_decision(txn, state.name, decision)
                if decision.state != OPEN:
                    self.store.close_window(txn, state.name, decision)
            for entry in pending.journal:
                self.store.append_journal(txn, state.name, entry.seq, entry.event_id, entry.reward)
            self.store.add_counters(txn, state.name, pending.deltas)
            return self.mode_stats.record(txn, state.record.config, pending.outcomes)

        figures = self.store.write(commit)
        self._apply(state, pending)
        self._after_outcomes(state, figures)

    def _after_outcomes(self, state: ModelState, figures: dict[str, Any] | None) -> None:
        """After mode statistics changed: in apprentice mode with auto-promotion, switch to online once the
        model is clearly better than the baseline (see policies.apprentice.should_promote)."""
        config = state.record.config
        if figures is None or config.learning_mode != "apprentice" or not config.apprentice_auto_promote:
            return
        summary, _ = modes.summarise(config, figures)
        if not summary.promote():
            return
        before = config.to_dict()
        try:
            self.update_decision_point(config.with_changes(learning_mode="online"))
        except KairosError as err:  # the reward is recorded; the next closed event tries again
            log.error("apprentice_promotion_failed", decision_point=state.name, error=err.message)
            return
        evidence = {
            "events": summary.model_reward.count,
            "model_reward_low": summary.model_reward.low,
            "model_reward_dr_low": summary.model_reward_dr.low,
            "baseline_reward": summary.baseline_reward.value,
            "baseline_reward_high": summary.baseline_reward.high,
            "match_rate": summary.match_rate.value,
        }
        log.warning("apprentice_promoted", decision_point=state.name, **evidence)
        self.audit.record(
            modes.AUTO_PROMOTION, "", "AutoPromote", state.name, before, {**state.record.config.to_dict(), **evidence}
        )

    def _apply(self, state: ModelState, pending: _Pending) -> None:
        if pending.journal:
            state.next_seq = pending.journal[-1].seq + 1
            state.backlog.extend(pending.journal)
            self.on_learnable()

    # -- administration -----------------------------------------------------

    def create_decision_point(self, config: DecisionPointConfig) -> DecisionPointRecord:
        validate_config(config)
        if config.name in self.states:
            raise KairosError(
                Code.ALREADY_EXISTS, "DECISION_POINT_EXISTS", f"decision point {config.name!r} already exists"
            )
        record = DecisionPointRecord(config=config, namespaces=NamespaceTable())
        policy = self._new_policy(record)
        challenger = challengers.prepare(None, record)
        self.store.write(lambda txn: self.store.put_decision_point(txn, record))
        self.states[config.name] = ModelState(
            record=record,
            policy=policy,
            applied_seq=0,
            next_seq=1,
        )
        challengers.install(self.store, self.models_dir, self.states[config.name], challenger)
        log.info("decision_point_created", decision_point=config.name, config=config.to_dict())
        return record

    def _new_policy(self, record: DecisionPointRecord, model: bytes | None = None) -> VWPolicy:
        try:
            return VWPolicy(record.vw_args(), model=model)
        except (OptionsError, FeatureError) as err:
            raise invalid("INVALID_LEARNER_OPTIONS", str(err)) from None
        except PolicyError as err:
            raise invalid(
                "INVALID_MODEL", f"{err}; export it from a decision point with the same learner options"
            ) from None

    def get_decision_point(self, name: str) -> DecisionPointRecord:
        return self.state_of(name).record

    def list_decision_points(self, page_size: int = 100, after: str = "") -> tuple[list[DecisionPointRecord], str]:
        """Decision points by name, those after ``after``; the second value is the next page's ``after``."""
        names = [name for name in sorted(self.states) if name > after]
        page = names[: max(page_size, 1)]
        return [self.states[name].record for name in page], (page[-1] if len(names) > len(page) else "")

    def update_decision_point(self, config: DecisionPointConfig, reset_model: bool = False) -> DecisionPointRecord:
        """Change a decision point. Learner changes that keep the model's shape (epsilon, gamma_scale,
        learning rate, ...) carry the model over; shape changes (explorer kind, interactions, bits, bag size)
        need ``reset_model`` (see LearnerOptions.same_shape)."""
        state = self.state_of(config.name)
        validate_config(config)
        old = state.record.config
        reshaped = not config.learner.same_shape(old.learner)
        if reshaped and not reset_model:
            raise failed_precondition(
                "LEARNER_CHANGE_NEEDS_RESET",
                "this change of learner options (explorer kind or size, gamma_scale, mellowness, psi, "
                "interactions, bits) changes the model's shape; set reset_model to start a fresh model",
            )
        record = DecisionPointRecord(
            config=config,
            namespaces=state.record.namespaces,
            generation=state.record.generation,
            base_seq=state.record.base_seq,
        )
        challenger = challengers.prepare(state, record)
        if reshaped or reset_model:
            self._start_generation(state, record)
        elif config.learner != old.learner:
            # Same shape: the learned weights carry over to a workspace with the new options. A checkpoint
            # right away keeps replay exact: later entries replay under the new options, as they are learned.
            policy = self._new_policy(record, state.policy.to_bytes())
            self.store.write(lambda txn: self.store.put_decision_point(txn, record))
            state.policy.close()
            state.record, state.policy = record, policy
            self._checkpoint(state)
        else:
            self.store.write(lambda txn: self.store.put_decision_point(txn, record))
            state.record = record
        challengers.install(self.store, self.models_dir, state, challenger)
        if modes.restarts(old, config):
            self.store.write(lambda txn: self.mode_stats.reset_for(txn, old, config))
        log.info("decision_point_updated", decision_point=config.name, before=old.to_dict(), after=config.to_dict())
        return state.record

    def _start_generation(
        self,
        state: ModelState,
        record: DecisionPointRecord,
        model: bytes | None = None,
        learned: int = 0,
        reward_sum: float = 0.0,
    ) -> None:
        """Replace the model (fresh, imported or rolled back, which has ``learned`` events in it); everything
        journaled so far belongs to the old one and is never replayed into the new one."""
        record = DecisionPointRecord(
            config=record.config,
            namespaces=record.namespaces,
            generation=state.record.generation + 1,
            base_seq=state.next_seq - 1,
        )
        policy = self._new_policy(record, model)
        self.store.write(lambda txn: self.store.put_decision_point(txn, record))
        state.policy.close()
        state.record, state.policy = record, policy
        state.applied_seq = state.checkpoint_seq = record.base_seq
        state.learned, state.reward_sum = learned, reward_sum
        state.backlog.clear()
        self._checkpoint(state)

    def _checkpoint(self, state: ModelState) -> None:
        models.checkpoint(self.store, self.models_dir, state, self.checkpoints_kept)

    def delete_decision_point(self, name: str) -> None:
        state = self.state_of(name)
        challengers.drop(self.store, self.models_dir, state)
        self.store.write(lambda txn: self.store.delete_decision_point(txn, name))
        state.policy.close()
        del self.states[name]
        self._action_lines.pop(name, None)
        shutil.rmtree(self.models_dir / name, ignore_errors=True)
        log.info("decision_point_deleted", decision_point=name)

    def reset_model(self, name: str) -> str:
        state = self.state_of(name)
        self._start_generation(state, state.record)
        return state.model_version

    def import_model(self, name: str, model: bytes) -> str:
        state = self.state_of(name)
        if not model:
            raise invalid("EMPTY_MODEL", "model is empty; send the bytes of an exported model")
        self._start_generation(state, state.record, model)
        return state.model_version

    def model_version(self, name: str) -> str:
        return self.state_of(name).model_version

    def list_checkpoints(self, name: str) -> list[CheckpointMeta]:
        """The current model generation's kept checkpoints, newest first."""
        state = self.state_of(name)
        with self.store.read() as txn:
            return self.store.checkpoints(txn, name, state.record.generation)

    def rollback_model(self, name: str, seq: int) -> tuple[str, int]:
        """Serve and learn on from the checkpoint at journal position ``seq``. The restored model starts a
        new generation whose journal begins now, so the events learned after the checkpoint are never
        replayed into it, not even after a restart. Returns the new model version and how many learned
        events were dropped."""
        state = self.state_of(name)
        meta = next((m for m in self.list_checkpoints(name) if m.seq == seq), None)
        if meta is None:
            raise not_found(
                "CHECKPOINT_NOT_FOUND",
                f"decision point {name!r} has no checkpoint at seq {seq}; ListCheckpoints shows the kept ones",
            )
        try:
            model = models.read_checkpoint(self.models_dir, name, meta)
        except (OSError, PolicyError) as err:
            log.warning("rollback_checkpoint_unusable", decision_point=name, file=meta.file, error=str(err))
            raise failed_precondition(
                "CHECKPOINT_UNUSABLE", f"the checkpoint at seq {seq} is damaged; choose another one"
            ) from None
        # Events still waiting in the backlog belong to the old model too: learn them first so the
        # count of dropped events is exact and nothing journaled is left half-applied.
        while state.backlog:
            models.learn(self.store, state, state.backlog.popleft())
        dropped = state.learned - meta.learned
        before = state.model_version
        self._start_generation(state, state.record, model, meta.learned, meta.reward_sum)
        log.warning(
            "model_rolled_back",
            decision_point=name,
            before=before,
            after=state.model_version,
            checkpoint_seq=seq,
            dropped_events=dropped,
        )
        return state.model_version, dropped

    def promote_challenger(self, name: str) -> DecisionPointRecord:
        """Make the challenger the champion: its learner options and its model (a new generation)."""
        state = self.state_of(name)
        if state.challenger is None:
            raise failed_precondition(
                "NO_CHALLENGER", f"decision point {name!r} has no challenger; set one with UpdateDecisionPoint"
            )
        while state.backlog:  # both models learn what is journaled, so the promoted one is complete
            models.learn(self.store, state, state.backlog.popleft())
        running = challengers.detach(state)
        assert running is not None
        config = dataclasses.replace(state.record.config, learner=running.learner, challenger=None)
        record = DecisionPointRecord(config=config, namespaces=state.record.namespaces)
        try:
            self._start_generation(state, record, running.policy.to_bytes(), running.learned, running.reward_sum)
        except BaseException:
            state.challenger = running
            raise
        state.challenger = running
        challengers.drop(self.store, self.models_dir, state)
        log.warning("challenger_promoted", decision_point=name, model_version=state.model_version)
        return state.record

    def export_model(self, name: str) -> tuple[bytes, str]:
        state = self.state_of(name)
        return state.policy.to_bytes(), state.model_version

    def export_decisions(
        self, name: str, progress: ExportProgress, since_ms: int = 0, until_ms: int = NO_END
    ) -> Iterator[list[str]]:
        """Closed decisions as DSJSON events, a page at a time (see service.offline.export). The pages read
        LMDB in their own short transactions, so the caller may pull them from another thread."""
        self.state_of(name)
        if until_ms <= since_ms:
            raise invalid("INVALID_TIME_RANGE", "until must be later than since")
        return export_pages(self.store, name, progress, since_ms=since_ms, until_ms=until_ms)

    def _counters(self, name: str) -> dict[str, int]:
        with self.store.read() as txn:
            return {key: 0 for key in models.COUNTER_NAMES} | self.store.get_counters(txn, name)

    def stats(self, name: str) -> Stats:
        state = self.state_of(name)
        apprentice, holdout = modes.summarise(state.record.config, self.mode_stats.read(name))
        return Stats(
            decision_point=name,
            counters=self._counters(name),
            learned=state.learned,
            average_reward=state.reward_sum / state.learned if state.learned else 0.0,
            model_version=state.model_version,
            backlog=len(state.backlog),
            last_checkpoint_ms=state.checkpoint_ms,
            challenger=challengers.summary(state),
            learning_mode=state.record.config.learning_mode,
            apprentice=apprentice,
            holdout=holdout,
        )

    # -- learning -----------------------------------------------------------

    def learn_pending(self, max_events: int) -> int:
        """Learn up to ``max_events`` journaled events, oldest first, across decision points."""
        done = 0
        for state in list(self.states.values()):
            while state.backlog and done < max_events:
                models.learn(self.store, state, state.backlog.popleft())
                done += 1
        return done

    def purge_before(self, cutoff_ms: int, limit: int) -> int:
        """Delete logged decisions ranked before ``cutoff_ms`` (retention); open windows are kept."""
        with self.store.read() as txn:
            old = self.store.ranked_before(txn, cutoff_ms, limit)
            gone = [
                (key, dp, event)
                for key, dp, event in old
                if (d := self.store.get_decision(txn, dp, event)) is None or d.state != OPEN
            ]

        def commit(txn: Txn) -> None:
            for key, dp, event in gone:
                decision = self.store.get_decision(txn, dp, event)
                if decision is not None:
                    self.store.drop_subject_event_of(txn, decision, dp)
                self.store.forget_decision(txn, key, dp, event)
            # Lines of days that retention has passed; a day's margin for windows open across midnight.
            self.store.drop_lines_before(txn, cutoff_ms // DAY_MS - 1)

        if gone:
            self.store.write(commit)
        return len(gone)

    def delete_logs(self, name: str, after_key: bytes = b"", limit: int = 1000) -> bytes | None:
        """Delete up to ``limit`` of ``name``'s logged decisions whose windows have closed, in ranking order
        after the time key ``after_key``; returns the key to continue after, None when done. Open windows
        stay: their rewards still arrive and are learned."""
        self.state_of(name)
        with self.store.read() as txn:
            page = self.store.ranked_page(txn, after_key, NO_END, limit)
            gone = [
                (key, event)
                for key, dp, event in page
                if dp == name and (d := self.store.get_decision(txn, dp, event)) is not None and d.state != OPEN
            ]

        def commit(txn: Txn) -> None:
            for key, event in gone:
                decision = self.store.get_decision(txn, name, event)
                if decision is not None and decision.state != OPEN:
                    self.store.drop_subject_event_of(txn, decision, name)
                    self.store.forget_decision(txn, key, name, event)

        if gone:
            self.store.write(commit)
        return page[-1][0] if len(page) == limit else None

    def log_range(self, name: str, page_size: int = 10_000) -> tuple[int, int] | None:
        """When ``name``'s oldest and newest logged decisions were ranked (ms); None without any. Reads
        LMDB a page per short transaction, so a caller may run it on another thread."""
        self.state_of(name)
        first = last = None
        after = b""
        while True:
            with self.store.read() as txn:
                page = self.store.ranked_page(txn, after, NO_END, page_size)
                mine = [
                    d.ranked_at_ms
                    for _, dp, event in page
                    if dp == name and (d := self.store.get_decision(txn, dp, event))
                ]
            if mine:
                first = mine[0] if first is None else first
                last = mine[-1]
            if len(page) < page_size:
                return None if first is None or last is None else (first, last)
            after = page[-1][0]

    def profile_ttls(self) -> dict[str, int]:
        """Namespaces whose stored features every decision point ignores after a TTL, with the longest one:
        older features can be deleted (a namespace without a TTL anywhere is kept for good)."""
        tables = [dict(s.record.config.namespace_ttl_ms) for s in self.states.values()]
        if not tables:
            return {}
        shared = set.intersection(*(set(t) for t in tables))
        return {ns: max(t[ns] for t in tables) for ns in shared}

    def checkpoint_all(self, force: bool = False) -> int:
        """Checkpoint every model that learned since its last checkpoint; returns how many failed. A
        failure (a full disk) loses nothing: the journal since the last good checkpoint stays in LMDB
        and is replayed at the next start."""
        failed = 0
        for state in self.to_checkpoint(force):
            try:
                self._checkpoint(state)
            except (OSError, KairosError) as err:
                failed += 1
                log.error("checkpoint_failed", decision_point=state.name, error=str(err))
        return failed

    def to_checkpoint(self, force: bool = False) -> list[ModelState]:
        return [s for s in self.states.values() if force or s.applied_seq != s.checkpoint_seq]

    def record_checkpoint(self, state: ModelState, copy: models.ModelCopy, sha: str) -> bool:
        """Record a checkpoint file written off this thread (see LearningLoop.checkpoint_all); False when it
        could not be recorded or no longer applies (the decision point was deleted or reset meanwhile)."""
        if self.states.get(state.name) is not state:
            copy.path(self.models_dir).unlink(missing_ok=True)
            return False
        try:
            return (
                models.record_checkpoint(self.store, self.models_dir, state, copy, sha, self.checkpoints_kept)
                is not None
            )
        except KairosError as err:
            log.error("checkpoint_failed", decision_point=state.name, error=str(err))
            return False

    def close(self) -> None:
        for state in self.states.values():
            state.policy.close()
            if state.challenger is not None:
                state.challenger.policy.close()


def event_kind_error(event_id: str, ranked_by: str) -> KairosError:
    other = "RankSlots" if ranked_by == "Rank" else "Rank"
    return failed_precondition(
        "EVENT_ID_IN_USE",
        f"event id {event_id[:80]!r} was already used by {ranked_by}; a {other} needs an event id of its own",
    )


def _answer(decision: Decision) -> RankOutput:
    if decision.slot_id:  # a Rank retried with the event id of a RankSlots event
        raise event_kind_error(decision.event_id, ranked_by="RankSlots")
    ids, probabilities = decision.action_ids, decision.probabilities
    return RankOutput(
        event_id=decision.event_id,
        ranking=[(ids[i], probabilities[i]) for i in decision.order],
        model_version=decision.model_version,
        fallback_reason=decision.fallback,
        served_by=decision.served_by,
    )
