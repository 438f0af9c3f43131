"""Turning client features into Vowpal Wabbit text lines that no client string can break.

VW's text format has no escaping: a newline adds an example, ``|`` opens a
namespace, a space splits features, ``:`` gives a value. Every client string
(namespace names aside, which map to index characters) goes through
:func:`token`, which percent-encodes everything outside ``[A-Za-z0-9_.~-]``,
so the output alphabet provably contains none of those characters. Numbers are
checked finite and bounded before they are formatted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Protocol
from urllib.parse import quote

FeatureScalar = str | float | int | bool
Role = Literal["context", "action"]

# Client namespaces map to VW namespace indices (VW keys interactions on this one character), in order
# of first appearance, from one alphabet per role: where a namespace first appears, in the context or in
# an action, decides its role. Roles let "every context namespace with every action namespace" be a
# fixed list of index pairs (see policies.learner_options), written before the namespaces are known.
CONTEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz01234"
ACTION_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ56789"
NAMESPACE_ALPHABET = CONTEXT_ALPHABET + ACTION_ALPHABET
ALPHABETS: dict[Role, str] = {"context": CONTEXT_ALPHABET, "action": ACTION_ALPHABET}
# Reserved indices for features Kairos adds itself, outside the client alphabets.
ACTION_ID_NAMESPACE = "!"
CHANNEL_NAMESPACE = "@"
EXPOSURE_NAMESPACE = "^"  # how often and how lately the subject saw this action
BEHAVIOUR_NAMESPACE = "~"  # features derived from the subject's recent behavioural events
RESERVED_NAMESPACES = {
    "_action": ACTION_ID_NAMESPACE,
    "_channel": CHANNEL_NAMESPACE,
    "_exposure": EXPOSURE_NAMESPACE,
    "_behaviour": BEHAVIOUR_NAMESPACE,
}
# The slot of a multi-slot decision: a context namespace Kairos adds itself, but given its index by the
# decision point's table when first used (like a client namespace), so that decision points that never
# rank slots keep their VW command line, and one that starts to gets it through the table's usual growth.
SLOT_NAMESPACE = "_slot"
RESERVED_ROLES: dict[str, Role] = {
    ACTION_ID_NAMESPACE: "action",
    EXPOSURE_NAMESPACE: "action",
    CHANNEL_NAMESPACE: "context",
    BEHAVIOUR_NAMESPACE: "context",
}


def role_of(index: str) -> Role:
    """The role of a namespace index. Tables written before roles existed gave out the context alphabet
    first whatever the role; their action namespaces with such indices count as context ones."""
    return RESERVED_ROLES.get(index) or ("context" if index in CONTEXT_ALPHABET else "action")


def indices_of(role: Role) -> str:
    """Every index a namespace of ``role`` can have, reserved ones included."""
    return ALPHABETS[role] + "".join(index for index, r in RESERVED_ROLES.items() if r == role)


# |x| above this is refused: products of two such values in quadratic
# interactions, squared by the adaptive update, must stay finite in float32.
MAX_ABS_NUMBER = 1e6
# Longest feature name or string value, and longest namespace name, in characters.
MAX_STRING_CHARS = 1024
MAX_NAMESPACE_CHARS = 64


class FeatureError(ValueError):
    """A feature the encoder refuses; the message says which and why."""


class UnknownNamespace(LookupError):
    """A frozen NamespaceTable met a namespace it has no index for."""


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    """Features of one namespace."""

    namespace: str
    features: Mapping[str, FeatureScalar]


class CandidateLike(Protocol):
    """What the encoder needs of a candidate (the transport may supply it lazily)."""

    @property
    def id(self) -> str: ...

    @property
    def features(self) -> Sequence[FeatureGroup]: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate action and its features."""

    id: str
    features: tuple[FeatureGroup, ...] = ()
    # Identifies exactly these features (the transport uses the serialized
    # message) so their encoding can be cached; empty means do not cache.
    cache_key: bytes = b""


@lru_cache(maxsize=65536)
def token(text: str) -> str:
    """Percent-encode ``text`` into VW-safe characters (letters, digits, ``_.~-%``)."""
    return quote(text, safe="")


# VW's number parser turns exponents beyond float32's range (1e-166) into NaN,
# which poisons the model for good; smaller magnitudes carry nothing anyway.
MIN_ABS_NUMBER = 1e-20


def vw_number(value: float) -> str:
    """A finite number in a form VW's parser reads back (tiny values flush to 0)."""
    return "0" if abs(value) < MIN_ABS_NUMBER else format(value, ".9g")


