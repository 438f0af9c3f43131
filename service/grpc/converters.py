"""Protobuf <-> domain values. No logic beyond translation and defaults of unset fields."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

from google.protobuf import duration_pb2, timestamp_pb2

from policies import profile as profiles
from policies.contact import (
    ActionTerms,
    Condition,
    ContactPolicy,
    Exposure,
    FocusRule,
    FrequencyCap,
    Operator,
    QuietHours,
)
from policies.estimators import Estimate
from policies.features import FeatureGroup, FeatureScalar
from policies.intervals import Interval
from policies.learner_options import Explorer, LearnerOptions
from service._pb.kairos.v1 import admin_service_pb2 as admin_pb
from service._pb.kairos.v1 import decision_service_pb2 as decision_pb
from service._pb.kairos.v1 import feature_service_pb2 as feature_pb
from service._pb.kairos.v1 import types_pb2 as types_pb
from service.audit import AuditRecord
from service.domain import (
    DEFAULT_APPRENTICE_MIN_EVENTS,
    DEFAULT_REWARD_WAIT_MS,
    SERVED_APPRENTICE,
    SERVED_HOLDOUT_BASELINE,
    SERVED_HOLDOUT_RANDOM,
    SERVED_LOGGING_ONLY,
    SLOT_SEPARATOR,
    CatalogEntry,
    DecisionPointConfig,
    DecisionPointRecord,
    LearningMode,
)
from service.errors import invalid
from service.learning.challenger import ChallengerSummary
from service.offline.export import NO_END
from service.plane import RankInput, RankOutput, Stats
from service.slots import RankSlotsInput, RankSlotsOutput, SlotInput
from service.store.lmdb_store import CheckpointMeta

_AGGREGATION = {
    types_pb.REWARD_AGGREGATION_UNSPECIFIED: "first",
    types_pb.REWARD_AGGREGATION_FIRST: "first",
    types_pb.REWARD_AGGREGATION_SUM: "sum",
}
_AGGREGATION_PB = {"first": types_pb.REWARD_AGGREGATION_FIRST, "sum": types_pb.REWARD_AGGREGATION_SUM}
_LEARNING_MODE: dict[int, LearningMode] = {
    types_pb.LEARNING_MODE_UNSPECIFIED: "online",
    types_pb.LEARNING_MODE_ONLINE: "online",
    types_pb.LEARNING_MODE_APPRENTICE: "apprentice",
    types_pb.LEARNING_MODE_LOGGING_ONLY: "logging_only",
}
_LEARNING_MODE_PB = {
    "online": types_pb.LEARNING_MODE_ONLINE,
    "apprentice": types_pb.LEARNING_MODE_APPRENTICE,
    "logging_only": types_pb.LEARNING_MODE_LOGGING_ONLY,
}
_SERVED_BY_PB = {
    SERVED_APPRENTICE: decision_pb.SERVED_BY_BASELINE,
    SERVED_LOGGING_ONLY: decision_pb.SERVED_BY_BASELINE,
    SERVED_HOLDOUT_BASELINE: decision_pb.SERVED_BY_HOLDOUT_BASELINE,
    SERVED_HOLDOUT_RANDOM: decision_pb.SERVED_BY_HOLDOUT_RANDOM,
}


def _value(value: types_pb.FeatureValue) -> FeatureScalar | None:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    return None  # unset: carries nothing


def feature_groups(groups: Iterable[types_pb.FeatureGroup]) -> tuple[FeatureGroup, ...]:
    result = []
    for group in groups:
        features = {name: v for name, value in group.features.items() if (v := _value(value)) is not None}
        result.append(FeatureGroup(group.namespace, features))
    return tuple(result)


class ProtoCandidate:
    """A candidate whose features are converted only if the plane has not cached its encoding."""

    __slots__ = ("_action", "cache_key", "id")

    def __init__(self, action: types_pb.Action) -> None:
        self._action = action
        self.id = action.id
        self.cache_key = action.SerializeToString()

    @property
    def features(self) -> tuple[FeatureGroup, ...]:
        return feature_groups(self._action.features)


def rank_input(request: decision_pb.RankRequest, deadline: float | None = None) -> RankInput:
    return RankInput(
        decision_point=request.decision_point,
        candidates=[ProtoCandidate(action) for action in request.actions],
        context=feature_groups(request.context),
        event_id=request.event_id,
        subject_id=request.subject_id,
        excluded_action_ids=request.excluded_action_ids,
        defer_activation=request.defer_activation,
        baseline_action_id=request.baseline_action_id,
        channel=request.channel,
        deadline=deadline,
    )


def rank_slots_input(request: decision_pb.RankSlotsRequest, deadline: float | None = None) -> RankSlotsInput:
    return RankSlotsInput(
        decision_point=request.decision_point,
        slots=[
            SlotInput(
                id=slot.id,
                features=feature_groups(slot.features),
                excluded_action_ids=tuple(slot.excluded_action_ids),
                baseline_action_id=slot.baseline_action_id,
            )
            for slot in request.slots
        ],
        candidates=[ProtoCandidate(action) for action in request.actions],
        context=feature_groups(request.context),
        event_id=request.event_id,
        subject_id=request.subject_id,
        defer_activation=request.defer_activation,
        channel=request.channel,
        deadline=deadline,
    )


def rank_slots_response(output: RankSlotsOutput) -> decision_pb.RankSlotsResponse:
    response = decision_pb.RankSlotsResponse(
        event_id=output.event_id,
        model_version=output.model_version,
        fallback=bool(output.fallback_reason),
        fallback_reason=output.fallback_reason,
    )
    for slot in output.slots:
        ranked = response.slots.add(slot_id=slot.slot_id, action_id=slot.action_id)
        for action_id, probability in slot.ranking:
            ranked.ranking.add(action_id=action_id, probability=probability)
    return response


def rank_response(output: RankOutput) -> decision_pb.RankResponse:
    response = decision_pb.RankResponse(
        event_id=output.event_id,
        model_version=output.model_version,
        fallback=bool(output.fallback_reason),
        fallback_reason=output.fallback_reason,
        served_by=_SERVED_BY_PB.get(output.served_by, decision_pb.SERVED_BY_MODEL),
    )
    add = response.ranking.add
    for action_id, probability in output.ranking:
        add(action_id=action_id, probability=probability)
    return response


def explorer(exploration: types_pb.Exploration) -> Explorer:
    kind = exploration.WhichOneof("policy")
    default = Explorer()
    if kind == "epsilon_greedy":
        return Explorer(kind="epsilon_greedy", epsilon=exploration.epsilon_greedy.epsilon or default.epsilon)
    if kind == "square_cb":
        return Explorer(kind="square_cb", gamma_scale=exploration.square_cb.gamma_scale or default.gamma_scale)
    if kind == "reg_cb":
        return Explorer(kind="reg_cb", mellowness=exploration.reg_cb.mellowness or default.mellowness)
    if kind == "bag":
        return Explorer(kind="bag", bag_size=exploration.bag.size or default.bag_size, epsilon=exploration.bag.epsilon)
    if kind == "cover":
        return Explorer(
            kind="cover",
            cover_size=exploration.cover.size or default.cover_size,
            psi=exploration.cover.psi or default.psi,
        )
    if kind == "softmax":
        return Explorer(kind="softmax", softmax_lambda=getattr(exploration.softmax, "lambda") or default.softmax_lambda)
    return default


def learner_options(exploration: types_pb.Exploration, learning: types_pb.LearningOptions) -> LearnerOptions:
    default = LearnerOptions()
    return LearnerOptions(
        explorer=explorer(exploration),
        interactions=tuple(learning.interactions) or LearnerOptions().interactions,
        learning_rate=learning.learning_rate or default.learning_rate,
        power_t=learning.power_t if learning.HasField("power_t") else default.power_t,
        bits=learning.bits or default.bits,
        l2=learning.l2,
    )


def _wait_ms(duration: duration_pb2.Duration) -> int:
    return duration.seconds * 1000 + duration.nanos // 1_000_000


def learning_mode(value: int) -> LearningMode:
    found = _LEARNING_MODE.get(value)
    if found is None:
        raise invalid(
            "INVALID_LEARNING_MODE", f"learning_mode {value} is unknown; use ONLINE, APPRENTICE or LOGGING_ONLY"
        )
    return found


def config(dp: types_pb.DecisionPoint) -> DecisionPointConfig:
    low, high = dp.reward_range.min, dp.reward_range.max
    if low == 0.0 and high == 0.0:
        low, high = -1.0, 1.0
    return DecisionPointConfig(
        name=dp.name,
        learner=learner_options(dp.exploration, dp.learning),
        reward_wait_ms=_wait_ms(dp.reward_wait) if dp.HasField("reward_wait") else DEFAULT_REWARD_WAIT_MS,
        default_reward=dp.default_reward,
        aggregation=_AGGREGATION.get(dp.reward_aggregation, "first"),  # type: ignore[arg-type]
        reward_min=low,
        reward_max=high,
        seed=dp.seed,
        contact=contact_policy(dp.contact_policy),
        namespace_ttl_ms=tuple(sorted((ns, _wait_ms(ttl)) for ns, ttl in dp.namespace_ttl.items())),
        optimize_value=dp.optimize_value,
        challenger=learner_options(dp.challenger.exploration, dp.challenger.learning)
        if dp.HasField("challenger")
        else None,
        learning_mode=learning_mode(dp.learning_mode),
        holdout_share=dp.holdout_share,
        apprentice_auto_promote=dp.apprentice_auto_promote,
        apprentice_min_events=dp.apprentice_min_events or DEFAULT_APPRENTICE_MIN_EVENTS,
    )


# Top-level DecisionPoint fields an update may change, and how to copy each one.
UPDATABLE = (
    "exploration",
    "reward_wait",
    "default_reward",
    "reward_aggregation",
    "reward_range",
    "learning",
    "seed",
    "contact_policy",
    "namespace_ttl",
    "optimize_value",
    "challenger",
    "learning_mode",
    "holdout_share",
    "apprentice_auto_promote",
    "apprentice_min_events",
)


def updated_config(current: DecisionPointConfig, request: admin_pb.UpdateDecisionPointRequest) -> DecisionPointConfig:
    """``current`` with the fields named in the mask (or set in the request) taken from the request."""
    dp = request.decision_point
    paths = list(request.update_mask.paths)
    if not paths:
        paths = [f.name for f, _ in dp.ListFields() if f.name in UPDATABLE]
    unknown = sorted({p.split(".")[0] for p in paths} - set(UPDATABLE))
    if unknown:
        raise invalid("INVALID_UPDATE_MASK", f"cannot update {', '.join(unknown)}; updatable: {', '.join(UPDATABLE)}")
    wanted = config(dp)
    top = {p.split(".")[0] for p in paths}
    learner = current.learner
    if "exploration" in top:
        learner = replace(learner, explorer=wanted.learner.explorer)
    if "learning" in top:
        learner = replace(wanted.learner, explorer=learner.explorer)
    return replace(
        current,
        learner=learner,
        reward_wait_ms=wanted.reward_wait_ms if "reward_wait" in top else current.reward_wait_ms,
        default_reward=wanted.default_reward if "default_reward" in top else current.default_reward,
        aggregation=wanted.aggregation if "reward_aggregation" in top else current.aggregation,
        reward_min=wanted.reward_min if "reward_range" in top else current.reward_min,
        reward_max=wanted.reward_max if "reward_range" in top else current.reward_max,
        seed=wanted.seed if "seed" in top else current.seed,
        contact=wanted.contact if "contact_policy" in top else current.contact,
        namespace_ttl_ms=wanted.namespace_ttl_ms if "namespace_ttl" in top else current.namespace_ttl_ms,
        optimize_value=wanted.optimize_value if "optimize_value" in top else current.optimize_value,
        challenger=wanted.challenger if "challenger" in top else current.challenger,
        learning_mode=wanted.learning_mode if "learning_mode" in top else current.learning_mode,
        holdout_share=wanted.holdout_share if "holdout_share" in top else current.holdout_share,
        apprentice_auto_promote=(
            wanted.apprentice_auto_promote if "apprentice_auto_promote" in top else current.apprentice_auto_promote
        ),
        apprentice_min_events=(
            wanted.apprentice_min_events if "apprentice_min_events" in top else current.apprentice_min_events
        ),
    )


def exploration_pb(explorer: Explorer) -> types_pb.Exploration:
    if explorer.kind == "epsilon_greedy":
        return types_pb.Exploration(epsilon_greedy=types_pb.EpsilonGreedy(epsilon=explorer.epsilon))
    if explorer.kind == "square_cb":
        return types_pb.Exploration(square_cb=types_pb.SquareCb(gamma_scale=explorer.gamma_scale))
    if explorer.kind == "reg_cb":
        return types_pb.Exploration(reg_cb=types_pb.RegCb(mellowness=explorer.mellowness))
    if explorer.kind == "cover":
        return types_pb.Exploration(cover=types_pb.Cover(size=explorer.cover_size, psi=explorer.psi))
    if explorer.kind == "bag":
        return types_pb.Exploration(bag=types_pb.Bag(size=explorer.bag_size, epsilon=explorer.epsilon))
    softmax = types_pb.Softmax()
    setattr(softmax, "lambda", explorer.softmax_lambda)
    return types_pb.Exploration(softmax=softmax)


def learning_pb(learner: LearnerOptions) -> types_pb.LearningOptions:
    return types_pb.LearningOptions(
        interactions=list(learner.interactions),
        learning_rate=learner.learning_rate,
        power_t=learner.power_t,
        bits=learner.bits,
        l2=learner.l2,
    )


def decision_point_pb(record: DecisionPointRecord) -> types_pb.DecisionPoint:
    cfg = record.config
    wait = duration_pb2.Duration()
    wait.FromMilliseconds(cfg.reward_wait_ms)
    learner = cfg.learner
    return types_pb.DecisionPoint(
        name=cfg.name,
        exploration=exploration_pb(learner.explorer),
        reward_wait=wait,
        default_reward=cfg.default_reward,
        reward_aggregation=_AGGREGATION_PB[cfg.aggregation],
        reward_range=types_pb.RewardRange(min=cfg.reward_min, max=cfg.reward_max),
        learning=types_pb.LearningOptions(
            interactions=list(learner.interactions),
            learning_rate=learner.learning_rate,
            power_t=learner.power_t,
            bits=learner.bits,
            l2=learner.l2,
        ),
        seed=cfg.seed,
        model_generation=record.generation,
        contact_policy=contact_policy_pb(cfg.contact),
        namespace_ttl={ns: _duration(ms) for ns, ms in cfg.namespace_ttl_ms},
        optimize_value=cfg.optimize_value,
        challenger=None
        if cfg.challenger is None
        else types_pb.Challenger(
            exploration=exploration_pb(cfg.challenger.explorer), learning=learning_pb(cfg.challenger)
        ),
        learning_mode=_LEARNING_MODE_PB[cfg.learning_mode],
        holdout_share=cfg.holdout_share,
        apprentice_auto_promote=cfg.apprentice_auto_promote,
        apprentice_min_events=cfg.apprentice_min_events,
    )


def interval_pb(interval: Interval) -> admin_pb.Interval:
    return admin_pb.Interval(
        value=interval.value, low=interval.low, high=interval.high, count=interval.count, method=interval.method
    )


def _estimate_pb(estimate: Estimate) -> admin_pb.ChallengerEstimate:
    return admin_pb.ChallengerEstimate(
        value=estimate.value, low=estimate.low, high=estimate.high, interval=estimate.interval
    )


def challenger_stats_pb(summary: ChallengerSummary) -> admin_pb.ChallengerStats:
    report = summary.report
    found = admin_pb.ChallengerStats(
        model_version=summary.model_version,
        events=report.events,
        champion=_estimate_pb(report.champion),
        challenger_ips=_estimate_pb(report.ips),
        challenger_snips=_estimate_pb(report.snips),
        effective_sample_size=report.ips.effective_sample_size,
        confidence=report.ips.confidence,
    )
    found.start_time.FromMilliseconds(summary.started_ms)
    return found


def stats_pb(stats: Stats) -> admin_pb.DecisionPointStats:
    counters = stats.counters
    learner = admin_pb.LearnerStatus(
        model_version=stats.model_version,
        open_events=counters["open_events"],
        backlog=stats.backlog,
        expired_events=counters["expired_events"],
    )
    if stats.last_checkpoint_ms:
        learner.last_checkpoint_time.FromMilliseconds(stats.last_checkpoint_ms)
    response = admin_pb.DecisionPointStats(
        decision_point=stats.decision_point,
        ranks=counters["ranks"],
        rewards=counters["rewards"],
        learned=stats.learned,
        average_reward=stats.average_reward,
        late_rewards=counters["late_rewards"],
        duplicate_rewards=counters["duplicate_rewards"],
        default_rewards=counters["default_rewards"],
        learner=learner,
        fallbacks=counters["fallbacks"],
        challenger=None if stats.challenger is None else challenger_stats_pb(stats.challenger),
        learning_mode=_LEARNING_MODE_PB.get(stats.learning_mode, types_pb.LEARNING_MODE_ONLINE),
        rest_ignored_events=counters["rest_ignored_events"],
    )
    if stats.apprentice is not None:
        found = stats.apprentice
        response.apprentice.CopyFrom(
            admin_pb.ApprenticeStats(
                match_rate=interval_pb(found.match_rate),
                baseline_reward=interval_pb(found.baseline_reward),
                model_reward=interval_pb(found.model_reward),
                model_reward_doubly_robust=interval_pb(found.model_reward_dr),
                auto_promote=found.auto_promote,
                min_events=found.min_events,
            )
        )
    if stats.holdout is not None:
        lift = stats.holdout
        response.holdout.CopyFrom(
            admin_pb.HoldoutStats(
                holdout_share=lift.holdout_share,
                model_reward=interval_pb(lift.model_reward),
                holdout_reward=interval_pb(lift.holdout_reward),
                lift=interval_pb(lift.lift),
            )
        )
    return response


def audit_page_token(token: str) -> int:
    """The sequence number a ListAuditRecords page token continues after (0: from the start)."""
    if not token:
        return 0
    if not token.isdigit() or len(token) > 19:
        raise invalid("INVALID_PAGE_TOKEN", "page_token must be a next_page_token from ListAuditRecords")
    return int(token)


def audit_record_pb(record: AuditRecord) -> admin_pb.AuditRecord:
    found = admin_pb.AuditRecord(
        sequence=record.seq,
        actor=record.actor,
        peer=record.peer,
        action=record.action,
        decision_point=record.target,
        before_json="" if record.before is None else json.dumps(record.before, sort_keys=True),
        after_json="" if record.after is None else json.dumps(record.after, sort_keys=True),
    )
    found.time.FromMilliseconds(record.time_ms)
    return found


def checkpoint_pb(meta: CheckpointMeta) -> admin_pb.Checkpoint:
    checkpoint = admin_pb.Checkpoint(
        seq=meta.seq,
        model_version=f"{meta.generation}.{meta.learned}",
        learned=meta.learned,
        average_reward=meta.reward_sum / meta.learned if meta.learned else 0.0,
        sha256=meta.sha256,
    )
    checkpoint.create_time.FromMilliseconds(meta.created_ms)
    return checkpoint


# -- customer context -----------------------------------------------------------

_OPERATORS: dict[types_pb.ConditionOperator.ValueType, Operator] = {
    types_pb.CONDITION_OPERATOR_EQUAL: "eq",
    types_pb.CONDITION_OPERATOR_NOT_EQUAL: "ne",
    types_pb.CONDITION_OPERATOR_IN: "in",
    types_pb.CONDITION_OPERATOR_NOT_IN: "not_in",
    types_pb.CONDITION_OPERATOR_LESS: "lt",
    types_pb.CONDITION_OPERATOR_LESS_OR_EQUAL: "le",
    types_pb.CONDITION_OPERATOR_GREATER: "gt",
    types_pb.CONDITION_OPERATOR_GREATER_OR_EQUAL: "ge",
    types_pb.CONDITION_OPERATOR_PRESENT: "present",
    types_pb.CONDITION_OPERATOR_ABSENT: "absent",
}
_OPERATORS_PB: dict[Operator, types_pb.ConditionOperator.ValueType] = {n: v for v, n in _OPERATORS.items()}
_SCOPES = {types_pb.CAP_SCOPE_ACTION: "action", types_pb.CAP_SCOPE_CHANNEL: "channel"}
_SCOPES_PB = {name: number for number, name in _SCOPES.items()}
_OUTCOMES = {
    "open": feature_pb.EXPOSURE_OUTCOME_OPEN,
    "rewarded": feature_pb.EXPOSURE_OUTCOME_REWARDED,
    "ignored": feature_pb.EXPOSURE_OUTCOME_IGNORED,
}


def _duration(ms: int) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromMilliseconds(ms)
    return duration


def _timestamp(ms: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def _value_pb(value: FeatureScalar | None) -> types_pb.FeatureValue:
    if isinstance(value, bool):
        return types_pb.FeatureValue(bool_value=value)
    if isinstance(value, str):
        return types_pb.FeatureValue(string_value=value)
    if value is None:
        return types_pb.FeatureValue()
    return types_pb.FeatureValue(number_value=float(value))


def condition(pb: types_pb.Condition) -> Condition:
    operator = _OPERATORS.get(pb.operator)
    if operator is None:
        raise invalid("INVALID_CONDITION", f"condition on {pb.namespace}.{pb.feature}: set an operator")
    values = tuple(v for item in pb.values if (v := _value(item)) is not None)
    return Condition(pb.namespace, pb.feature, operator, _value(pb.value), values)


def condition_pb(c: Condition) -> types_pb.Condition:
    return types_pb.Condition(
        namespace=c.namespace,
        feature=c.feature,
        operator=_OPERATORS_PB[c.operator],
        value=_value_pb(c.value) if c.value is not None else None,
        values=[_value_pb(v) for v in c.values],
    )


def contact_policy(pb: types_pb.ContactPolicy) -> ContactPolicy:
    caps = []
    for cap in pb.frequency_caps:
        scope = _SCOPES.get(cap.scope)
        if scope is None:
            raise invalid("INVALID_CONTACT_POLICY", "a frequency cap needs its scope (ACTION or CHANNEL)")
        caps.append(FrequencyCap(scope, cap.max_exposures, _wait_ms(cap.window), cap.channel))  # type: ignore[arg-type]
    default = ContactPolicy()
    return ContactPolicy(
        caps=tuple(caps),
        suppress_after_ignored=pb.suppress_after_ignored,
        ignored_window_ms=_wait_ms(pb.ignored_window) if pb.HasField("ignored_window") else default.ignored_window_ms,
        consent_namespace=pb.consent_namespace,
        quiet_hours=tuple(QuietHours(q.channel, q.start_hour, q.end_hour) for q in pb.quiet_hours),
        focus_rules=tuple(FocusRule(tuple(condition(c) for c in r.conditions), r.tag) for r in pb.focus_rules),
    )


def contact_policy_pb(policy: ContactPolicy) -> types_pb.ContactPolicy:
    return types_pb.ContactPolicy(
        frequency_caps=[
            types_pb.FrequencyCap(
                scope=_SCOPES_PB[c.scope],
                channel=c.channel,
                max_exposures=c.max_exposures,
                window=_duration(c.window_ms),
            )
            for c in policy.caps
        ],
        suppress_after_ignored=policy.suppress_after_ignored,
        ignored_window=_duration(policy.ignored_window_ms),
        consent_namespace=policy.consent_namespace,
        quiet_hours=[
            types_pb.QuietHours(channel=q.channel, start_hour=q.start_hour, end_hour=q.end_hour)
            for q in policy.quiet_hours
        ],
        focus_rules=[
            types_pb.FocusRule(conditions=[condition_pb(c) for c in r.conditions], tag=r.tag)
            for r in policy.focus_rules
        ],
    )


def profile_groups(groups: Iterable[types_pb.FeatureGroup]) -> list[tuple[str, dict[str, FeatureScalar | None]]]:
    """Like feature_groups, but a value with no kind set stays, as None: PutProfile removes that feature."""
    return [(g.namespace, {name: _value(v) for name, v in g.features.items()}) for g in groups]


def time_ms(stamp: timestamp_pb2.Timestamp, has: bool, default: int) -> int:
    return stamp.ToMilliseconds() if has else default


def profile_pb(subject_id: str, stored: profiles.Stored) -> feature_pb.Profile:
    profile = feature_pb.Profile(subject_id=subject_id)
    for namespace, features in sorted(stored.items()):
        profile.features.add(namespace=namespace, features={n: _value_pb(v) for n, (v, _) in features.items()})
        for name, (_, written) in features.items():
            profile.feature_updates.add(namespace=namespace, name=name, update_time=_timestamp(written))
    return profile


def catalog_entry(pb: feature_pb.CatalogAction) -> CatalogEntry:
    terms = ActionTerms(
        valid_from_ms=pb.valid_from.ToMilliseconds() if pb.HasField("valid_from") else 0,
        valid_to_ms=pb.valid_to.ToMilliseconds() if pb.HasField("valid_to") else 0,
        channels=tuple(pb.channels),
        business_value=pb.business_value,
        tags=tuple(pb.tags),
        shared=pb.shared,
        eligibility=tuple(condition(c) for c in pb.eligibility),
        budget_max=pb.budget.max_exposures,
        budget_period_ms=_wait_ms(pb.budget.period),
    )
    return CatalogEntry(pb.action.id, feature_groups(pb.action.features), terms)


def catalog_action_pb(entry: CatalogEntry) -> feature_pb.CatalogAction:
    terms = entry.terms
    action = types_pb.Action(
        id=entry.id,
        features=[
            types_pb.FeatureGroup(namespace=g.namespace, features={n: _value_pb(v) for n, v in g.features.items()})
            for g in entry.features
        ],
    )
    return feature_pb.CatalogAction(
        action=action,
        valid_from=_timestamp(terms.valid_from_ms) if terms.valid_from_ms else None,
        valid_to=_timestamp(terms.valid_to_ms) if terms.valid_to_ms else None,
        channels=terms.channels,
        business_value=terms.business_value,
        tags=terms.tags,
        shared=terms.shared,
        eligibility=[condition_pb(c) for c in terms.eligibility],
        budget=feature_pb.Budget(max_exposures=terms.budget_max, period=_duration(terms.budget_period_ms))
        if terms.budget_max
        else None,
    )


def exposure_pb(exposure: Exposure, now_ms: int) -> feature_pb.Exposure:
    outcome = "rewarded" if exposure.rewarded else "ignored" if exposure.ignored(now_ms) else "open"
    return feature_pb.Exposure(
        decision_point=exposure.decision_point,
        action_id=exposure.action_id,
        channel=exposure.channel,
        event_id=exposure.event_id.partition(SLOT_SEPARATOR)[0],  # a RankSlots slot: the event it belongs to
        shown_time=_timestamp(exposure.shown_ms),
        outcome=_OUTCOMES[outcome],
    )


def export_window(request: admin_pb.ExportDecisionsRequest) -> tuple[int, int]:
    """(since, until) in epoch milliseconds; unset bounds mean the start and no end."""
    since = request.since.ToMilliseconds() if request.HasField("since") else 0
    until = request.until.ToMilliseconds() if request.HasField("until") else NO_END
    if since < 0 or until < 0:
        raise invalid("INVALID_TIME_RANGE", "since and until must not be before 1970")
    return since, until
