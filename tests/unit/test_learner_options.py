"""Learner options become a VW command line: interactions and their groups."""

from __future__ import annotations

import pytest

from policies.features import NamespaceTable
from policies.learner_options import ALL_PAIRS, MAX_INTERACTIONS, LearnerOptions, OptionsError


def table_with(context: list[str], action: list[str]) -> NamespaceTable:
    table = NamespaceTable()
    for name in context:
        table.index(name, "context")
    for name in action:
        table.index(name, "action")
    return table


def test_default_crosses_every_context_namespace_with_every_action_namespace() -> None:
    table = table_with(["user", "session"], ["offer"])
    expected = {c + a for c in "ab@~" for a in "A!^"}
    assert set(LearnerOptions().expand_interactions(table)) == expected


def test_before_any_namespace_only_kairos_own_are_crossed() -> None:
    # channel and behaviour (context) with action id and exposure (action)
    assert set(LearnerOptions().expand_interactions(NamespaceTable())) == {"@!", "@^", "~!", "~^"}


def test_named_and_mixed_interactions() -> None:
    table = table_with(["user"], ["offer", "creative"])
    options = LearnerOptions(interactions=("user*offer", "user*_actions", ALL_PAIRS))
    assert options.expand_interactions(table) == ["aA", "aB", "a!", "a^", "::"]  # each once, in order


def test_too_many_combinations_are_refused() -> None:
    table = table_with([f"c{i}" for i in range(20)], [f"a{i}" for i in range(20)])
    options = LearnerOptions(interactions=("_context*_actions*_actions",))
    with pytest.raises(OptionsError, match=f"at most {MAX_INTERACTIONS}"):
        options.vw_args(table)


def test_old_records_without_interactions_keep_all_pairs() -> None:
    assert LearnerOptions.from_dict({}).interactions == (ALL_PAIRS,)
    assert LearnerOptions().interactions == ("_context*_actions",)
