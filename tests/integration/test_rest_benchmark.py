"""The REST-against-gRPC benchmark runs end to end (a tiny run: its numbers mean nothing here)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import rest
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb


def test_a_tiny_run_measures_both_protocols(tmp_path: Path) -> None:
    rest.main(["--duration", "0.6", "--warmup", "0.2", "--rate", "40", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "rest.json").read_text())
    for protocol in ("grpc", "rest"):
        assert report["results"][protocol]["errors"] == 0
        assert report["results"][protocol]["requests"] == 24
        assert report["results"][protocol]["p50_ms"] > 0
    assert report["rest_over_grpc_p50"] > 0 and report["max_ratio"] == 1.5


def test_the_rest_body_carries_the_grpc_requests_features() -> None:
    request = dpb.RankRequest(
        context=[tpb.FeatureGroup(namespace="user", features={"age": tpb.FeatureValue(number_value=3)})],
        actions=[
            tpb.Action(
                id="a", features=[tpb.FeatureGroup(namespace="o", features={"k": tpb.FeatureValue(string_value="x")})]
            )
        ],
    )
    body = json.loads(rest.personalizer_json(request.SerializeToString()))
    assert body == {
        "contextFeatures": [{"user": {"age": 3.0}}],
        "actions": [{"id": "a", "features": [{"o": {"k": "x"}}]}],
    }
