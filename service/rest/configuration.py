"""Personalizer's service configuration and learning settings (policy) <-> a Kairos decision point.

Transport-free translation; the REST routes call it and pass the result to the decision plane.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import replace
from typing import Any

from policies.features import RESERVED_NAMESPACES
from policies.learner_options import ALL_PAIRS, Explorer, ExplorerKind, LearnerOptions, OptionsError
from service.domain import DecisionPointConfig, DecisionPointRecord, LearningMode
from service.errors import invalid
from service.offline import spec as specs

# Personalizer's reward aggregations and Kairos's.
AGGREGATIONS = {"earliest": "first", "sum": "sum"}
_ISO = re.compile(
    r"P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)
_TIMESPAN = re.compile(r"(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2}(?:\.\d+)?)")
MODEL_EXPORT_FREQUENCY = "PT0S"  # every learned event changes the served model at once


# Personalizer's learning modes and Kairos's: the one place that maps them.
LEARNING_MODES: dict[str, LearningMode] = {
    "Online": "online",
    "Apprentice": "apprentice",
    "LoggingOnly": "logging_only",
}


def learning_mode(value: Any) -> LearningMode:
    """Kairos's learning mode for Personalizer's ``learningMode`` (case-insensitive)."""
    found = {k.lower(): v for k, v in LEARNING_MODES.items()}.get(value.lower()) if isinstance(value, str) else None
    if found is None:
        raise invalid(
            "LEARNING_MODE_UNSUPPORTED",
            f"learningMode {str(value)[:40]!r} is not one of {', '.join(LEARNING_MODES)}",
        )
    return found


def personalizer_learning_mode(mode: LearningMode) -> str:
    return next(name for name, kairos in LEARNING_MODES.items() if kairos == mode)


def parse_duration_ms(value: Any, field: str) -> int:
    """An ISO 8601 duration (``PT10M``) or a .NET TimeSpan (``00:10:00``) in milliseconds."""
    match = (_ISO.fullmatch(value) or _TIMESPAN.fullmatch(value)) if isinstance(value, str) else None
    if match is None or not any(match.groupdict().values()):
        raise invalid("INVALID_DURATION", f"{field} must be an ISO 8601 duration such as 'PT10M', not {value!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    seconds = (parts.get("days", 0) * 86400 + parts.get("hours", 0) * 3600 + parts.get("minutes", 0) * 60) + parts.get(
        "seconds", 0
    )
    return round(seconds * 1000)


def format_duration(ms: int) -> str:
    """``ms`` as an ISO 8601 duration: ``PT10M``, ``P1DT2H``, ``PT0.5S``."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = rest / 1000
    time = "".join(f"{value:g}{unit}" for value, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if value)
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return text if text != "P" else "PT0S"


def service_configuration(config: DecisionPointConfig, retention_days: float) -> dict[str, Any]:
    aggregation = next(k for k, v in AGGREGATIONS.items() if v == config.aggregation)
    return {
        "rewardWaitTime": format_duration(config.reward_wait_ms),
        "defaultReward": config.default_reward,
        "rewardAggregation": aggregation,
        "explorationPercentage": round(config.learner.explorer.epsilon * 100, 6),
        "modelExportFrequency": MODEL_EXPORT_FREQUENCY,
        "logRetentionDays": round(retention_days),
        "modelRetrainDays": 0,
        "learningMode": personalizer_learning_mode(config.learning_mode),
        "isAutoOptimizationEnabled": False,
        "logMirrorEnabled": False,
    }


def _number(body: dict[str, Any], key: str) -> float:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid("INVALID_CONFIGURATION", f"{key} must be a number, not {value!r}")
    return float(value)


