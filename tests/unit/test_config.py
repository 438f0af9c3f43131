from __future__ import annotations

from pathlib import Path

import pytest

from service import config_file, settings


def test_settings_layers(tmp_path: Path) -> None:
    loaded = settings.load(
        overrides={"port": "7000"},
        file_settings={"port": 6000, "host": "0.0.0.0"},
        environ={"KAIROS_PORT": "5000", "KAIROS_DATA_DIR": "/srv/k", "KAIROS_DEMO": "false"},
    )
    assert (loaded.port, loaded.host, loaded.data_dir, loaded.demo) == (7000, "0.0.0.0", Path("/srv/k"), False)


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        settings.load(file_settings={"prot": 1}, environ={})


def test_every_setting_is_documented() -> None:
    docs = settings.Settings.field_docs()
    assert set(docs) == set(settings.Settings.__dataclass_fields__)


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "kairos.toml"
    path.write_text(
        """
[server]
port = 6001

[[decision_points]]
name = "homepage"
reward_wait = "30s"
aggregation = "sum"
reward_range = [0, 5]
explorer = { kind = "epsilon_greedy", epsilon = 0.05 }
interactions = ["user*offer"]
"""
    )
    loaded = config_file.load(path)
    assert loaded.server == {"port": 6001}
    (dp,) = loaded.decision_points
    assert (dp.name, dp.reward_wait_ms, dp.aggregation, dp.reward_max) == ("homepage", 30_000, "sum", 5.0)
    assert dp.learner.explorer.epsilon == 0.05 and dp.learner.interactions == ("user*offer",)


def test_config_file_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[decision_points]]\nname = "x"\nreward_wiat = "1s"\n')
    with pytest.raises(config_file.ConfigError, match="reward_wiat"):
        config_file.load(path)
    assert config_file.parse_duration_ms("100ms") == 100
    with pytest.raises(config_file.ConfigError):
        config_file.parse_duration_ms("soon")


def test_config_file_declares_contact_policy_and_ttl(tmp_path: Path) -> None:
    """The module docstring's example is a valid file, and every part of it arrives."""
    path = tmp_path / "kairos.toml"
    path.write_text((config_file.__doc__ or "").split("\n", 1)[1])  # after the title line
    (dp,) = config_file.load(path).decision_points
    assert dict(dp.namespace_ttl_ms) == {"web": 3_600_000, "purchases": 365 * 86_400_000}
    policy = dp.contact
    assert [(c.scope, c.max_exposures, c.window_ms, c.channel) for c in policy.caps] == [
        ("action", 1, 86_400_000, ""),
        ("channel", 3, 7 * 86_400_000, "email"),
    ]
    assert (policy.suppress_after_ignored, policy.ignored_window_ms, policy.consent_namespace) == (
        3,
        30 * 86_400_000,
        "consent",
    )
    assert policy.quiet_hours[0].covers(23 * 3_600_000) and not policy.quiet_hours[0].covers(12 * 3_600_000)
    (rule,) = policy.focus_rules
    assert rule.tag == "service" and rule.conditions[0].holds({"support": {"open_ticket": True}})
    policy.validate()
    path.write_text(
        '[[decision_points]]\nname = "x"\n[decision_points.contact_policy]\nfrequency_caps = [{ scope = "action" }]\n'
    )
    with pytest.raises(config_file.ConfigError, match="missing key"):
        config_file.load(path)


def test_config_file_declares_a_challenger(tmp_path: Path) -> None:
    path = tmp_path / "kairos.toml"
    path.write_text((config_file.__doc__ or "").split("\n", 1)[1])
    (dp,) = config_file.load(path).decision_points
    assert dp.challenger is not None
    assert (dp.challenger.explorer.kind, dp.challenger.explorer.epsilon) == ("epsilon_greedy", 0.05)
    assert dp.challenger.learning_rate == 0.5 and dp.challenger.interactions == dp.learner.interactions
    path.write_text('[[decision_points]]\nname = "x"\nchallenger = { learning_rat = 0.5 }\n')
    with pytest.raises(config_file.ConfigError, match="learning_rat"):
        config_file.load(path)


def test_config_file_declares_learning_mode_and_holdout(tmp_path: Path) -> None:
    path = tmp_path / "kairos.toml"
    path.write_text(
        '[[decision_points]]\nname = "offers"\nlearning_mode = "apprentice"\nholdout_share = 0.1\n'
        "apprentice_auto_promote = true\napprentice_min_events = 500\n"
    )
    (dp,) = config_file.load(path).decision_points
    assert (dp.learning_mode, dp.holdout_share) == ("apprentice", 0.1)
    assert dp.apprentice_auto_promote and dp.apprentice_min_events == 500
    documented = tmp_path / "documented.toml"
    documented.write_text((config_file.__doc__ or "").split("\n", 1)[1])
    (example,) = config_file.load(documented).decision_points
    assert (example.learning_mode, example.holdout_share, example.apprentice_min_events) == ("online", 0.0, 1000)
