"""Fail-open: when the model cannot answer, Rank gives the fallback ranking, records it, never learns it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.ranking import fallback
from policies.vw import PolicyError, Prediction
from service.domain import DecisionPointConfig
from service.plane import DecisionPlane, RankInput
from service.store.lmdb_store import Store
from tests.unit.test_plane import offers


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[DecisionPlane]:
    opened = DecisionPlane(Store(tmp_path / "lmdb"), tmp_path / "models")
    opened.load_all()
    opened.create_decision_point(DecisionPointConfig(name="dp", reward_wait_ms=100))
    yield opened
    opened.close()
    opened.store.close()


def test_fallback_puts_the_baseline_first_then_the_given_order() -> None:
    ranking = fallback(["a", "b", "c", "d"], "c")
    assert ranking.order == (2, 0, 1, 3)
    assert ranking.probabilities == (0.0, 0.0, 1.0, 0.0)
    assert fallback(["a", "b"], "not-a-candidate").order == (0, 1)
    assert fallback(["a", "b"]).probabilities == (1.0, 0.0)


def test_a_model_not_loaded_gives_the_fallback_and_it_is_never_learned(plane: DecisionPlane) -> None:
    plane.states["dp"].loaded = False
    out = plane.rank(RankInput("dp", offers(4), baseline_action_id="o2"))
    assert out.fallback_reason == "MODEL_NOT_LOADED"
    assert out.ranking == [("o2", 1.0), ("o0", 0.0), ("o1", 0.0), ("o3", 0.0)]
    assert out.model_version == ""
    plane.reward("dp", out.event_id, 1.0)  # accepted, so the caller's page does not fail
    assert plane.learn_pending(10) == 0
    stats = plane.stats("dp")
    assert (stats.counters["ranks"], stats.counters["rewards"], stats.counters["fallbacks"]) == (1, 1, 1)
    assert stats.learned == 0 and stats.counters["open_events"] == 0
    # A retry of the same event gets the same (fallback) answer.
    plane.states["dp"].loaded = True
    again = plane.rank(RankInput("dp", offers(4), event_id=out.event_id, baseline_action_id="o2"))
    assert again == out


def test_a_failing_model_gives_the_fallback(plane: DecisionPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(shared: str, actions: list[str]) -> Prediction:
        raise PolicyError("VW returned probabilities summing to 0.5, not 1")

    monkeypatch.setattr(plane.states["dp"].policy, "predict", broken)
    out = plane.rank(RankInput("dp", offers(3)))
    assert out.fallback_reason == "MODEL_ERROR" and out.ranking[0] == ("o0", 1.0)


def test_a_deadline_too_close_gives_the_fallback_and_a_far_one_does_not(plane: DecisionPlane) -> None:
    import time

    close = plane.rank(RankInput("dp", offers(3), deadline=time.monotonic() + 0.0001))
    assert close.fallback_reason == "DEADLINE"
    far = plane.rank(RankInput("dp", offers(3), deadline=time.monotonic() + 10))
    assert far.fallback_reason == "" and far.model_version == "1.0"
    assert plane.states["dp"].predict_s > 0  # the estimate the next deadline is compared with


class _Context:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


def test_a_rank_whose_deadline_has_passed_is_refused_before_any_work() -> None:
    import time

    from service.errors import Code, KairosError
    from service.grpc.servicers import rank_deadline

    with pytest.raises(KairosError) as caught:
        rank_deadline(_Context(0.0))
    assert caught.value.code == Code.DEADLINE_EXCEEDED and caught.value.reason == "DEADLINE_PASSED"
    assert rank_deadline(_Context(None)) is None
    deadline = rank_deadline(_Context(2.0))
    assert deadline is not None and 1.5 < deadline - time.monotonic() <= 2.0
