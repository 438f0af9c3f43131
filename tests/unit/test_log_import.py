"""`kairos import-logs` without a server: every kind of bad row, and the three formats round-tripping
through `kairos evaluate` to the same estimates (real VW learners, real files)."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from policies.features import NamespaceTable
from service.offline import dsjson
from service.offline.evaluate import Candidate, evaluate
from service.offline.log_import import (
    ImportReport,
    LogImportError,
    Normalized,
    Normalizer,
    guess_format,
    import_rows,
)
from service.offline.spec import parse_spec

PREFERRED = {"student": 0, "retiree": 2, "family": 3}
ACTIONS = [f"offer-{k}" for k in range(4)]
CONTEXT = ["user.segment", "user.age"]
NAN_PROBABILITY = '{"actions": ["a", "b"], "chosen_action": "a", "probability": NaN, "reward": 1}'
NAN_REWARD = '{"actions": ["a", "b"], "chosen_action": "a", "probability": 0.5, "reward": NaN}'


def _decisions(n: int, seed: int = 7) -> list[dict[str, object]]:
    """A uniform logger over 4 offers; each segment clicks its preferred offer 80% of the time, others 10%."""
    rng = random.Random(seed)
    found = []
    for i in range(n):
        segment = rng.choice(sorted(PREFERRED))
        chosen = rng.randrange(4)
        reward = 1.0 if rng.random() < (0.8 if chosen == PREFERRED[segment] else 0.1) else 0.0
        found.append(
            {
                "event_id": f"e-{i}",
                "timestamp": f"2026-01-05T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "segment": segment,
                "age": float(20 + i % 50),
                "chosen": chosen,
                "reward": reward,
            }
        )
    return found


def _jsonl(decisions: list[dict[str, object]]) -> str:
    lines = [
        json.dumps(
            {
                "event_id": d["event_id"],
                "timestamp": d["timestamp"],
                "context": {"user": {"segment": d["segment"], "age": d["age"]}},
                "actions": [{"id": a, "features": {"offer": {"price": 10.0 + k}}} for k, a in enumerate(ACTIONS)],
                "chosen_action": ACTIONS[int(str(d["chosen"]))],
                "probability": 0.25,
                "reward": d["reward"],
            }
        )
        for d in decisions
    ]
    return "\n".join(lines) + "\n"


def _csv(decisions: list[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    features = json.dumps({a: {"offer": {"price": 10.0 + k}} for k, a in enumerate(ACTIONS)})
    writer.writerow(
        ["event_id", "timestamp", "actions", "chosen_action", "probability", "reward", "action_features", *CONTEXT]
    )
    for d in decisions:
        chosen = ACTIONS[int(str(d["chosen"]))]
        writer.writerow(
            [
                d["event_id"],
                d["timestamp"],
                ";".join(ACTIONS),
                chosen,
                0.25,
                d["reward"],
                features,
                d["segment"],
                d["age"],
            ]
        )
    return out.getvalue()


def _foreign_dsjson(decisions: list[dict[str, object]]) -> str:
    """As VW's decision service or Personalizer logs it: namespaces by name, actions tagged with their id."""
    lines = []
    for d in decisions:
        chosen = int(str(d["chosen"]))
        order = [chosen] + [k for k in range(4) if k != chosen]
        lines.append(
            json.dumps(
                {
                    "_label_cost": -float(str(d["reward"])),
                    "_label_probability": 0.25,
                    "_label_Action": chosen + 1,
                    "_labelIndex": chosen,
                    "Timestamp": d["timestamp"],
                    "Version": "1",
                    "EventId": d["event_id"],
                    "a": [k + 1 for k in order],
                    "p": [0.25] * 4,
                    "c": {
                        "user": [{"segment": d["segment"]}, {"age": d["age"]}],
                        "_multi": [{"_tag": a, "offer": {"price": 10.0 + k}} for k, a in enumerate(ACTIONS)],
                    },
                    "VWState": {"m": "x"},
                }
            )
        )
    return "\n".join(lines) + "\n"


def _import(path: Path, fmt: str, reward_range: tuple[float, float] | None = (0.0, 1.0)) -> tuple[ImportReport, Path]:
    out = path.with_suffix(".imported.dsjson")
    normalizer = Normalizer("offers", NamespaceTable(), reward_range, now_ms=0)
    with out.open("w") as handle:

        def write(event: Normalized) -> None:
            handle.write(event.event + "\n")

        report = import_rows(path, fmt, normalizer, write)  # type: ignore[arg-type]
    return report, out


POLICY = [Candidate("squarecb", parse_spec("squarecb:interactions=user*_action"))]


def _estimates(path: Path) -> dict[str, tuple[float, float, float]]:
    found = evaluate(path, POLICY)
    return {r.label: (r.ips.value, r.snips.value, r.dr.value) for r in found.results}


