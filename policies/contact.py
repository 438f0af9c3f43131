"""Contact rules: which actions a subject may be shown right now, and what the model should know about
what the subject has already seen.

Transport-free and storage-free: the caller hands in the subject's features (stored profile joined with
the request context), its contact history and the clock. Conditions are a small declarative form
(equality, membership, numeric comparison, presence): nothing here evaluates code.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policies.features import FeatureScalar

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DEFAULT_IGNORED_WINDOW_MS = 30 * DAY_MS
# Exposure features look this far back.
EXPOSURE_WINDOW_MS = 7 * DAY_MS
Operator = Literal["eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "present", "absent"]
OPERATORS: tuple[Operator, ...] = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "present", "absent")
Features = Mapping[str, Mapping[str, FeatureScalar]]  # namespace -> name -> value


class RuleError(ValueError):
    """A rule the evaluator refuses; the message names the rule and the problem."""


@dataclass(frozen=True)
class Condition:
    namespace: str
    feature: str
    operator: Operator
    value: FeatureScalar | None = None
    values: tuple[FeatureScalar, ...] = ()

    def validate(self) -> None:
        if self.operator not in OPERATORS:
            raise RuleError(f"condition on {self.namespace}.{self.feature}: unknown operator {self.operator!r}")
        if not self.namespace or not self.feature:
            raise RuleError("a condition needs a namespace and a feature")
        if self.operator in ("eq", "ne") and self.value is None:
            raise RuleError(f"condition on {self.namespace}.{self.feature}: {self.operator} needs a value")
        if self.operator in ("lt", "le", "gt", "ge") and not _is_number(self.value):
            raise RuleError(f"condition on {self.namespace}.{self.feature}: {self.operator} needs a number")
        if self.operator in ("in", "not_in") and not self.values:
            raise RuleError(f"condition on {self.namespace}.{self.feature}: {self.operator} needs values")

    def holds(self, features: Features) -> bool:
        """Whether the condition holds; a missing feature satisfies only ``absent``."""
        found = features.get(self.namespace, {}).get(self.feature)
        op = self.operator
        if found is None:
            return op == "absent"
        if op == "present":
            return True
        if op == "absent":
            return False
        if op == "eq":
            return _same(found, self.value)
        if op == "ne":
            return not _same(found, self.value)
        if op == "in":
            return any(_same(found, v) for v in self.values)
        if op == "not_in":
            return not any(_same(found, v) for v in self.values)
        if not (_is_number(found) and _is_number(self.value)):
            return False
        left, right = float(found), float(self.value)  # type: ignore[arg-type]
        return {"lt": left < right, "le": left <= right, "gt": left > right, "ge": left >= right}[op]

    def to_dict(self) -> dict[str, Any]:
        return {"ns": self.namespace, "f": self.feature, "op": self.operator, "v": self.value, "vs": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        return cls(data["ns"], data["f"], data["op"], data.get("v"), tuple(data.get("vs", ())))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(left: FeatureScalar, right: FeatureScalar | None) -> bool:
    """Equality that keeps kinds apart: true is not 1, "1" is not 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    return right is not None and float(left) == float(right)


def all_hold(conditions: Iterable[Condition], features: Features) -> bool:
    return all(c.holds(features) for c in conditions)


@dataclass(frozen=True)
class FrequencyCap:
    scope: Literal["action", "channel"]
    max_exposures: int
    window_ms: int
    channel: str = ""

    def validate(self) -> None:
        if self.scope not in ("action", "channel"):
            raise RuleError("a frequency cap's scope must be ACTION or CHANNEL")
        if self.scope == "channel" and not self.channel:
            raise RuleError("a CHANNEL frequency cap names its channel")
        if self.max_exposures < 1:
            raise RuleError("a frequency cap allows at least 1 exposure (suppress with eligibility instead)")
        if self.window_ms < 1000:
            raise RuleError("a frequency cap's window is at least 1 second")


