"""Counterfactual evaluation on simulated DSJSON logs (real VW learners, no server)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from service.offline.evaluate import (
    LOGGED,
    UNIFORM,
    Candidate,
    EvaluationError,
    evaluate,
    learner_args,
    log_namespaces,
)
from service.offline.spec import parse_spec

PREFERRED = {"student": 0, "retiree": 2, "family": 3}


def _event(rng: random.Random) -> dict[str, object]:
    """A uniform logger over 4 offers; each segment clicks its preferred offer 80% of the time, others 10%."""
    segment = rng.choice(sorted(PREFERRED))
    chosen = rng.randrange(4)
    reward = 1.0 if rng.random() < (0.8 if chosen == PREFERRED[segment] else 0.1) else 0.0
    order = [chosen] + [k for k in range(4) if k != chosen]
    return {
        "_label_cost": -reward,
        "_label_probability": 0.25,
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "a": [k + 1 for k in order],
        "p": [0.25] * 4,
        "c": {"a": {f"segment={segment}": 1}, "_multi": [{"!": {f"offer-{k}": 1}} for k in range(4)]},
        "_kairos": {"namespaces": {"a": "user", "!": "_action"}, "reward_range": [0.0, 1.0]},
    }


def _write(path: Path, events: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    lines = [json.dumps(_event(rng)) for _ in range(events)]
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_a_learner_beats_the_logged_uniform_policy(tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    lines = _write(logs, 2000)
    found = evaluate(logs, [Candidate("squarecb", parse_spec("squarecb:interactions=user*_action"))])
    by_label = {r.label: r for r in found.results}
    assert set(by_label) == {LOGGED, UNIFORM, "squarecb"}
    mean_reward = sum(-json.loads(line)["_label_cost"] for line in lines) / len(lines)
    assert by_label[LOGGED].ips.value == pytest.approx(mean_reward)
    assert by_label[LOGGED].snips.value == pytest.approx(mean_reward)
    # The logger is uniform: uniform random is the logged policy, with weights 1.
    assert by_label[UNIFORM].ips.value == pytest.approx(mean_reward)
    learner = by_label["squarecb"]
    assert learner.dr.low > by_label[UNIFORM].dr.high  # the best fixed policy is worth 0.8, uniform 0.275
    assert 0.6 < learner.snips.value < 0.85
    assert "--interactions" in learner.vw_args and "a!" in learner.vw_args
    assert found.events == 2000 and found.bad_line_count == 0 and found.reward_range_source == "logs"
    # Every weight of the logged policy is 1, and its interval is bounded with that, not with 1 / min p.
    logged = by_label[LOGGED].ips
    assert logged.high - logged.low < by_label[UNIFORM].ips.high - by_label[UNIFORM].ips.low


def test_normal_intervals_are_narrower(tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    _write(logs, 500)
    spec = [Candidate("squarecb", parse_spec("squarecb:interactions=user*_action"))]
    bernstein, normal = evaluate(logs, spec), evaluate(logs, spec, interval="normal")
    for wide, narrow in zip(bernstein.results, normal.results, strict=True):
        assert narrow.dr.interval == "normal approximation" and narrow.dr.value == wide.dr.value
        assert narrow.dr.high - narrow.dr.low < wide.dr.high - wide.dr.low


def test_bad_lines_are_reported_and_do_not_change_the_estimates(tmp_path: Path) -> None:
    clean, dirty = tmp_path / "clean.dsjson", tmp_path / "dirty.dsjson"
    lines = _write(clean, 300)
    bad = [
        '{"_label_cost": NaN, "_label_probability": 0.25, "_labelIndex": 0, "c": {"_multi": [{"x": {"y": 1}}]}}',
        json.dumps({**json.loads(lines[0]), "_label_probability": 0.0, "p": [0.0, 0.5, 0.25, 0.25]}),
        json.dumps({**json.loads(lines[0]), "_label_probability": 1.5}),
        json.dumps({k: v for k, v in json.loads(lines[0]).items() if k != "_labelIndex" and k != "_label_Action"}),
        json.dumps({**json.loads(lines[0]), "_label_cost": -7.0}),  # outside the reward range [0, 1]
        lines[1][: len(lines[1]) // 2],  # truncated
    ]
    mixed = lines[:100] + bad[:3] + lines[100:200] + bad[3:] + lines[200:]
    dirty.write_text("\n".join(mixed) + "\n")
    spec = [Candidate("epsilon", parse_spec("epsilon:epsilon=0.1"))]
    want, got = evaluate(clean, spec), evaluate(dirty, spec)
    assert got.bad_line_count == len(bad)
    assert [b.line for b in got.bad_lines] == [101, 102, 103, 204, 205, 206]
    reasons = " | ".join(b.reason for b in got.bad_lines)
    for expected in (
        "not a finite number",
        "_label_probability is 0.0",
        "_label_probability is 1.5",
        "_labelIndex",
        "outside the reward range",
        "not valid JSON",
    ):
        assert expected in reasons
    assert got.events == want.events == 300
    for a, b in zip(want.results, got.results, strict=True):
        assert (a.label, a.ips.value, a.snips.value, a.dr.value) == (b.label, b.ips.value, b.snips.value, b.dr.value)


def test_interactions_must_name_namespaces_in_the_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    _write(logs, 10)
    with pytest.raises(EvaluationError, match=r"namespace 'offer' is not in the logs \(they have: user\)"):
        evaluate(logs, [Candidate("x", parse_spec("squarecb:interactions=user*offer"))])


def test_logs_without_usable_events_are_refused(tmp_path: Path) -> None:
    logs = tmp_path / "logs.dsjson"
    logs.write_text('{"truncated\n')
    with pytest.raises(EvaluationError, match="0 usable events"):
        evaluate(logs, [])
    with pytest.raises(EvaluationError, match="no such log file"):
        evaluate(tmp_path / "missing.dsjson", [])


def _kairos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_command_writes_a_table_json_and_a_chart(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs.dsjson", tmp_path / "eval.json"
    _write(logs, 400)
    with logs.open("a") as handle:
        handle.write('{"_label_cost": -1, "_label_probability": 0.25, "_labelInd\n')
    done = _kairos(
        *("evaluate", str(logs), "--policy", "squarecb:gamma_scale=20", "--out", str(out)),
        *("--confidence", "0.9", "--interval", "normal"),
    )
    assert done.returncode == 0, done.stderr
    assert (
        "squarecb:gamma_scale=20" in done.stdout and "logged policy" in done.stdout and "uniform random" in done.stdout
    )
    assert "90% interval" in done.stdout and "line 401: not valid JSON" in done.stdout
    assert "IPS and DR normal approximation" in done.stdout
    saved = json.loads(out.read_text())
    assert saved["events"] == 400 and saved["bad_lines"][0]["line"] == 401 and saved["confidence"] == 0.9
    assert {p["policy"] for p in saved["policies"]} == {"squarecb:gamma_scale=20", LOGGED, UNIFORM}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in done.stderr
    else:
        assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "greedy"], "the explorer must be one of"),
        (["--reward-range", "1"], "LOW,HIGH"),
        (["--reward-range", "1,0"], "LOW < HIGH"),
        (["--confidence", "95"], "--confidence 95.0 must be within (0, 1)"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    logs = tmp_path / "logs.dsjson"
    _write(logs, 5)
    done = _kairos("evaluate", str(logs), *args)
    assert done.returncode == 2 and message in done.stderr


def test_role_groups_expand_like_the_service_or_from_foreign_logs(tmp_path: Path) -> None:
    kairos_logs = tmp_path / "kairos.dsjson"
    _write(kairos_logs, 5)
    default = Candidate("squarecb", parse_spec("squarecb"))  # interactions _context*_actions
    namespaces = log_namespaces(kairos_logs, [default])
    assert namespaces.foreign_roles is None
    assert learner_args(parse_spec("squarecb"), namespaces) == parse_spec("squarecb").vw_args(namespaces.table)

    foreign = tmp_path / "foreign.dsjson"
    event = {
        "_label_cost": -1.0,
        "_label_probability": 0.5,
        "_labelIndex": 0,
        "a": [1, 2],
        "p": [0.5, 0.5],
        "c": {"User": {"tier": "gold"}, "Geo": {"city": "x"}, "_multi": [{"Offer": {"o": 1}}, {"Offer": {"o": 2}}]},
    }
    foreign.write_text(json.dumps(event) + "\n" + json.dumps(event) + "\n")
    namespaces = log_namespaces(foreign, [default])
    assert namespaces.foreign_roles == {"U": "context", "G": "context", "O": "action"}
    args = learner_args(parse_spec("squarecb"), namespaces)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--interactions"] == ["GO", "UO"]
    named = learner_args(parse_spec("squarecb:interactions=User*Offer"), namespaces)
    assert [named[i + 1] for i, a in enumerate(named) if a == "--interactions"] == ["UO"]
    assert evaluate(foreign, [default]).events == 2
