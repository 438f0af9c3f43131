"""The progressive-validation accumulator against the batch estimators and hand-computed cases."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from policies import estimators
from policies.shadow_value import BERNSTEIN, NORMAL, ShadowValue, bernstein_radius


def filled(events: list[tuple[float, float, float]]) -> ShadowValue:
    value = ShadowValue.empty()
    for reward, logged, target in events:
        value.add(reward, logged, target)
    return value


def test_hand_computed_small_case() -> None:
    # (reward, logged p, challenger p): weights 2, 0, 1.
    value = filled([(1.0, 0.5, 1.0), (0.0, 0.5, 0.0), (1.0, 0.25, 0.25)])
    report = value.report((0.0, 1.0))
    assert report.events == 3
    assert report.champion.value == pytest.approx(2 / 3)
    assert report.ips.value == pytest.approx((2.0 + 0.0 + 1.0) / 3)
    assert report.snips.value == pytest.approx((2.0 + 0.0 + 1.0) / (2.0 + 0.0 + 1.0))
    assert report.ips.effective_sample_size == pytest.approx(9 / 5)  # (2+0+1)^2 / (4+0+1)
    # SNIPS delta method: sum w^2 (r - V)^2 / (sum w)^2 with V = 1: only the zero-weight event misses.
    assert report.snips.low == report.snips.high == 1.0
    assert (report.champion.interval, report.ips.interval, report.snips.interval) == (BERNSTEIN, BERNSTEIN, NORMAL)


def test_matches_the_batch_estimators() -> None:
    rng = random.Random(3)
    events = []
    for _ in range(500):
        p = rng.choice([0.1, 0.3, 0.6, 0.9])
        events.append((rng.choice([-1.0, 0.0, 0.5, 1.0]), p, rng.random()))
    value = filled(events)
    rewards = np.array([e[0] for e in events])
    logged = np.array([e[1] for e in events])
    target = np.array([e[2] for e in events])
    report = value.report((-1.0, 1.0), confidence=0.9)
    batch = estimators.ips(rewards, logged, target, reward_range=(-1.0, 1.0), confidence=0.9)
    assert report.ips.value == pytest.approx(batch.value, rel=1e-12)
    assert (report.ips.low, report.ips.high) == pytest.approx((batch.low, batch.high), rel=1e-9)
    assert report.ips.effective_sample_size == pytest.approx(batch.effective_sample_size)
    snips = estimators.snips(rewards, logged, target, reward_range=(-1.0, 1.0))
    assert report.snips.value == pytest.approx(snips.value, rel=1e-12)
    on_policy = estimators.ips(rewards, np.ones(500), np.ones(500), reward_range=(-1.0, 1.0), confidence=0.9)
    assert report.champion.value == pytest.approx(float(np.mean(rewards)))
    assert (report.champion.low, report.champion.high) == pytest.approx((on_policy.low, on_policy.high), rel=1e-9)


def test_snips_interval_is_the_delta_method() -> None:
    events = [(1.0, 0.5, 0.8), (0.0, 0.25, 0.5), (0.5, 0.5, 0.1), (1.0, 1.0, 0.6)]
    report = filled(events).report((0.0, 1.0))
    w = np.array([e[2] / e[1] for e in events])
    r = np.array([e[0] for e in events])
    v = float(np.sum(w * r) / np.sum(w))
    radius = 1.959963984540054 * math.sqrt(float(np.sum(w * w * (r - v) ** 2))) / float(np.sum(w))
    assert report.snips.value == pytest.approx(v)
    assert (report.snips.low, report.snips.high) == pytest.approx((max(v - radius, 0.0), min(v + radius, 1.0)))


def test_bernstein_radius_matches_the_batch_formula() -> None:
    terms = np.array([0.1, 0.7, 0.3, 0.9, 0.0])
    expected = estimators.empirical_bernstein_radius(terms, 2.0, 0.95)
    assert bernstein_radius(5, float(np.var(terms, ddof=1)), 2.0, 0.95) == pytest.approx(expected)


def test_welford_keeps_precision_over_a_long_stream() -> None:
    value = ShadowValue.empty()
    for i in range(200_000):
        value.add(1.0 + (i % 2) * 1e-6, 0.5, 0.5)
    assert value.rewards.variance == pytest.approx(0.25e-12 * 200_000 / 199_999, rel=1e-3)


def test_fewer_than_two_events_give_the_widest_interval() -> None:
    report = ShadowValue.empty().report((-1.0, 1.0))
    assert report.events == 0
    assert (report.champion.low, report.champion.high) == (-1.0, 1.0)
    one = filled([(1.0, 0.5, 1.0)]).report((0.0, 1.0))
    assert (one.ips.value, one.ips.low, one.ips.high) == (2.0, 0.0, 2.0)  # weights reach 1 / 0.5


def test_a_challenger_that_never_agrees_says_nothing() -> None:
    report = filled([(1.0, 0.5, 0.0), (0.0, 0.5, 0.0), (1.0, 0.5, 0.0)]).report((0.0, 1.0))
    assert report.ips.value == 0.0
    assert (report.snips.value, report.snips.low, report.snips.high) == (0.5, 0.0, 1.0)


def test_rewards_past_the_range_widen_it() -> None:
    report = filled([(3.0, 0.5, 0.5), (2.0, 0.5, 0.5), (3.0, 0.5, 0.5)]).report((0.0, 1.0))
    assert report.champion.high >= 8 / 3 and report.champion.value == pytest.approx(8 / 3)


@pytest.mark.parametrize("bad", [(1.0, 0.0, 0.5), (1.0, 1.5, 0.5), (math.nan, 0.5, 0.5), (1.0, 0.5, 1.2)])
def test_refuses_what_it_cannot_score(bad: tuple[float, float, float]) -> None:
    value = ShadowValue.empty()
    with pytest.raises(ValueError):
        value.add(*bad)
    assert value.events == 0


def test_json_round_trip() -> None:
    value = filled([(1.0, 0.5, 1.0), (0.0, 0.2, 0.3)])
    again = ShadowValue.from_dict(json.loads(json.dumps(value.to_dict())))
    assert again == value
    empty = ShadowValue.from_dict(json.loads(json.dumps(ShadowValue.empty().to_dict())))
    assert empty == ShadowValue.empty()