def test_the_three_formats_import_to_the_same_events_and_estimates(tmp_path: Path) -> None:
    decisions = _decisions(300)
    sources = {"jsonl": _jsonl(decisions), "csv": _csv(decisions), "dsjson": _foreign_dsjson(decisions)}
    imported: dict[str, list[str]] = {}
    for fmt, text in sources.items():
        path = tmp_path / f"logs.{fmt}"
        path.write_text(text)
        assert guess_format(path) == fmt
        report, out = _import(path, fmt)
        assert (report.lines, report.imported, report.bad_count) == (300, 300, 0), report.details()
        assert report.namespaces_added == ["user", "offer"]
        imported[fmt] = out.read_text().splitlines()
    # Every format becomes the same DSJSON, features encoded and indexed as the service does.
    assert imported["jsonl"] == imported["csv"] == imported["dsjson"]
    first = json.loads(imported["jsonl"][0])
    assert first["c"]["a"] == {f"segment={decisions[0]['segment']}": 1.0, "age": decisions[0]["age"]}
    assert first["c"]["_multi"][0] == {"!": {"offer-0": 1.0}, "A": {"price": 10.0}}
    assert first["_kairos"]["actions"] == ACTIONS and first["_kairos"]["namespaces"]["a"] == "user"
    assert first["EventId"] == "e-0" and first["Timestamp"] == "2026-01-05T10:00:00.000Z"
    # ... which evaluates to the same estimates; the logged policy's value is the mean logged reward.
    estimates = _estimates(tmp_path / "logs.imported.dsjson")
    mean = sum(float(str(d["reward"])) for d in decisions) / len(decisions)
    assert estimates["logged policy"][0] == pytest.approx(mean)
    assert estimates["squarecb"][2] > estimates["uniform random"][2]


def test_an_export_imports_unchanged_and_evaluates_the_same(tmp_path: Path) -> None:
    """A Kairos export keeps its namespace names, action ids and encoded features through an import."""
    decisions = _decisions(200, seed=3)
    (tmp_path / "logs.jsonl").write_text(_jsonl(decisions))
    _, first = _import(tmp_path / "logs.jsonl", "jsonl")
    export = tmp_path / "export.dsjson"
    export.write_text(first.read_text())
    report, again = _import(export, "dsjson")
    assert report.imported == 200 and report.namespaces_added == ["user", "offer"]
    assert again.read_text() == export.read_text()
    assert _estimates(again) == _estimates(export)


GOOD = {
    "actions": ["a", "b"],
    "chosen_action": "a",
    "probability": 0.5,
    "reward": 1.0,
    "context": {"user": {"tier": "gold"}},
}


def _row(**changes: object) -> str:
    row = {**GOOD, **changes}
    return json.dumps({k: v for k, v in row.items() if v is not None})


@pytest.mark.parametrize(
    ("bad", "kind", "says"),
    [
        (_row(probability=None), "unusable probability", "probability is missing"),
        (_row(probability=0), "unusable probability", "probability is 0"),
        (_row(probability=1.5), "unusable probability", "above 1"),
        (
            '{"actions": ["a", "b"], "chosen_action": "a", "probability": NaN, "reward": 1}',
            "unusable probability",
            "NaN",
        ),
        (_row(probability="often"), "unusable probability", "not a number"),
        (NAN_REWARD, "unusable reward", "nan"),
        (_row(reward=None), "unusable reward", "reward is missing"),
        (_row(reward=3.0), "unusable reward", "outside the decision point's reward range [0, 1]"),
        (_row(chosen_action="z"), "unknown chosen action", "'z' is not one of the row's 2 actions"),
        (_row(chosen_action=None), "missing field", "chosen_action is missing"),
        (_row(actions=["a", "a"]), "invalid actions", "appears twice"),
        (_row(actions=[]), "invalid actions", "no actions"),
        ('{"actions": ["a", "b"], "chosen_action": "a", probability: 0.5}', "invalid JSON", "not valid JSON"),
        (_row(context={"user": {"tier": {"deep": [{"x": 1}]}}}), "invalid feature", "use strings, numbers or booleans"),
        (_row(context={"user": {"age": 1e300}}), "invalid feature", "within +-1e+06"),
        (_row(timestamp="yesterday"), "invalid timestamp", "not an ISO-8601"),
        (
            _row(actions=[{"id": "a", "probability": 0.7}, {"id": "b", "probability": 0.7}]),
            "unusable probability",
            "sum",
        ),
    ],
)
def test_each_bad_row_is_reported_with_its_line_and_reason(tmp_path: Path, bad: str, kind: str, says: str) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join([_row(), _row(chosen_action="b"), "", bad, _row()]) + "\n")
    report, out = _import(path, "jsonl")
    assert (report.lines, report.imported, report.bad_count) == (4, 3, 1)
    assert report.bad_by_kind == {kind: 1}
    [found] = report.bad_rows
    assert found.line == 4 and found.kind == kind and says in found.reason, found.reason
    assert f"line 4: {kind}: " in report.details()[0]
    assert len(out.read_text().splitlines()) == 3  # the others, never the bad one