def _number(name: str, value: float) -> str:
    if not math.isfinite(value):
        raise FeatureError(f"feature {name!r} is {value}; numbers must be finite")
    if abs(value) > MAX_ABS_NUMBER:
        raise FeatureError(
            f"feature {name!r} is {value:g}; numbers must be within +-{MAX_ABS_NUMBER:g} (scale or bucket it)"
        )
    return vw_number(value)


def encode_feature(name: str, value: FeatureScalar) -> str | None:
    """One feature as a VW text token; None for a feature that carries nothing (false)."""
    if len(name) > MAX_STRING_CHARS or (isinstance(value, str) and len(value) > MAX_STRING_CHARS):
        raise FeatureError(
            f"feature {name[:80]!r}: names and string values are limited to {MAX_STRING_CHARS} characters"
        )
    if isinstance(value, bool):
        return token(name) if value else None
    if isinstance(value, str):
        return f"{token(name)}={token(value)}"
    return f"{token(name)}:{_number(name, float(value))}"


@dataclass
class NamespaceTable:
    """Stable map from client namespace names to VW namespace indices, per decision point.

    Persisted with the decision point: the hashes of every learned weight
    depend on it, so an index, once given, never changes.
    """

    indices: dict[str, str] = field(default_factory=dict)
    # A frozen table never assigns: a process that is not the table's owner raises UnknownNamespace
    # and leaves the assignment to the owner.
    frozen: bool = False

    def index(self, namespace: str, role: Role = "context", *, internal: bool = False) -> str:
        """The index of ``namespace``, assigning the next free one of ``role`` on first sight."""
        found = self.indices.get(namespace)
        if found is not None:
            return found
        if namespace in RESERVED_NAMESPACES:
            return RESERVED_NAMESPACES[namespace]
        if self.frozen:
            raise UnknownNamespace(namespace)
        if not namespace:
            raise FeatureError("a feature group has an empty namespace; name it (for example 'user')")
        if len(namespace) > MAX_NAMESPACE_CHARS:
            raise FeatureError(f"namespace {namespace[:80]!r} is longer than {MAX_NAMESPACE_CHARS} characters")
        if namespace.startswith("_") and not (internal and namespace == SLOT_NAMESPACE):
            raise FeatureError(f"namespace {namespace!r}: names starting with '_' are reserved")
        used = set(self.indices.values())
        free = [index for index in ALPHABETS[role] if index not in used]
        if not free:
            raise FeatureError(
                f"namespace {namespace!r} would be this decision point's {len(ALPHABETS[role]) + 1}th "
                f"{role} namespace; at most {len(ALPHABETS[role])} are supported"
            )
        self.indices[namespace] = free[0]
        return free[0]

    def forget_since(self, count: int) -> None:
        """Withdraw the indices given after the first ``count`` (those of a Rank that did not commit)."""
        for namespace in list(self.indices)[count:]:
            del self.indices[namespace]

    def copy(self, frozen: bool = False) -> NamespaceTable:
        return NamespaceTable(dict(self.indices), frozen=frozen)


def encode_groups(groups: Iterable[FeatureGroup], table: NamespaceTable, role: Role) -> list[str]:
    """The ``|x f1 f2`` segments of a line, one per non-empty group."""
    parts: list[str] = []
    for group in groups:
        index = table.index(group.namespace, role)
        tokens = [t for name, value in group.features.items() if (t := encode_feature(name, value)) is not None]
        if tokens:
            parts.append(f"|{index} " + " ".join(tokens))
    return parts


def shared_line(context: Iterable[FeatureGroup], table: NamespaceTable, channel: str = "", slot: str = "") -> str:
    """The shared (context) example of a multi-line ADF example; ``slot``: the slot id of a RankSlots slot."""
    parts = encode_groups(context, table, "context")
    if slot:
        if len(slot) > MAX_STRING_CHARS:
            raise FeatureError(f"slot id is longer than {MAX_STRING_CHARS} characters")
        parts.append(f"|{table.index(SLOT_NAMESPACE, internal=True)} id={token(slot)}")
    if len(channel) > MAX_STRING_CHARS:
        raise FeatureError(f"channel is longer than {MAX_STRING_CHARS} characters")
    if channel:
        parts.append(f"|{CHANNEL_NAMESPACE} {token(channel)}")
    return "shared " + " ".join(parts) if parts else "shared |"


def action_line(candidate: CandidateLike, table: NamespaceTable) -> str:
    """An action example; the action id is a feature so each action can learn its own value."""
    parts = [f"|{ACTION_ID_NAMESPACE} {token(candidate.id)}"]
    parts += encode_groups(candidate.features, table, "action")
    return " ".join(parts)
