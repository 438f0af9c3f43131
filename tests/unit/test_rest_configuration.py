"""Personalizer configuration and learning settings <-> decision point (service.rest.configuration)."""

from __future__ import annotations

import pytest

from policies.features import NamespaceTable
from policies.learner_options import ALL_PAIRS, Explorer, LearnerOptions
from service.domain import LEARNING_MODES, DecisionPointConfig, DecisionPointRecord
from service.errors import KairosError
from service.rest import configuration as cfg


@pytest.mark.parametrize(
    ("text", "ms"),
    [("PT10M", 600_000), ("P1DT2H", 93_600_000), ("PT0.5S", 500), ("00:10:00", 600_000), ("1.02:00:00", 93_600_000)],
)
def test_durations_parse_in_iso_and_timespan_forms(text: str, ms: int) -> None:
    assert cfg.parse_duration_ms(text, "x") == ms


@pytest.mark.parametrize("ms", [600_000, 93_600_000, 500, 100, 0, 7 * 86_400_000])
def test_durations_round_trip(ms: int) -> None:
    assert cfg.parse_duration_ms(cfg.format_duration(ms), "x") == ms


@pytest.mark.parametrize("text", ["10 minutes", "P", "", 600])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(KairosError, match="ISO 8601"):
        cfg.parse_duration_ms(text, "rewardWaitTime")


def test_learning_modes_map_both_ways() -> None:
    assert [cfg.learning_mode(m) for m in ("Online", "apprentice", "LoggingOnly")] == [
        "online",
        "apprentice",
        "logging_only",
    ]
    for mode in LEARNING_MODES:
        assert cfg.learning_mode(cfg.personalizer_learning_mode(mode)) == mode
    for bad in ("Shadow", "", 3):
        with pytest.raises(KairosError) as caught:
            cfg.learning_mode(bad)
        assert caught.value.reason == "LEARNING_MODE_UNSUPPORTED"


def test_service_configuration_round_trips_and_maps_fields() -> None:
    current = DecisionPointConfig(name="dp", learner=LearnerOptions(explorer=Explorer(kind="epsilon_greedy")))
    shown = cfg.service_configuration(current, retention_days=30)
    assert cfg.updated_config(current, shown, 30) == current
    change = {"rewardWaitTime": "PT1M", "defaultReward": 0.25, "rewardAggregation": "sum", "explorationPercentage": 5}
    changed = cfg.updated_config(current, {**shown, **change, "learningMode": "Apprentice"}, 30)
    assert (changed.reward_wait_ms, changed.default_reward, changed.aggregation) == (60_000, 0.25, "sum")
    assert changed.learning_mode == "apprentice"
    assert changed.learner.explorer.epsilon == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"explorationPercentage": 5}, "EXPLORATION_PERCENTAGE_NEEDS_EPSILON"),  # square_cb has no percentage
        ({"logRetentionDays": 7}, "LOG_RETENTION_IS_SERVER_WIDE"),
        ({"isAutoOptimizationEnabled": True}, "AUTO_OPTIMIZATION_UNSUPPORTED"),
        ({"learningMode": "Shadow"}, "LEARNING_MODE_UNSUPPORTED"),
        ({"rewardAggregation": "average"}, "INVALID_CONFIGURATION"),
        ({"defaultReward": "high"}, "INVALID_CONFIGURATION"),
    ],
)
def test_service_configuration_refuses_what_kairos_cannot_do(change: dict[str, object], reason: str) -> None:
    with pytest.raises(KairosError) as caught:
        cfg.updated_config(DecisionPointConfig(name="dp"), change, 30)
    assert caught.value.reason == reason


def record(learner: LearnerOptions | None = None) -> DecisionPointRecord:
    table = NamespaceTable()
    table.index("user", "context")
    table.index("offer", "action")
    return DecisionPointRecord(DecisionPointConfig(name="dp", learner=learner or LearnerOptions()), table)


def test_the_current_command_line_gives_back_the_current_options() -> None:
    current = record()
    assert cfg.learner_from_arguments(cfg.policy(current)["arguments"], current) == current.config.learner


def test_a_personalizer_command_line_maps_onto_allowed_options() -> None:
    current = record()
    user, offer = current.namespaces.indices["user"], current.namespaces.indices["offer"]
    options = cfg.learner_from_arguments(
        f"--cb_explore_adf --epsilon 0.1 --power_t 0 -l 0.01 --cb_type mtr -q {user}{offer} -q :: -b 20", current
    )
    assert options.explorer == Explorer(kind="epsilon_greedy", epsilon=0.1)
    assert (options.power_t, options.learning_rate, options.bits) == (0.0, 0.01, 20)
    assert options.interactions == ("user*offer", ALL_PAIRS)


def test_a_kairos_spec_is_accepted_too() -> None:
    options = cfg.learner_from_arguments("squarecb:gamma_scale=50", record())
    assert options.explorer == Explorer(kind="square_cb", gamma_scale=50)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ("--cb_explore_adf --save_resume", "LEARNER_OPTION_NOT_ALLOWED"),
        ("--cb_explore_adf -f /tmp/model", "LEARNER_OPTION_NOT_ALLOWED"),
        ("--cb_explore_adf --epsilon 2", "INVALID_LEARNER_OPTIONS"),
        ("--cb_explore_adf --epsilon", "INVALID_POLICY"),
        ("--cb_explore_adf -q zz", "INVALID_POLICY"),
        ("--cb_explore_adf --cb_type ips", "INVALID_POLICY"),
        ("", "INVALID_POLICY"),
        ("nonsense:x=1", "INVALID_POLICY"),
    ],
)
def test_learner_arguments_outside_the_allow_list_are_refused(arguments: str, reason: str) -> None:
    with pytest.raises(KairosError) as caught:
        cfg.learner_from_arguments(arguments, record())
    assert caught.value.reason == reason
