"""The service learns a clear preference from rewards (fixed seeds, real gRPC)."""

from __future__ import annotations

import random

from service._pb.kairos.v1 import decision_service_pb2 as dpb
from tests.helpers import group, offers
from tests.server import RunningServer

PREFERRED = {"student": "offer-1", "retiree": "offer-4", "family": "offer-2"}


def test_learns_each_segments_preferred_offer(server: RunningServer) -> None:
    rng = random.Random(7)
    hits_late = 0
    for i in range(1500):
        segment = rng.choice(sorted(PREFERRED))
        # Fixed event ids make the draws (a hash of seed and event id) the same on every run.
        response = server.decisions.Rank(
            dpb.RankRequest(
                decision_point="demo",
                event_id=f"learn-{i}",
                context=[group("user", segment=segment)],
                actions=offers(6),
            )
        )
        shown = response.ranking[0].action_id
        clicked = rng.random() < (0.8 if shown == PREFERRED[segment] else 0.1)
        server.decisions.Reward(
            dpb.RewardRequest(decision_point="demo", event_id=response.event_id, value=1.0 if clicked else 0.0)
        )
        if i >= 1200:
            hits_late += shown == PREFERRED[segment]
    # Uniform choice would show the preferred offer 1/6 of the time; the margin leaves room for the
    # learner running a few events behind (it is asynchronous), which varies from run to run.
    assert hits_late / 300 > 0.5
    for segment, preferred in PREFERRED.items():
        response = server.decisions.Rank(
            dpb.RankRequest(decision_point="demo", context=[group("user", segment=segment)], actions=offers(6))
        )
        top = max(response.ranking, key=lambda r: r.probability)
        assert top.action_id == preferred