def updated_config(current: DecisionPointConfig, body: Any, retention_days: float) -> DecisionPointConfig:
    """``current`` with the fields of a Personalizer service configuration; missing fields keep their value.
    The plane validates ranges (reward wait, default reward) as it does for gRPC."""
    if not isinstance(body, dict):
        raise invalid("INVALID_CONFIGURATION", "the service configuration must be a JSON object")
    config = current
    if "rewardWaitTime" in body:
        config = replace(config, reward_wait_ms=parse_duration_ms(body["rewardWaitTime"], "rewardWaitTime"))
    if "defaultReward" in body:
        config = replace(config, default_reward=_number(body, "defaultReward"))
    if "rewardAggregation" in body:
        aggregation = AGGREGATIONS.get(str(body["rewardAggregation"]).lower())
        if aggregation is None:
            raise invalid(
                "INVALID_CONFIGURATION",
                f"rewardAggregation must be 'earliest' or 'sum', not {body['rewardAggregation']!r}",
            )
        config = replace(config, aggregation=aggregation)  # type: ignore[arg-type]
    if "explorationPercentage" in body:
        config = replace(config, learner=_with_exploration(config.learner, _number(body, "explorationPercentage")))
    if "modelExportFrequency" in body:
        parse_duration_ms(body["modelExportFrequency"], "modelExportFrequency")  # accepted: Kairos serves at once
    if "logRetentionDays" in body and _number(body, "logRetentionDays") != round(retention_days):
        raise invalid(
            "LOG_RETENTION_IS_SERVER_WIDE",
            f"logRetentionDays is {round(retention_days)} for every decision point of this server; change the "
            "server setting retention_days (KAIROS_RETENTION_DAYS) instead",
        )
    if body.get("learningMode") is not None:
        config = replace(config, learning_mode=learning_mode(body["learningMode"]))
    if body.get("isAutoOptimizationEnabled"):
        raise invalid(
            "AUTO_OPTIMIZATION_UNSUPPORTED",
            "Kairos does not optimize learning settings on its own: create an evaluation and apply its best "
            "policy with configurations/applyFromEvaluation",
        )
    if body.get("logMirrorEnabled"):
        raise invalid("LOG_MIRROR_UNSUPPORTED", "log mirroring is not supported; export decisions with `kairos export`")
    return config


def _with_exploration(learner: LearnerOptions, percentage: float) -> LearnerOptions:
    explorer = learner.explorer
    epsilon = percentage / 100
    if math.isclose(epsilon, explorer.epsilon, abs_tol=1e-9):
        return learner
    if not 0 <= epsilon <= 1:
        raise invalid("INVALID_CONFIGURATION", f"explorationPercentage must be within [0, 100], not {percentage:g}")
    if explorer.kind not in ("epsilon_greedy", "bag"):
        raise invalid(
            "EXPLORATION_PERCENTAGE_NEEDS_EPSILON",
            f"this decision point explores with {explorer.kind}, which has no exploration percentage; switch to "
            "epsilon-greedy learning settings first (configurations/policy with '--cb_explore_adf --epsilon 0.2')",
        )
    return replace(learner, explorer=replace(explorer, epsilon=epsilon))


# -- learning settings (policy) ---------------------------------------------------------------------

_EXPLORER_FLAGS: dict[str, ExplorerKind] = {
    "--squarecb": "square_cb",
    "--regcb": "reg_cb",
    "--softmax": "softmax",
}
_SIZED_FLAGS: dict[str, tuple[ExplorerKind, str]] = {"--bag": ("bag", "bag_size"), "--cover": ("cover", "cover_size")}
_VALUE_FLAGS = {
    "--epsilon": ("explorer", "epsilon"),
    "--gamma_scale": ("explorer", "gamma_scale"),
    "--mellowness": ("explorer", "mellowness"),
    "--psi": ("explorer", "psi"),
    "--lambda": ("explorer", "softmax_lambda"),
    "-l": ("learner", "learning_rate"),
    "--learning_rate": ("learner", "learning_rate"),
    "--power_t": ("learner", "power_t"),
    "--l2": ("learner", "l2"),
    "-b": ("learner", "bits"),
    "--bit_precision": ("learner", "bits"),
}
_INTERACTION_FLAGS = ("-q", "--quadratic", "--interactions", "--cubic")
# Flags that change nothing in Kairos's model (its defaults, or input formats).
_NO_OP = {"--cb_explore_adf", "--quiet", "--dsjson", "--json"}
ALLOWED_FLAGS = sorted([*_EXPLORER_FLAGS, *_SIZED_FLAGS, *_VALUE_FLAGS, *_INTERACTION_FLAGS, *_NO_OP, "--cb_type"])


def policy(record: DecisionPointRecord) -> dict[str, str]:
    """The learning settings as Personalizer showed them: a name and the VW command line."""
    return {"name": specs.format_spec(record.config.learner), "arguments": " ".join(record.vw_args())}


