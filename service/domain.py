"""The service's own records: decision point configuration and logged decisions.

Plain dataclasses with compact JSON codecs for LMDB; no transport types.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

from policies.contact import ActionTerms, ContactPolicy
from policies.features import FeatureGroup, NamespaceTable
from policies.learner_options import LearnerOptions

Aggregation = Literal["first", "sum"]
LearningMode = Literal["online", "apprentice", "logging_only"]
LEARNING_MODES: tuple[LearningMode, ...] = ("online", "apprentice", "logging_only")
MAX_HOLDOUT_SHARE = 0.5
DEFAULT_APPRENTICE_MIN_EVENTS = 1000
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_ID_BYTES = 256
LINE_KEY_BYTES = 8  # blake2b digest of an action's VW line: its key in the store's line table
MIN_REWARD_WAIT_MS = 100
MAX_REWARD_WAIT_MS = 7 * 24 * 3600 * 1000
DEFAULT_REWARD_WAIT_MS = 10 * 60 * 1000
MAX_SLOTS = 50  # slots of one RankSlots (Personalizer's limit): each slot costs one predict
# A multi-slot event's first slot is logged under the event id itself, slot k > 0 under
# ``event_id + SLOT_SEPARATOR + str(k)``; client event ids are printable, so they never contain it.
SLOT_SEPARATOR = "\x1f"


def slot_event_id(event_id: str, index: int) -> str:
    """The id slot ``index`` of a multi-slot event is logged, learned and exported under."""
    return event_id if index == 0 else f"{event_id}{SLOT_SEPARATOR}{index}"


@dataclass(frozen=True)
class DecisionPointConfig:
    name: str
    learner: LearnerOptions = field(default_factory=LearnerOptions)
    reward_wait_ms: int = DEFAULT_REWARD_WAIT_MS
    default_reward: float = 0.0
    aggregation: Aggregation = "first"
    reward_min: float = -1.0
    reward_max: float = 1.0
    seed: int = 0
    contact: ContactPolicy = field(default_factory=ContactPolicy)
    # (namespace, ms): stored profile features older than this are not used
    namespace_ttl_ms: tuple[tuple[str, int], ...] = ()
    optimize_value: bool = False  # learn reward x the shown action's business value
    # Learner options of a challenger model that learns in shadow (never serves); None: no challenger.
    challenger: LearnerOptions | None = None
    learning_mode: LearningMode = "online"
    holdout_share: float = 0.0  # share of subjects held out from the model (ONLINE mode), 0..0.5
    apprentice_auto_promote: bool = False  # switch APPRENTICE -> ONLINE when the model is clearly better
    apprentice_min_events: int = DEFAULT_APPRENTICE_MIN_EVENTS

    @property
    def effective_seed(self) -> int:
        return self.seed or zlib.crc32(self.name.encode())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "learner": self.learner.to_dict(),
            "reward_wait_ms": self.reward_wait_ms,
            "default_reward": self.default_reward,
            "aggregation": self.aggregation,
            "reward_min": self.reward_min,
            "reward_max": self.reward_max,
            "seed": self.seed,
            "contact": self.contact.to_dict(),
            "namespace_ttl_ms": [list(pair) for pair in self.namespace_ttl_ms],
            "optimize_value": self.optimize_value,
            "challenger": None if self.challenger is None else self.challenger.to_dict(),
            "learning_mode": self.learning_mode,
            "holdout_share": self.holdout_share,
            "apprentice_auto_promote": self.apprentice_auto_promote,
            "apprentice_min_events": self.apprentice_min_events,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionPointConfig:
        fields = dict(data)
        fields["learner"] = LearnerOptions.from_dict(fields.get("learner", {}))
        fields["contact"] = ContactPolicy.from_dict(fields.get("contact", {}))
        fields["namespace_ttl_ms"] = tuple((ns, ms) for ns, ms in fields.get("namespace_ttl_ms", ()))
        challenger = fields.get("challenger")
        fields["challenger"] = None if challenger is None else LearnerOptions.from_dict(challenger)
        return cls(**fields)

    def with_changes(self, **changes: Any) -> DecisionPointConfig:
        return replace(self, **changes)


@dataclass
class DecisionPointRecord:
    """What LMDB keeps per decision point: its config and model lineage."""

    config: DecisionPointConfig
    namespaces: NamespaceTable
    generation: int = 1
    base_seq: int = 0  # journal position where this generation's model started

    def vw_args(self) -> list[str]:
        """The VW command line of this decision point's model."""
        return self.config.learner.vw_args(self.namespaces)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "config": self.config.to_dict(),
                "namespaces": self.namespaces.indices,
                "generation": self.generation,
                "base_seq": self.base_seq,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> DecisionPointRecord:
        data = json.loads(raw)
        return cls(
            config=DecisionPointConfig.from_dict(data["config"]),
            namespaces=NamespaceTable(dict(data["namespaces"])),
            generation=data["generation"],
            base_seq=data["base_seq"],
        )


OPEN, LEARNING, EXPIRED = "open", "learning", "expired"