def test_a_truncated_last_line_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text(_row() + "\n" + "{bad\n" + _row()[:30])
    report, _ = _import(path, "jsonl")
    assert [(b.line, b.kind) for b in report.bad_rows] == [(2, "invalid JSON"), (3, "truncated last line")]
    assert report.summary() == "read 3 rows: 1 usable, 2 left out (1 invalid JSON, 1 truncated last line)"


def test_bad_csv_rows_are_reported_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text(
        "event_id,actions,chosen_action,probability,reward,user.tier\n"
        "e1,a;b,a,0.5,1,gold\n"
        "e2,a;b,a,0,1,gold\n"  # probability 0
        "e3,a;b,c,0.5,1,gold\n"  # unknown chosen action
        "e4,a;b,a,0.5,nan,gold\n"  # NaN reward
        "e5,a;b,a,0.5\n"  # cells missing
        '"e6,with a quoted\nnewline",a;b,b,0.5,0,silver\n'  # a quoted cell spans two lines
        "e7,a;b,a,0.5,1,go"  # truncated: the file ends without a newline, cells missing
    )
    report, out = _import(path, "csv")
    assert [(b.line, b.kind) for b in report.bad_rows] == [
        (3, "unusable probability"),
        (4, "unknown chosen action"),
        (5, "unusable reward"),
        (6, "missing field"),
        (9, "truncated last line"),
    ]
    assert report.imported == 2
    assert [json.loads(line)["EventId"] for line in out.read_text().splitlines()] == ["e1", "e6,with a quoted\nnewline"]


def test_a_csv_without_the_needed_columns_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text("actions,chosen_action,reward\na;b,a,1\n")
    with pytest.raises(LogImportError, match="probability"):
        _import(path, "csv")
    path.write_text("actions,chosen_action,probability,reward,tier\na;b,a,0.5,1,gold\n")
    with pytest.raises(LogImportError, match="'tier' is neither a field"):
        _import(path, "csv")


def test_bad_dsjson_rows_say_why(tmp_path: Path) -> None:
    good = _foreign_dsjson(_decisions(3)).splitlines()
    zero = json.loads(good[1]) | {"_label_probability": 0}
    skipped = json.loads(good[2]) | {"_skipLearn": True}
    path = tmp_path / "logs.dsjson"
    path.write_text("\n".join([good[0], json.dumps(zero), json.dumps(skipped), good[0][:-5]]))
    report, _ = _import(path, "dsjson")
    assert [(b.line, b.kind) for b in report.bad_rows] == [
        (2, "unusable probability"),
        (3, "not activated"),
        (4, "truncated last line"),
    ]


def test_only_the_chosen_probability_spreads_the_rest_evenly(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text(_row(actions=["a", "b", "c"], probability=0.6) + "\n" + _row(actions=["a"], probability=0.5))
    report, out = _import(path, "jsonl")
    [event] = [json.loads(line) for line in out.read_text().splitlines()]
    assert event["p"] == [0.6, pytest.approx(0.2), pytest.approx(0.2)] and event["a"][0] == 1
    assert [(b.line, b.kind) for b in report.bad_rows] == [(2, "unusable probability")]  # a lone action needs 1
    dsjson.read_event(out.read_text().splitlines()[0])


def _kairos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_command_reports_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text(_jsonl(_decisions(20)) + _row(probability=0) + "\n")
    out, report = tmp_path / "out.dsjson", tmp_path / "report.json"
    done = _kairos(
        "import-logs", str(path), "--decision-point", "offers", "--data-dir", str(tmp_path / "none"),
        "-o", str(out), "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "read 21 rows: 20 usable, 1 left out (1 unusable probability)" in done.stderr
    assert "line 21: unusable probability: probability is 0" in done.stderr
    assert len(out.read_text().splitlines()) == 20
    assert json.loads(report.read_text())["bad_rows"] == [
        {"line": 21, "kind": "unusable probability", "reason": json.loads(report.read_text())["bad_rows"][0]["reason"]}
    ]
    dry = _kairos("import-logs", str(path), "--decision-point", "offers", "--data-dir", str(tmp_path), "--dry-run")
    assert dry.returncode == 0 and "20 usable" in dry.stderr and dry.stdout == ""
    nowhere = _kairos("import-logs", str(path), "--decision-point", "offers")
    assert nowhere.returncode == 2 and "-o FILE" in nowhere.stderr
    (tmp_path / "bad.jsonl").write_text(_row(probability=2) + "\n")
    nothing = _kairos("import-logs", str(tmp_path / "bad.jsonl"), "--decision-point", "x", "--dry-run")
    assert nothing.returncode == 1 and "0 usable" in nothing.stderr
