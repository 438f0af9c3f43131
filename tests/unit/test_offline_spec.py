"""The SPEC grammar of `kairos evaluate --policy`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.learner_options import ALL_PAIRS, Explorer, LearnerOptions
from service.offline.spec import DEFAULT_SPECS, SpecError, format_spec, namespaces_used, parse_spec


def test_a_bare_explorer_takes_the_service_defaults() -> None:
    assert parse_spec("squarecb") == LearnerOptions()
    assert parse_spec("epsilon").explorer == Explorer(kind="epsilon_greedy")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("squarecb:gamma_scale=50", LearnerOptions(explorer=Explorer(kind="square_cb", gamma_scale=50))),
        (
            "epsilon:epsilon=0.1,lr=0.1",
            LearnerOptions(explorer=Explorer(kind="epsilon_greedy", epsilon=0.1), learning_rate=0.1),
        ),
        ("regcb:mellowness=0.01", LearnerOptions(explorer=Explorer(kind="reg_cb", mellowness=0.01))),
        ("bag:bag_size=3,epsilon=0.05", LearnerOptions(explorer=Explorer(kind="bag", bag_size=3, epsilon=0.05))),
        ("cover:cover_size=6,psi=0.5", LearnerOptions(explorer=Explorer(kind="cover", cover_size=6, psi=0.5))),
        ("softmax:lambda=5", LearnerOptions(explorer=Explorer(kind="softmax", softmax_lambda=5))),
        (
            "squarecb:interactions=none,power_t=0,l2=0.001,bits=20",
            LearnerOptions(interactions=(), power_t=0.0, l2=0.001, bits=20),
        ),
        (
            " squarecb : interactions = user*offer + situation*offer ",
            LearnerOptions(interactions=("user*offer", "situation*offer")),
        ),
        ("squarecb:interactions=*", LearnerOptions(interactions=(ALL_PAIRS,))),
    ],
)
def test_specs_map_onto_learner_options(spec: str, expected: LearnerOptions) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("greedy", "must be one of squarecb, epsilon"),
        ("squarecb:epsilon=0.1", "'epsilon' is not a setting of squarecb; it takes"),
        ("squarecb:gamma_scale", "must be KEY=VALUE"),
        ("squarecb:gamma_scale=lots", "is not a number"),
        ("bag:bag_size=2.5", "is not an integer"),
        ("epsilon:epsilon=2", "epsilon is 2.0; it must be within [0, 1]"),
        ("squarecb:bits=40", "bits is 40"),
        ("squarecb:interactions=user", "two or three namespace names"),
        ("squarecb:data=/etc/passwd", "is not a setting"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert message in str(caught.value)


def test_default_specs_parse_and_name_their_namespaces() -> None:
    for spec in DEFAULT_SPECS:
        parse_spec(spec)
    assert namespaces_used(parse_spec("squarecb:interactions=user*offer+a*b*c")) == {"user", "offer", "a", "b", "c"}


learner_options = st.builds(
    LearnerOptions,
    explorer=st.one_of(
        st.builds(Explorer, kind=st.just("square_cb"), gamma_scale=st.sampled_from([1.0, 10.0, 50.0, 0.5])),
        st.builds(Explorer, kind=st.just("epsilon_greedy"), epsilon=st.sampled_from([0.0, 0.05, 0.2])),
        st.builds(Explorer, kind=st.just("reg_cb"), mellowness=st.sampled_from([0.1, 0.01])),
        st.builds(Explorer, kind=st.just("bag"), bag_size=st.integers(2, 16), epsilon=st.sampled_from([0.0, 0.2])),
        st.builds(Explorer, kind=st.just("cover"), cover_size=st.integers(2, 16), psi=st.sampled_from([1.0, 0.25])),
        st.builds(Explorer, kind=st.just("softmax"), softmax_lambda=st.sampled_from([1.0, 7.5])),
    ),
    interactions=st.sampled_from([("*",), (), ("user*offer",), ("user*offer", "a*b*c")]),
    learning_rate=st.sampled_from([0.5, 0.1, 2.0, 0.123456789]),
    power_t=st.sampled_from([0.5, 0.0]),
    bits=st.integers(16, 24),
    l2=st.sampled_from([0.0, 1e-4]),
)


@given(learner_options)
def test_format_spec_round_trips(options: LearnerOptions) -> None:
    spec = format_spec(options)
    assert parse_spec(spec) == options
    assert format_spec(LearnerOptions()) == "squarecb"
