"""Request builders shared by tests."""

from __future__ import annotations

from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb


def value(v: str | float | bool) -> tpb.FeatureValue:
    if isinstance(v, bool):
        return tpb.FeatureValue(bool_value=v)
    if isinstance(v, str):
        return tpb.FeatureValue(string_value=v)
    return tpb.FeatureValue(number_value=v)


def group(namespace: str, **features: str | float | bool) -> tpb.FeatureGroup:
    return tpb.FeatureGroup(namespace=namespace, features={k: value(v) for k, v in features.items()})


def offers(n: int) -> list[tpb.Action]:
    return [
        tpb.Action(id=f"offer-{k}", features=[group("offer", category=f"c{k % 3}", price=10.0 + k)]) for k in range(n)
    ]


def rank_request(n: int = 5, decision_point: str = "demo", **kwargs: object) -> dpb.RankRequest:
    return dpb.RankRequest(
        decision_point=decision_point,
        context=[group("user", segment="gold", age=31.0), group("session", device="mobile")],
        actions=offers(n),
        **kwargs,  # type: ignore[arg-type]
    )
