"""The generated code matches proto/, and the protos pass buf lint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service import protogen
from service._pb.kairos.v1 import decision_service_pb2 as dpb

PROTO = Path(__file__).resolve().parents[2] / "proto"


def test_generated_code_is_up_to_date() -> None:
    assert protogen.check() == [], "run `python -m service.protogen`"


def test_buf_lint() -> None:
    buf = protogen.tool("buf")
    if buf is None:
        pytest.fail("buf is not installed: `pip install -e '.[test]'` installs it (buf-bin)")
    result = subprocess.run([buf, "lint"], cwd=PROTO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_contract_field_numbers() -> None:
    fields = {f.name: f.number for f in dpb.RankRequest.DESCRIPTOR.fields}
    assert fields == {
        "decision_point": 1,
        "event_id": 2,
        "subject_id": 3,
        "context": 4,
        "actions": 5,
        "excluded_action_ids": 6,
        "defer_activation": 7,
        "baseline_action_id": 8,
        "channel": 9,
    }
    assert {f.name: f.number for f in dpb.RewardRequest.DESCRIPTOR.fields} == {
        "decision_point": 1,
        "event_id": 2,
        "value": 3,
        "reward_id": 4,
        "slot_id": 40,
    }
