"""Learner options of a decision point, and the VW command line they become.

The command line is built only from these typed, range-checked fields (an
allow-list by construction): no client text reaches VW's option parser, so no
option can name a file or switch on something unsafe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from policies.features import SLOT_NAMESPACE, NamespaceTable, Role, indices_of, role_of

ExplorerKind = Literal["epsilon_greedy", "square_cb", "reg_cb", "bag", "cover", "softmax"]
EXPLORERS: tuple[ExplorerKind, ...] = ("epsilon_greedy", "square_cb", "reg_cb", "bag", "cover", "softmax")

# "*" means: every pair of namespaces VW sees (its dynamic "-q ::" wildcard), context with context too.
ALL_PAIRS = "*"
# In an interaction, these names stand for every namespace of one role, Kairos's own included: the action
# id and the channel. "_context*_actions" (the default) crosses every context namespace with every action
# namespace: the pairs that can rank actions. Context-with-context pairs add the same to every action's
# score, so they cannot change a ranking, yet they cost VW time and dilute each update (measured with
# benchmarks.digits: 0.71x the best raw VW with "*", 1.0x with context x action).
GROUPS: dict[str, Role] = {"_context": "context", "_actions": "action"}
CONTEXT_BY_ACTIONS = "_context*_actions"
MAX_INTERACTIONS = 1024  # expanded index combinations; each costs VW time when it loads a model


class OptionsError(ValueError):
    """Learner options out of range; the message names the field and the range."""


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise OptionsError(f"{name} is {value}; it must be within [{low:g}, {high:g}]")


@dataclass(frozen=True)
class Explorer:
    kind: ExplorerKind = "square_cb"
    epsilon: float = 0.2  # epsilon_greedy, bag
    gamma_scale: float = 10.0  # square_cb
    mellowness: float = 0.1  # reg_cb
    bag_size: int = 5  # bag
    cover_size: int = 4  # cover
    psi: float = 1.0  # cover
    softmax_lambda: float = 1.0  # softmax

    def validate(self) -> None:
        if self.kind not in EXPLORERS:
            raise OptionsError(f"explorer {self.kind!r} is unknown; choose one of {', '.join(EXPLORERS)}")
        _check_range("epsilon", self.epsilon, 0.0, 1.0)
        _check_range("gamma_scale", self.gamma_scale, 1e-3, 1e6)
        _check_range("mellowness", self.mellowness, 1e-6, 10.0)
        _check_range("bag size", self.bag_size, 2, 16)
        _check_range("cover size", self.cover_size, 2, 16)
        _check_range("psi", self.psi, 1e-6, 100.0)
        _check_range("softmax lambda", self.softmax_lambda, 1e-3, 1e3)

    def vw_args(self) -> list[str]:
        if self.kind == "epsilon_greedy":
            return ["--epsilon", f"{self.epsilon:.6g}"]
        if self.kind == "square_cb":
            return ["--squarecb", "--gamma_scale", f"{self.gamma_scale:.6g}"]
        if self.kind == "reg_cb":
            return ["--regcb", "--mellowness", f"{self.mellowness:.6g}"]
        if self.kind == "bag":
            return ["--bag", str(self.bag_size), "--epsilon", f"{self.epsilon:.6g}"]
        if self.kind == "cover":
            return ["--cover", str(self.cover_size), "--psi", f"{self.psi:.6g}"]
        return ["--softmax", "--lambda", f"{self.softmax_lambda:.6g}"]


@dataclass(frozen=True)
class LearnerOptions:
    """Everything that decides the VW model of a decision point."""

    explorer: Explorer = field(default_factory=Explorer)
    interactions: tuple[str, ...] = (CONTEXT_BY_ACTIONS,)
    learning_rate: float = 1.0  # with context x actions interactions, measured best (benchmarks.digits, drift)
    power_t: float = 0.5
    bits: int = 18
    l2: float = 0.0

    def validate(self) -> None:
        self.explorer.validate()
        _check_range("learning_rate", self.learning_rate, 1e-6, 10.0)
        _check_range("power_t", self.power_t, 0.0, 1.0)
        _check_range("bits", self.bits, 16, 24)
        _check_range("l2", self.l2, 0.0, 1.0)
        for spec in self.interactions:
            if spec != ALL_PAIRS and len(spec.split("*")) not in (2, 3):
                raise OptionsError(
                    f"interaction {spec!r} must be '*' or two or three namespace names joined by '*' "
                    f"(user*offer; {' and '.join(GROUPS)} stand for every context and every action namespace)"
                )

    def same_shape(self, other: LearnerOptions) -> bool:
        """Whether a model trained with ``other`` can be loaded with these options.

        The explorer kind, bag and cover sizes decide how many weight vectors VW keeps, bits their size,
        interactions which features exist; VW also stores gamma_scale, mellowness and psi in the model
        and refuses to load it with others. Step sizes, epsilon and softmax lambda can change (measured
        with VW 9.11; tests/properties checks it for every explorer).
        """

        def shape(options: LearnerOptions) -> tuple[object, ...]:
            e = options.explorer
            sizes = (e.bag_size, e.cover_size, e.gamma_scale, e.mellowness, e.psi)
            return (e.kind, *sizes, options.interactions, options.bits)

        return shape(self) == shape(other)

    def vw_args(self, table: NamespaceTable, roles: Mapping[str, Role] | None = None) -> list[str]:
        """The VW command line. Interactions map namespace names to their indices in ``table``."""
        args = ["--cb_explore_adf", "--quiet", "-b", str(self.bits)]
        args += ["-l", f"{self.learning_rate:.6g}", "--power_t", f"{self.power_t:.6g}"]
        if self.l2:
            args += ["--l2", f"{self.l2:.6g}"]
        args += self.explorer.vw_args()
        for interaction in self.expand_interactions(table, roles):
            args += ["--interactions", interaction]
        return args

    def expand_interactions(self, table: NamespaceTable, roles: Mapping[str, Role] | None = None) -> list[str]:
        """VW's interaction strings: names become indices, and a group every index of its role that ``table``
        has given out (plus Kairos's own), so a new namespace changes them (see DecisionPlane.rank).
        ``roles`` (index -> role) overrides the roles the indices imply: for logs of other systems."""
        expanded: list[str] = []
        for spec in self.interactions:
            if spec == ALL_PAIRS:
                expanded.append("::")
                continue
            combinations = [""]
            for name in spec.split("*"):
                if name in GROUPS and roles is not None:
                    choices = sorted(index for index, role in roles.items() if role == GROUPS[name])
                elif name in GROUPS:
                    role = GROUPS[name]
                    given = {index for index in table.indices.values() if role_of(index) == role}
                    choices = [index for index in indices_of(role) if index in given or not index.isalnum()]
                else:
                    choices = [table.index(name)]
                combinations = [done + index for done in combinations for index in choices]
            expanded += [c for c in combinations if c not in expanded]
        slot = table.indices.get(SLOT_NAMESPACE)
        if slot is not None:
            # A decision point that ranks slots crosses every interaction with the slot too, as VW's
            # conditional contextual bandit does: an offer can be good in one slot for one audience and poor
            # in another (benchmarks.slots: 0.70 of the oracle without, see RESULTS.md).
            expanded += [c + slot for c in expanded if slot not in c and c != "::"]
        if len(expanded) > MAX_INTERACTIONS:
            raise OptionsError(
                f"the interactions expand to {len(expanded)} namespace combinations; at most {MAX_INTERACTIONS} "
                "are supported (name the namespaces instead of a group in three-way interactions)"
            )
        return expanded

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["interactions"] = list(self.interactions)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnerOptions:
        fields = dict(data)
        fields["explorer"] = Explorer(**fields.get("explorer", {}))
        fields["interactions"] = tuple(fields.get("interactions", (ALL_PAIRS,)))
        return cls(**fields)