# Who chose a decision's first action (Decision.served_by). Empty: the model, outside a holdout comparison.
SERVED_MODEL = ""
SERVED_MODEL_COMPARED = "model"  # the model, for a subject while a holdout runs: the lift's model group
SERVED_APPRENTICE = "apprentice"  # the baseline in APPRENTICE mode (learned, with probability 1)
SERVED_LOGGING_ONLY = "logging_only"  # the baseline in LOGGING_ONLY mode (never learned)
SERVED_HOLDOUT_BASELINE = "holdout_baseline"
SERVED_HOLDOUT_RANDOM = "holdout_random"
HOLDOUT_SERVED = (SERVED_HOLDOUT_BASELINE, SERVED_HOLDOUT_RANDOM)


def _pack(values: list[float]) -> str:
    return struct.pack(f"<{len(values)}d", *values).hex()


def _unpack(text: str) -> list[float]:
    packed = bytes.fromhex(text)
    return list(struct.unpack(f"<{len(packed) // 8}d", packed))


@dataclass
class Decision:
    """One ranked event: enough to answer a retry and to learn from it later."""

    event_id: str
    ranked_at_ms: int
    deadline_ms: int
    shared: str  # VW shared line
    action_ids: list[str]
    # VW action lines are stored once per day in the store's line table (they repeat across events);
    # the decision keeps their keys, in candidate order, and the day they were stored under.
    line_day: int
    line_keys: bytes  # LINE_KEY_BYTES per candidate, concatenated
    order: list[int]  # ranking, as indices into action_ids
    probabilities: list[float]  # per candidate, in candidate order
    model_version: str
    fingerprint: str  # hash of the request payload, to notice a retry that differs
    deferred: bool = False
    activated: bool = False
    state: str = OPEN
    reward: float | None = None
    reward_ids: list[str] = field(default_factory=list)
    subject_id: str = ""
    # Why the model did not choose (a fallback ranking was given); empty when it did. Never learned.
    fallback: str = ""
    value: float = 1.0  # the shown action's business value (decision points that optimise value)
    # Its subject was forgotten (DeleteProfile): the model keeps what it learned, exports leave it out.
    forgotten: bool = False
    served_by: str = SERVED_MODEL  # who chose the first action (SERVED_* above)
    # APPRENTICE mode: what the model would have done (its distribution and predicted costs, in candidate
    # order), while order/probabilities say what was served (the baseline, probability 1).
    model_probabilities: list[float] = field(default_factory=list)
    model_scores: list[float] = field(default_factory=list)
    # Multi-slot events (RankSlots): every slot is a decision of its own (see service.slots). The first
    # slot's decision, logged under the event id, lists the ids of all slots in order; each knows its own.
    slots: list[str] = field(default_factory=list)
    slot_id: str = ""

    @property
    def chosen(self) -> int:
        return self.order[0]

    @property
    def chosen_probability(self) -> float:
        return self.probabilities[self.order[0]]

    def encode(self) -> bytes:
        # Keys and probabilities go as hex of their bytes: formatting and parsing 24 floats as decimal text
        # was a tenth of a Rank's CPU, and the bytes round-trip exactly.
        return json.dumps(
            [
                self.event_id,
                self.ranked_at_ms,
                self.deadline_ms,
                self.shared,
                self.action_ids,
                self.line_day,
                self.line_keys.hex(),
                self.order,
                _pack(self.probabilities),
                self.model_version,
                self.fingerprint,
                self.deferred,
                self.activated,
                self.state,
                self.reward,
                self.reward_ids,
                self.subject_id,
                self.fallback,
                self.value,
                self.forgotten,
                self.served_by,
                _pack(self.model_probabilities),
                _pack(self.model_scores),
                # Only slot decisions carry the slot fields: a plain Rank's record stays as before.
                *((self.slots, self.slot_id) if self.slot_id else ()),
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Decision:
        fields = json.loads(raw)
        keys, probabilities = fields[6], fields[8]
        # Decisions written by earlier versions hold keys as a list of hex strings and probabilities as numbers.
        fields[6] = bytes.fromhex(keys if isinstance(keys, str) else "".join(keys))
        if isinstance(probabilities, str):
            fields[8] = _unpack(probabilities)
        # Decisions written before learning modes end after ``forgotten``: the defaults apply.
        if len(fields) > 21:
            fields[21], fields[22] = _unpack(fields[21]), _unpack(fields[22])
        return cls(*fields)


@dataclass(frozen=True)
class CatalogEntry:
    """An action of a decision point's catalog: its features and the terms the contact rules check."""

    id: str
    features: tuple[FeatureGroup, ...] = ()
    terms: ActionTerms = field(default_factory=ActionTerms)

    @cached_property
    def cache_key(self) -> bytes:
        """Identifies the action's id and features exactly, for the plane's encoded-action cache."""
        return (
            b"catalog\x00"
            + json.dumps([self.id, [[g.namespace, g.features] for g in self.features]], sort_keys=True).encode()
        )

    def encode(self) -> bytes:
        return json.dumps(
            [self.id, [[g.namespace, dict(g.features)] for g in self.features], self.terms.to_dict()],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> CatalogEntry:
        action_id, groups, terms = json.loads(raw)
        return cls(action_id, tuple(FeatureGroup(ns, f) for ns, f in groups), ActionTerms.from_dict(terms))
