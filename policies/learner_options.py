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

from policies.features import NamespaceTable

ExplorerKind = Literal["epsilon_greedy", "square_cb", "reg_cb", "bag", "cover", "softmax"]
EXPLORERS: tuple[ExplorerKind, ...] = ("epsilon_greedy", "square_cb", "reg_cb", "bag", "cover", "softmax")

# "*" means: every pair of namespaces VW sees (its dynamic "-q ::" wildcard).
ALL_PAIRS = "*"


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
    interactions: tuple[str, ...] = (ALL_PAIRS,)
    learning_rate: float = 0.5
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
                    f"interaction {spec!r} must be '*' or two or three namespace names joined by '*' (user*offer)"
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

    def vw_args(self, table: NamespaceTable) -> list[str]:
        """The VW command line. Interactions map namespace names to their indices in ``table``."""
        args = ["--cb_explore_adf", "--quiet", "-b", str(self.bits)]
        args += ["-l", f"{self.learning_rate:.6g}", "--power_t", f"{self.power_t:.6g}"]
        if self.l2:
            args += ["--l2", f"{self.l2:.6g}"]
        args += self.explorer.vw_args()
        for spec in self.interactions:
            if spec == ALL_PAIRS:
                args += ["--interactions", "::"]
            else:
                args += ["--interactions", "".join(table.index(name) for name in spec.split("*"))]
        return args

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