def learner_from_arguments(arguments: Any, record: DecisionPointRecord) -> LearnerOptions:
    """Learner options from a VW command line restricted to Kairos's allow-list, or from a Kairos learner
    spec (``squarecb:gamma_scale=50``). The current command line gives back the current options."""
    if not isinstance(arguments, str) or not arguments.strip():
        raise invalid("INVALID_POLICY", "arguments must be a VW command line such as '--cb_explore_adf --epsilon 0.2'")
    if not arguments.lstrip().startswith("-"):
        try:
            return specs.parse_spec(arguments)
        except specs.SpecError as err:
            raise invalid("INVALID_POLICY", str(err)) from None
    try:
        words = shlex.split(arguments)
    except ValueError as err:
        raise invalid("INVALID_POLICY", f"arguments do not parse: {err}") from None
    if words == record.vw_args():
        return record.config.learner
    return _parse_vw_args(words, record)


def _parse_vw_args(words: list[str], record: DecisionPointRecord) -> LearnerOptions:
    explorer: dict[str, Any] = {"kind": "epsilon_greedy"}
    learner: dict[str, Any] = {}
    interactions: list[str] = []
    names = {index: name for name, index in {**RESERVED_NAMESPACES, **record.namespaces.indices}.items()}
    position = 0

    def value_of(flag: str) -> str:
        nonlocal position
        position += 1
        if position >= len(words):
            raise invalid("INVALID_POLICY", f"{flag} needs a value")
        return words[position]

    while position < len(words):
        flag, _, inline = words[position].partition("=")
        if flag in _NO_OP:
            pass
        elif flag == "--cb_type":
            if (inline or value_of(flag)) != "mtr":
                raise invalid("INVALID_POLICY", "Kairos learns with --cb_type mtr only")
        elif flag in _EXPLORER_FLAGS:
            explorer["kind"] = _EXPLORER_FLAGS[flag]
        elif flag in _SIZED_FLAGS:
            kind, size_field = _SIZED_FLAGS[flag]
            explorer["kind"] = kind
            explorer[size_field] = _parse_number(flag, inline or value_of(flag), integer=True)
        elif flag in _VALUE_FLAGS:
            target, field = _VALUE_FLAGS[flag]
            number = _parse_number(flag, inline or value_of(flag), integer=field == "bits")
            (explorer if target == "explorer" else learner)[field] = number
        elif flag in _INTERACTION_FLAGS:
            interactions.append(_interaction(flag, inline or value_of(flag), names))
        else:
            raise invalid(
                "LEARNER_OPTION_NOT_ALLOWED",
                f"{flag!r} is not among the learner options Kairos accepts: {', '.join(ALLOWED_FLAGS)}",
                option=flag[:64],
            )
        position += 1
    options = LearnerOptions(explorer=Explorer(**explorer), interactions=tuple(interactions), **learner)
    try:
        options.validate()
    except OptionsError as err:
        raise invalid("INVALID_LEARNER_OPTIONS", str(err)) from None
    return options


def _parse_number(flag: str, text: str, integer: bool) -> float | int:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise invalid(
            "INVALID_POLICY", f"{flag} takes {'an integer' if integer else 'a number'}, not {text!r}"
        ) from None


def _interaction(flag: str, text: str, names: dict[str, str]) -> str:
    """VW's interaction of namespace indices (``UA``, ``::``) as Kairos's names (``user*offer``, ``*``)."""
    if set(text) == {":"}:
        return ALL_PAIRS
    unknown = [index for index in text if index not in names]
    if unknown or len(text) not in (2, 3):
        raise invalid(
            "INVALID_POLICY",
            f"{flag} {text!r}: interactions are 2 or 3 namespace indices this decision point has given out "
            f"({', '.join(f'{i}={n}' for i, n in sorted(names.items())) or 'none yet'}) or '::' for all pairs",
        )
    return "*".join(names[index] for index in text)


def check_policy_name(body: Any) -> tuple[str, Any]:
    if not isinstance(body, dict):
        raise invalid("INVALID_POLICY", "the policy must be a JSON object with name and arguments")
    return str(body.get("name") or ""), body.get("arguments")
