"""Decision points declared in the config file are created, then kept in line with it at every start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb
from tests.helpers import group
from tests.server import RunningServer

CONFIG = """
[[decision_points]]
name = "homepage"
reward_wait = "30s"
default_reward = {default}
explorer = {{ kind = "epsilon_greedy", epsilon = 0.05 }}
interactions = ["user*offer"]
"""


def test_declared_decision_points(make_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    config = tmp_path / "kairos.toml"
    config.write_text(CONFIG.format(default=0.0))
    server = make_server("--config", str(config), "--no-demo").start()
    names = [dp.name for dp in server.admin.ListDecisionPoints(apb.ListDecisionPointsRequest()).decision_points]
    assert names == ["homepage"]
    homepage = server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="homepage"))
    assert homepage.reward_wait.seconds == 30 and list(homepage.learning.interactions) == ["user*offer"]
    response = server.decisions.Rank(
        dpb.RankRequest(
            decision_point="homepage",
            context=[group("user", segment="gold")],
            actions=[tpb.Action(id=f"o{k}", features=[group("offer", kind=f"k{k}")]) for k in range(3)],
        )
    )
    assert len(response.ranking) == 3
    # An admin change is overwritten by the file at the next start, with a warning.
    server.admin.UpdateDecisionPoint(
        apb.UpdateDecisionPointRequest(decision_point=tpb.DecisionPoint(name="homepage", default_reward=0.5))
    )
    assert server.stop() == 0
    config.write_text(CONFIG.format(default=0.25))
    server.start()
    assert server.admin.GetDecisionPoint(apb.GetDecisionPointRequest(name="homepage")).default_reward == 0.25
    assert "config_file_overrides_decision_point" in server.log()
    assert server.stop() == 0
