"""Properties of filling slots (policies.slots), whatever the slots exclude and the model answers."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from policies.ranking import Ranking, rank
from policies.slots import SlotChoice, assign, assign_fallback


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, list[SlotChoice]]:
    """A number of candidates and slots, each allowed a non-empty subset of them, maybe with a baseline."""
    n = draw(st.integers(min_value=1, max_value=8))
    slots = []
    for _ in range(draw(st.integers(min_value=1, max_value=n))):
        eligible = draw(st.sets(st.integers(min_value=0, max_value=n - 1), min_size=1))
        baseline = draw(st.one_of(st.just(""), st.sampled_from(sorted(eligible)).map(lambda i: f"a{i}")))
        slots.append(SlotChoice(tuple(sorted(eligible)), baseline))
    return n, slots


def random_model(seed: int) -> tuple[list[tuple[int, tuple[int, ...]]], object]:
    rng = random.Random(seed)
    calls: list[tuple[int, tuple[int, ...]]] = []

    def rank_slot(index: int, offered: tuple[int, ...]) -> Ranking:
        calls.append((index, offered))
        pmf = [rng.random() + 1e-3 for _ in offered]
        return rank(pmf, [0.0] * len(offered), rng.random())

    return calls, rank_slot


@given(layouts(), st.integers(min_value=0, max_value=2**32))
def test_slots_get_distinct_eligible_actions_and_none_only_when_nothing_is_left(
    layout: tuple[int, list[SlotChoice]], seed: int
) -> None:
    _, slots = layout
    calls, rank_slot = random_model(seed)
    placements = assign(slots, rank_slot)  # type: ignore[arg-type]
    assert len(placements) == len(slots)
    taken: list[int] = []
    for slot, placement in zip(slots, placements, strict=True):
        free = tuple(i for i in slot.eligible if i not in taken)
        if placement is None:
            assert free == ()  # a slot goes empty only when earlier slots took all it could show
            continue
        assert placement.offered == free  # it chose among exactly its free eligible actions
        assert placement.chosen in free and placement.chosen not in taken
        assert math.isclose(sum(placement.ranking.probabilities), 1.0)
        assert sorted(placement.ranking.order) == list(range(len(free)))
        taken.append(placement.chosen)
    assert len(set(taken)) == len(taken)
    assert [index for index, _ in calls] == [k for k, p in enumerate(placements) if p is not None]


@given(layouts())
def test_the_fallback_shows_each_baseline_while_free_with_probability_one(layout: tuple[int, list[SlotChoice]]) -> None:
    n, slots = layout
    ids = [f"a{i}" for i in range(n)]
    taken: set[int] = set()
    for slot, placement in zip(slots, assign_fallback(slots, ids), strict=True):
        if placement is None:
            continue
        baseline = ids.index(slot.baseline) if slot.baseline else None
        free = [i for i in slot.eligible if i not in taken]
        assert placement.chosen == (baseline if baseline in free else free[0])
        assert placement.ranking.probabilities[placement.ranking.order[0]] == 1.0
        taken.add(placement.chosen)
