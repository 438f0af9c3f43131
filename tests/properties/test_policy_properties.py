"""Properties every explorer must keep, whatever the client sends."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.features import Candidate, FeatureError, FeatureGroup, NamespaceTable, action_line, shared_line
from policies.learner_options import Explorer, LearnerOptions
from policies.ranking import draw_for, rank
from policies.vw import VWPolicy

EXPLORERS = [
    Explorer(kind="square_cb"),
    Explorer(kind="epsilon_greedy", epsilon=0.1),
    Explorer(kind="reg_cb"),
    Explorer(kind="bag", bag_size=3),
    Explorer(kind="cover", cover_size=3),
    Explorer(kind="softmax"),
]
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["|", ":", " ", "\n", "a b|c:d\ne", "shared", "|a x:1\n|b y", "\t", "\x00", "%0A", "x" * 1024]),
)
values = st.one_of(hostile_text, st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.booleans())
groups = st.lists(
    st.builds(
        FeatureGroup,
        namespace=st.text(alphabet="abcdefgh", min_size=1, max_size=6),
        features=st.dictionaries(hostile_text, values, max_size=5),
    ),
    max_size=3,
)
candidates = st.lists(
    st.builds(Candidate, id=hostile_text, features=groups.map(tuple)), min_size=1, max_size=12, unique_by=lambda c: c.id
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def new_policy(explorer: Explorer, table: NamespaceTable) -> VWPolicy:
    return VWPolicy(LearnerOptions(explorer=explorer, bits=16).vw_args(table))


@pytest.mark.parametrize("explorer", EXPLORERS, ids=lambda e: e.kind)
@SETTINGS
@given(context=groups, actions=candidates, event_id=hostile_text, reward=st.floats(-1, 1))
def test_ranking_is_a_permutation_with_a_distribution(
    explorer: Explorer, context: list[FeatureGroup], actions: list[Candidate], event_id: str, reward: float
) -> None:
    table = NamespaceTable()
    policy = new_policy(explorer, table)
    shared = shared_line(context, table, channel=event_id)
    lines = [action_line(c, table) for c in actions]
    for line in [shared, *lines]:
        assert "\n" not in line and "\r" not in line
    prediction = policy.predict(shared, lines)
    assert len(prediction.pmf) == len(actions)  # hostile names never add or remove actions
    ranking = rank(prediction.pmf, prediction.scores, draw_for(1, event_id))
    assert sorted(ranking.order) == list(range(len(actions)))
    assert all(math.isfinite(p) and p >= 0 for p in ranking.probabilities)
    assert math.isclose(math.fsum(ranking.probabilities), 1.0, abs_tol=1e-9)
    assert ranking.probabilities[ranking.order[0]] > 0
    # Learning from it keeps the model sane.
    policy.learn(shared, lines, ranking.order[0], cost=-reward, probability=ranking.probabilities[ranking.order[0]])
    again = policy.predict(shared, lines)
    assert len(again.pmf) == len(actions) and all(math.isfinite(p) for p in again.pmf)
    policy.close()


@pytest.mark.parametrize("explorer", EXPLORERS, ids=lambda e: e.kind)
def test_same_seed_same_answer_and_save_load_round_trip(explorer: Explorer) -> None:
    rng = random.Random(3)
    table = NamespaceTable()
    policy = new_policy(explorer, table)
    actions = [Candidate(f"a{k}", (FeatureGroup("offer", {"kind": f"k{k % 3}"}),)) for k in range(6)]
    lines = [action_line(c, table) for c in actions]
    for i in range(200):
        shared = shared_line([FeatureGroup("user", {"segment": f"s{i % 4}"})], table)
        prediction = policy.predict(shared, lines)
        chosen = rank(prediction.pmf, prediction.scores, rng.random()).order[0]
        policy.learn(shared, lines, chosen, cost=-float(chosen == i % 4), probability=prediction.pmf[chosen])
    shared = shared_line([FeatureGroup("user", {"segment": "s1"})], table)
    loaded = VWPolicy(policy.args, model=policy.to_bytes())
    first, second = policy.predict(shared, lines), loaded.predict(shared, lines)
    assert first.pmf == pytest.approx(second.pmf, abs=1e-6)
    assert rank(first.pmf, first.scores, draw_for(9, "e")) == rank(second.pmf, second.scores, draw_for(9, "e"))


@SETTINGS
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf, 1e300]))
def test_non_finite_features_are_refused_before_vw(bad: float) -> None:
    with pytest.raises(FeatureError):
        shared_line([FeatureGroup("user", {"x": bad})], NamespaceTable())


@pytest.mark.parametrize("where", ["name", "value", "channel", "namespace"])
def test_overlong_strings_are_refused(where: str) -> None:
    long = "x" * 1025
    group = FeatureGroup(
        long[:65] if where == "namespace" else "user",
        {long if where == "name" else "f": long if where == "value" else "v"},
    )
    with pytest.raises(FeatureError):
        shared_line([group], NamespaceTable(), channel=long if where == "channel" else "")


@pytest.mark.parametrize("explorer", EXPLORERS, ids=lambda e: e.kind)
def test_same_shape_changes_load_the_old_model(explorer: Explorer) -> None:
    from dataclasses import replace

    table = NamespaceTable()
    before = LearnerOptions(explorer=explorer, bits=16)
    after = replace(
        before,
        learning_rate=0.05,
        power_t=0.0,
        explorer=replace(explorer, epsilon=0.33, softmax_lambda=3.0),
    )
    assert after.same_shape(before)
    policy = VWPolicy(before.vw_args(table))
    lines = [action_line(Candidate(f"a{k}"), table) for k in range(3)]
    policy.learn(shared_line([], table), lines, 1, cost=-1.0, probability=0.5)
    reloaded = VWPolicy(after.vw_args(table), model=policy.to_bytes())
    assert math.isclose(sum(reloaded.predict(shared_line([], table), lines).pmf), 1.0, abs_tol=1e-3)
