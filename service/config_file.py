"""The TOML config file: decision points declared for GitOps, and optional [server] settings.

[server]
port = 50051

[[decision_points]]
name = "homepage"
reward_wait = "30s"            # ms, s, m, h
default_reward = 0.0
aggregation = "first"          # or "sum"
reward_range = [-1.0, 1.0]
explorer = { kind = "square_cb", gamma_scale = 10 }
interactions = ["_context*_actions"]  # or ["user*offer", "user*_actions"], or ["*"] for all pairs
learning_rate = 1.0
namespace_ttl = { web = "1h", purchases = "365d" }   # stored profile features older than this are not used
optimize_value = false         # true: learn reward x the shown catalog action's business_value
challenger = { explorer = { kind = "epsilon_greedy", epsilon = 0.05 }, learning_rate = 0.5 }  # learns in shadow
learning_mode = "online"       # or "apprentice", "logging_only"
holdout_share = 0.0            # 0 .. 0.5: share of subjects held out from the model (lift measurement)
apprentice_auto_promote = false  # apprentice -> online once the model is clearly better
apprentice_min_events = 1000

[decision_points.contact_policy]
frequency_caps = [
  { scope = "action", max = 1, window = "24h" },                      # each offer at most once a day
  { scope = "channel", channel = "email", max = 3, window = "7d" },   # at most 3 emails a week
]
suppress_after_ignored = 3
ignored_window = "30d"
consent_namespace = "consent"
quiet_hours = [{ channel = "sms", start_hour = 22, end_hour = 7 }]

[[decision_points.contact_policy.focus_rules]]   # an open support ticket: only service actions
tag = "service"
conditions = [{ namespace = "support", feature = "open_ticket", operator = "eq", value = true }]
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.contact import OPERATORS, Condition, ContactPolicy, FocusRule, FrequencyCap, QuietHours
from policies.learner_options import Explorer, LearnerOptions
from service.domain import DEFAULT_APPRENTICE_MIN_EVENTS, DEFAULT_REWARD_WAIT_MS, DecisionPointConfig

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DP_KEYS = {
    "name",
    "reward_wait",
    "default_reward",
    "aggregation",
    "reward_range",
    "explorer",
    "interactions",
    "learning_rate",
    "power_t",
    "bits",
    "l2",
    "seed",
    "namespace_ttl",
    "contact_policy",
    "optimize_value",
    "challenger",
    "learning_mode",
    "holdout_share",
    "apprentice_auto_promote",
    "apprentice_min_events",
}
_LEARNER_KEYS = {"explorer", "interactions", "learning_rate", "power_t", "bits", "l2"}
_POLICY_KEYS = {
    "frequency_caps",
    "suppress_after_ignored",
    "ignored_window",
    "consent_namespace",
    "quiet_hours",
    "focus_rules",
}


class ConfigError(ValueError):
    """The config file is wrong; the message names the file, the entry and the fix."""


@dataclass
class ConfigFile:
    server: dict[str, Any] = field(default_factory=dict)
    decision_points: list[DecisionPointConfig] = field(default_factory=list)


def parse_duration_ms(text: str | int | float) -> int:
    if isinstance(text, int | float):
        return int(text)
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"duration {text!r} must look like 100ms, 30s, 10m, 1h or 7d")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def _decision_point(entry: dict[str, Any]) -> DecisionPointConfig:
    unknown = set(entry) - _DP_KEYS
    if unknown:
        raise ConfigError(
            f"decision point {entry.get('name')!r}: unknown keys {sorted(unknown)}; known: {sorted(_DP_KEYS)}"
        )
    if "name" not in entry:
        raise ConfigError("every [[decision_points]] entry needs a name")
    challenger = entry.get("challenger")
    if challenger is not None and set(challenger) - _LEARNER_KEYS:
        raise ConfigError(
            f"decision point {entry['name']!r} challenger: unknown keys {sorted(set(challenger) - _LEARNER_KEYS)}; "
            f"known: {sorted(_LEARNER_KEYS)}"
        )
    low, high = entry.get("reward_range", (-1.0, 1.0))
    return DecisionPointConfig(
        name=entry["name"],
        learner=_learner(entry),
        challenger=None if challenger is None else _learner(dict(challenger)),
        reward_wait_ms=parse_duration_ms(entry.get("reward_wait", DEFAULT_REWARD_WAIT_MS)),
        default_reward=float(entry.get("default_reward", 0.0)),
        aggregation=entry.get("aggregation", "first"),
        reward_min=float(low),
        reward_max=float(high),
        seed=int(entry.get("seed", 0)),
        contact=_contact_policy(entry["name"], dict(entry.get("contact_policy", {}))),
        optimize_value=bool(entry.get("optimize_value", False)),
        learning_mode=entry.get("learning_mode", "online"),
        holdout_share=float(entry.get("holdout_share", 0.0)),
        apprentice_auto_promote=bool(entry.get("apprentice_auto_promote", False)),
        apprentice_min_events=int(entry.get("apprentice_min_events", DEFAULT_APPRENTICE_MIN_EVENTS)),
        namespace_ttl_ms=tuple(sorted((ns, parse_duration_ms(t)) for ns, t in entry.get("namespace_ttl", {}).items())),
    )


def _learner(entry: dict[str, Any]) -> LearnerOptions:
    default = LearnerOptions()
    return LearnerOptions(
        explorer=Explorer(**entry.get("explorer", {})),
        interactions=tuple(entry.get("interactions", default.interactions)),
        learning_rate=float(entry.get("learning_rate", default.learning_rate)),
        power_t=float(entry.get("power_t", default.power_t)),
        bits=int(entry.get("bits", default.bits)),
        l2=float(entry.get("l2", default.l2)),
    )


def _condition(where: str, data: dict[str, Any]) -> Condition:
    operator = data.get("operator")
    if operator not in OPERATORS:
        raise ConfigError(f"{where}: a condition's operator is one of {', '.join(OPERATORS)}")
    return Condition(
        data["namespace"],
        data["feature"],
        operator,
        data.get("value"),
        tuple(data.get("values", ())),
    )


def _contact_policy(name: str, data: dict[str, Any]) -> ContactPolicy:
    where = f"decision point {name!r} contact_policy"
    unknown = set(data) - _POLICY_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_POLICY_KEYS)}")
    default = ContactPolicy()
    return ContactPolicy(
        caps=tuple(
            FrequencyCap(cap["scope"], int(cap["max"]), parse_duration_ms(cap["window"]), cap.get("channel", ""))
            for cap in data.get("frequency_caps", ())
        ),
        suppress_after_ignored=int(data.get("suppress_after_ignored", 0)),
        ignored_window_ms=parse_duration_ms(data.get("ignored_window", default.ignored_window_ms)),
        consent_namespace=str(data.get("consent_namespace", "")),
        quiet_hours=tuple(
            QuietHours(q["channel"], int(q["start_hour"]), int(q["end_hour"])) for q in data.get("quiet_hours", ())
        ),
        focus_rules=tuple(
            FocusRule(tuple(_condition(where, c) for c in rule.get("conditions", ())), rule["tag"])
            for rule in data.get("focus_rules", ())
        ),
    )


def load(path: Path) -> ConfigFile:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    unknown = set(data) - {"server", "decision_points"}
    if unknown:
        raise ConfigError(f"{path}: unknown tables {sorted(unknown)}; use [server] and [[decision_points]]")
    try:
        points = [_decision_point(dict(entry)) for entry in data.get("decision_points", [])]
    except KeyError as err:
        raise ConfigError(f"{path}: missing key {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from None
    return ConfigFile(server=dict(data.get("server", {})), decision_points=points)
