"""Filling several slots with distinct actions, one contextual-bandit decision per slot.

Slots are filled in order. Each slot chooses among the actions it may take (its eligible ones) that no
earlier slot took, from the model's distribution for that slot; the chosen action is gone for the slots
after it. This is the reduction VW's conditional contextual bandit (``ccb_explore_adf``) runs inside; here
every slot is an ordinary ``cb_explore_adf`` decision with its own logged propensity (see service.slots
for why). A slot left with no action gets none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policies.ranking import Ranking, fallback


@dataclass(frozen=True, slots=True)
class SlotChoice:
    """What one slot needs: the candidates it may take (indices into the candidates, in their order)
    and its baseline action (what the existing system would put there), or "" for none."""

    eligible: tuple[int, ...]
    baseline: str = ""


@dataclass(frozen=True, slots=True)
class Placement:
    """One filled slot: the candidates it chose among and its ranking of them."""

    offered: tuple[int, ...]  # indices into the candidates: eligible and not taken by an earlier slot
    ranking: Ranking  # over ``offered``; ranking.order[0] is the slot's action

    @property
    def chosen(self) -> int:
        """The candidate index the slot shows."""
        return self.offered[self.ranking.order[0]]


# (slot index, offered candidate indices) -> the slot's ranking of the offered candidates
RankSlot = Callable[[int, tuple[int, ...]], Ranking]


def assign(slots: Sequence[SlotChoice], rank_slot: RankSlot) -> list[Placement | None]:
    """Fill ``slots`` in order with distinct candidates; None for a slot with nothing left to offer."""
    taken: set[int] = set()
    placements: list[Placement | None] = []
    for index, slot in enumerate(slots):
        offered = tuple(i for i in slot.eligible if i not in taken)
        if not offered:
            placements.append(None)
            continue
        placement = Placement(offered, rank_slot(index, offered))
        taken.add(placement.chosen)
        placements.append(placement)
    return placements


def assign_fallback(slots: Sequence[SlotChoice], action_ids: Sequence[str]) -> list[Placement | None]:
    """The placements to give when the model cannot answer: each slot its baseline when still free, else
    the first free candidate in the order sent (probability 1, the truth about how it was chosen)."""

    def baseline_first(index: int, offered: tuple[int, ...]) -> Ranking:
        return fallback([action_ids[i] for i in offered], slots[index].baseline)

    return assign(slots, baseline_first)
