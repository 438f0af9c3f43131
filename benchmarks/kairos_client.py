"""A Kairos server for the learning benchmarks: start it, create a decision point, Rank then Reward.

The learning benchmarks describe customers and actions with the policy layer's
own types (:class:`policies.features.FeatureGroup`, :class:`Candidate`); this
module turns them into the public protobuf messages and talks to a real
``kairos serve`` process (temporary data directory, port 0) over gRPC, so the
whole road is measured: transport, decision log in LMDB, the background
learner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from benchmarks.load import running_server
from policies.features import CandidateLike, FeatureGroup, FeatureScalar
from policies.learner_options import LearnerOptions
from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import admin_service_pb2_grpc as agrpc
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import decision_service_pb2_grpc as dgrpc
from service._pb.kairos.v1 import types_pb2 as tpb

TIMEOUT_S = 30.0


def feature_value(value: FeatureScalar) -> tpb.FeatureValue:
    if isinstance(value, bool):
        return tpb.FeatureValue(bool_value=value)
    if isinstance(value, str):
        return tpb.FeatureValue(string_value=value)
    return tpb.FeatureValue(number_value=float(value))


def feature_groups(groups: Sequence[FeatureGroup]) -> list[tpb.FeatureGroup]:
    return [
        tpb.FeatureGroup(namespace=g.namespace, features={k: feature_value(v) for k, v in g.features.items()})
        for g in groups
    ]


def action(candidate: CandidateLike) -> tpb.Action:
    return tpb.Action(id=candidate.id, features=feature_groups(candidate.features))


def decision_point(name: str, seed: int, options: LearnerOptions | None = None) -> tpb.DecisionPoint:
    """A decision point with the service's defaults, or with ``options`` spelled out field by field."""
    dp = tpb.DecisionPoint(name=name, seed=seed)
    if options is None:
        return dp
    e = options.explorer
    if e.kind == "square_cb":
        dp.exploration.square_cb.gamma_scale = e.gamma_scale
    elif e.kind == "epsilon_greedy":
        dp.exploration.epsilon_greedy.epsilon = e.epsilon
    elif e.kind == "reg_cb":
        dp.exploration.reg_cb.mellowness = e.mellowness
    elif e.kind == "bag":
        dp.exploration.bag.size, dp.exploration.bag.epsilon = e.bag_size, e.epsilon
    elif e.kind == "cover":
        dp.exploration.cover.size, dp.exploration.cover.psi = e.cover_size, e.psi
    else:
        setattr(dp.exploration.softmax, "lambda", e.softmax_lambda)
    dp.learning.interactions.extend(options.interactions)
    dp.learning.learning_rate = options.learning_rate
    dp.learning.power_t = options.power_t
    dp.learning.bits = options.bits
    dp.learning.l2 = options.l2
    return dp


@dataclass
class KairosSession:
    """One decision point on a running server: ``choose`` ranks and returns the shown action's index."""

    decisions: dgrpc.DecisionServiceStub
    admin: agrpc.AdminServiceStub
    name: str

    def choose(self, event_id: str, context: Sequence[FeatureGroup], actions: Sequence[tpb.Action]) -> int:
        response = self.decisions.Rank(
            dpb.RankRequest(
                decision_point=self.name, event_id=event_id, context=feature_groups(context), actions=actions
            ),
            timeout=TIMEOUT_S,
        )
        shown = response.ranking[0].action_id
        return next(i for i, a in enumerate(actions) if a.id == shown)

    def reward(self, event_id: str, value: float) -> None:
        self.decisions.Reward(
            dpb.RewardRequest(decision_point=self.name, event_id=event_id, value=value), timeout=TIMEOUT_S
        )

    def stats(self) -> apb.DecisionPointStats:
        stats: apb.DecisionPointStats = self.admin.GetStats(
            apb.GetStatsRequest(decision_point=self.name), timeout=TIMEOUT_S
        )
        return stats


@contextlib.contextmanager
def kairos_session(name: str, seed: int, options: LearnerOptions | None = None) -> Iterator[KairosSession]:
    """Start ``kairos serve`` (port 0, temporary data dir), create decision point ``name``; stop it afterwards."""
    with running_server(["--no-demo"], None) as (_, port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        admin = agrpc.AdminServiceStub(channel)
        admin.CreateDecisionPoint(
            apb.CreateDecisionPointRequest(decision_point=decision_point(name, seed, options)), timeout=TIMEOUT_S
        )
        yield KairosSession(dgrpc.DecisionServiceStub(channel), admin, name)