@dataclass(frozen=True)
class QuietHours:
    channel: str
    start_hour: int
    end_hour: int

    def validate(self) -> None:
        if not self.channel or not (0 <= self.start_hour <= 23 and 0 <= self.end_hour <= 24):
            raise RuleError("quiet hours name a channel and hours within 0..24 (UTC)")

    def covers(self, now_ms: int) -> bool:
        hour = (now_ms // HOUR_MS) % 24
        if self.start_hour <= self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour


@dataclass(frozen=True)
class FocusRule:
    conditions: tuple[Condition, ...]
    tag: str

    def validate(self) -> None:
        if not self.tag:
            raise RuleError("a focus rule names the tag of the actions it puts first")
        for condition in self.conditions:
            condition.validate()


@dataclass(frozen=True)
class ContactPolicy:
    caps: tuple[FrequencyCap, ...] = ()
    suppress_after_ignored: int = 0
    ignored_window_ms: int = DEFAULT_IGNORED_WINDOW_MS
    consent_namespace: str = ""
    quiet_hours: tuple[QuietHours, ...] = ()
    focus_rules: tuple[FocusRule, ...] = ()

    def validate(self) -> None:
        for cap in self.caps:
            cap.validate()
        for quiet in self.quiet_hours:
            quiet.validate()
        for rule in self.focus_rules:
            rule.validate()
        if self.suppress_after_ignored < 0 or self.ignored_window_ms < 1000:
            raise RuleError("suppress_after_ignored must not be negative and ignored_window at least 1 second")

    def to_dict(self) -> dict[str, Any]:
        return {
            "caps": [[c.scope, c.max_exposures, c.window_ms, c.channel] for c in self.caps],
            "suppress_after_ignored": self.suppress_after_ignored,
            "ignored_window_ms": self.ignored_window_ms,
            "consent_namespace": self.consent_namespace,
            "quiet_hours": [[q.channel, q.start_hour, q.end_hour] for q in self.quiet_hours],
            "focus_rules": [[[c.to_dict() for c in r.conditions], r.tag] for r in self.focus_rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContactPolicy:
        return cls(
            caps=tuple(FrequencyCap(*c) for c in data.get("caps", ())),
            suppress_after_ignored=data.get("suppress_after_ignored", 0),
            ignored_window_ms=data.get("ignored_window_ms", DEFAULT_IGNORED_WINDOW_MS),
            consent_namespace=data.get("consent_namespace", ""),
            quiet_hours=tuple(QuietHours(*q) for q in data.get("quiet_hours", ())),
            focus_rules=tuple(
                FocusRule(tuple(Condition.from_dict(c) for c in cs), tag) for cs, tag in data.get("focus_rules", ())
            ),
        )


@dataclass(frozen=True)
class ActionTerms:
    """What the rules know of a catalog action beyond its features."""

    valid_from_ms: int = 0  # 0: open
    valid_to_ms: int = 0  # 0: open
    channels: tuple[str, ...] = ()
    business_value: float = 0.0
    tags: tuple[str, ...] = ()
    shared: bool = False
    eligibility: tuple[Condition, ...] = ()
    budget_max: int = 0  # 0: no global volume cap
    budget_period_ms: int = 0

    def budget_period(self, now_ms: int) -> int:
        """The number of the budget period ``now_ms`` falls in (fixed windows from the epoch)."""
        return now_ms // self.budget_period_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": [self.budget_max, self.budget_period_ms],
            "from": self.valid_from_ms,
            "to": self.valid_to_ms,
            "channels": list(self.channels),
            "value": self.business_value,
            "tags": list(self.tags),
            "shared": self.shared,
            "eligibility": [c.to_dict() for c in self.eligibility],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionTerms:
        return cls(
            data["from"],
            data["to"],
            tuple(data["channels"]),
            data["value"],
            tuple(data["tags"]),
            data["shared"],
            tuple(Condition.from_dict(c) for c in data["eligibility"]),
            *data.get("budget", (0, 0)),
        )


NO_TERMS = ActionTerms()


@dataclass
class Exposure:
    """One action shown to a subject (ranking[0] of an event that was shown)."""

    shown_ms: int
    decision_point: str
    action_id: str
    channel: str
    event_id: str
    deadline_ms: int  # end of the reward window
    shared: bool = False
    rewarded: bool = False
    pending: bool = False  # deferred and not activated yet: not shown, counts nowhere

    def key(self) -> tuple[str, str]:
        return exposure_key(self.decision_point, self.action_id, self.shared)

    def ignored(self, now_ms: int) -> bool:
        return not self.pending and not self.rewarded and now_ms > self.deadline_ms

    def encode(self) -> list[Any]:
        return [
            self.shown_ms,
            self.decision_point,
            self.action_id,
            self.channel,
            self.event_id,
            self.deadline_ms,
            self.shared,
            self.rewarded,
            self.pending,
        ]

    @classmethod
    def decode(cls, data: Sequence[Any]) -> Exposure:
        return cls(*data)


def exposure_key(decision_point: str, action_id: str, shared: bool) -> tuple[str, str]:
    """Action ids are scoped to their decision point unless the catalog marks the action shared."""
    return ("" if shared else decision_point, action_id)


@dataclass(frozen=True)
class Verdict:
    eligible: list[str]
    excluded: Counter[str] = field(default_factory=Counter)  # reason -> how many actions

    def explain(self) -> str:
        reasons = ", ".join(f"{n} by {reason}" for reason, n in sorted(self.excluded.items()))
        return f"no action is eligible for this subject ({reasons or 'empty catalog'})"


@dataclass(frozen=True)
class Subject:
    """What the rules see of one subject at one moment."""

    features: Features
    history: Sequence[Exposure]
    decision_point: str
    channel: str
    now_ms: int
    # Shows of each budgeted action in its current budget period, over every subject.
    budget_used: Mapping[str, int] = field(default_factory=dict)


def blocked(policy: ContactPolicy, subject: Subject) -> str | None:
    """A reason no action at all may be shown to this subject now (consent, quiet hours), or None."""
    channel = subject.channel
    if not channel:
        return None
    if policy.consent_namespace:
        consent = subject.features.get(policy.consent_namespace, {}).get(channel)
        if consent is not True:
            return "NO_CONSENT"
    if any(q.channel == channel and q.covers(subject.now_ms) for q in policy.quiet_hours):
        return "QUIET_HOURS"
    return None


def eligible(policy: ContactPolicy, subject: Subject, candidates: Sequence[tuple[str, ActionTerms]]) -> Verdict:
    """The ids of ``candidates`` (in their order) that the policy and each action's terms allow."""
    channel = subject.channel
    excluded: Counter[str] = Counter()
    reason = blocked(policy, subject)
    if reason is not None:
        excluded[reason] = len(candidates)
        return Verdict([], excluded)
    channel_counts, action_counts, ignored = _tally(policy, subject) if subject.history else _NO_COUNTS
    for index, cap in enumerate(policy.caps):
        if cap.scope == "channel" and cap.channel == channel and channel_counts[index] >= cap.max_exposures:
            excluded["CHANNEL_CAP"] = len(candidates)
            return Verdict([], excluded)
    # Per-action counts matter only for a subject with history under caps or suppression.
    action_caps = [(i, cap.max_exposures) for i, cap in enumerate(policy.caps) if cap.scope == "action"]
    counted = bool(subject.history) and bool(action_caps or policy.suppress_after_ignored)
    allowed: list[tuple[str, ActionTerms]] = []
    for action_id, terms in candidates:
        why = _terms_exclusion(subject, action_id, terms) if terms is not NO_TERMS else None
        if why is None and counted:
            key = ("" if terms.shared else subject.decision_point, action_id)
            for index, most in action_caps:
                if action_counts.get((index, key), 0) >= most:  # .get: Counter's __missing__ is slow Python
                    why = "ACTION_CAP"
                    break
            if why is None and policy.suppress_after_ignored and ignored.get(key, 0) >= policy.suppress_after_ignored:
                why = "IGNORED"
        if why is None:
            allowed.append((action_id, terms))
        else:
            excluded[why] += 1
    for rule in policy.focus_rules:
        if all_hold(rule.conditions, subject.features):
            focused = [(a, t) for a, t in allowed if rule.tag in t.tags]
            if focused:
                excluded["FOCUS_RULE"] += len(allowed) - len(focused)
                allowed = focused
            break
    return Verdict([a for a, _ in allowed], excluded)


def _terms_exclusion(subject: Subject, action_id: str, terms: ActionTerms) -> str | None:
    """Why the action's own terms (validity, channels, eligibility conditions, budget) leave it out, or None."""
    now = subject.now_ms
    if (terms.valid_from_ms and now < terms.valid_from_ms) or (terms.valid_to_ms and now >= terms.valid_to_ms):
        return "VALIDITY"
    if subject.channel and terms.channels and subject.channel not in terms.channels:
        return "CHANNEL"
    if terms.eligibility and not all_hold(terms.eligibility, subject.features):
        return "ELIGIBILITY"
    if terms.budget_max and subject.budget_used.get(action_id, 0) >= terms.budget_max:
        return "BUDGET"
    return None


_NO_COUNTS: tuple[Counter[int], Counter[tuple[int, tuple[str, str]]], Counter[tuple[str, str]]] = (
    Counter(),
    Counter(),
    Counter(),
)


def _tally(
    policy: ContactPolicy, subject: Subject
) -> tuple[Counter[int], Counter[tuple[int, tuple[str, str]]], Counter[tuple[str, str]]]:
    """One pass over the history: exposures inside each cap's window, and ignored exposures per action."""
    now = subject.now_ms
    channel_counts: Counter[int] = Counter()
    action_counts: Counter[tuple[int, tuple[str, str]]] = Counter()
    ignored: Counter[tuple[str, str]] = Counter()
    for exposure in subject.history:
        if exposure.pending:
            continue
        age = now - exposure.shown_ms
        for index, cap in enumerate(policy.caps):
            if age >= cap.window_ms:
                continue
            if cap.scope == "channel":
                if exposure.channel == cap.channel:
                    channel_counts[index] += 1
            elif not cap.channel or exposure.channel == cap.channel:
                action_counts[(index, exposure.key())] += 1
        if age < policy.ignored_window_ms and exposure.ignored(now):
            ignored[exposure.key()] += 1
    return channel_counts, action_counts, ignored


@dataclass(frozen=True)
class ExposureSummary:
    shown: int  # inside EXPOSURE_WINDOW_MS
    ignored: int  # inside EXPOSURE_WINDOW_MS
    hours_since: float  # since the last exposure

    def features(self) -> dict[str, FeatureScalar]:
        """Bucketed so that the number of distinct encoded action lines stays small."""
        return {
            "shown": float(min(self.shown, 10)),
            "ignored": float(min(self.ignored, 10)),
            "recency": float(min(round(math.log2(1.0 + self.hours_since)), 12)),
        }


def exposure_summaries(history: Iterable[Exposure], now_ms: int) -> dict[tuple[str, str], ExposureSummary]:
    """Per action key: how often it was shown and ignored lately, and how long ago it was last shown."""
    shown: Counter[tuple[str, str]] = Counter()
    ignored: Counter[tuple[str, str]] = Counter()
    last: dict[tuple[str, str], int] = {}
    for exposure in history:
        if exposure.pending or now_ms - exposure.shown_ms >= EXPOSURE_WINDOW_MS:
            continue
        key = exposure.key()
        shown[key] += 1
        ignored[key] += exposure.ignored(now_ms)
        last[key] = max(last.get(key, 0), exposure.shown_ms)
    return {key: ExposureSummary(shown[key], ignored[key], max(now_ms - last[key], 0) / HOUR_MS) for key in shown}
