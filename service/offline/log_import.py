"""Historical logs from another system, checked and normalised: ``kairos import-logs``.

Three input formats, each one logged decision per row:

- **DSJSON** as VW and Personalizer write it, and as ``kairos export`` writes it. Namespaces are the
  objects of ``c`` (an object, or a list of objects merged); top-level scalars of ``c`` go to the namespace
  ``default``; keys starting with ``_`` are skipped, as VW skips them. An action's id is its ``_tag``
  (Personalizer), else its 1-based position. A Kairos export keeps its namespace names
  (``_kairos.namespaces``), action ids (``_kairos.actions``) and encoded features as they are.
- **JSON Lines**, one object a line::

    {"event_id": "e-1", "timestamp": "2026-01-05T10:00:00Z",
     "context": {"user": {"tier": "gold", "age": 41}},
     "actions": [{"id": "offer-1", "features": {"offer": {"price": 2.0}}}, "offer-2"],
     "chosen_action": "offer-1", "probability": 0.5, "reward": 1.0}

  An action is an id or an object with ``id``, optional ``features`` and optional ``probability`` (when
  every action has one, they are the logging policy's full distribution).
- **CSV** with a header row: ``actions`` (ids separated by ``;``), ``chosen_action``, ``reward``,
  ``probability``; optional ``event_id``, ``timestamp``, ``probabilities`` (``;``-separated, in the
  order of ``actions``) and ``action_features`` (a JSON object: action id -> {namespace: {feature:
  value}}); every other column is a context feature named ``namespace.feature``::

    event_id,timestamp,actions,chosen_action,probability,reward,user.tier,user.age
    e-1,2026-01-05T10:00:00Z,offer-1;offer-2,offer-1,0.5,1,gold,41

Feature values are strings (categorical), numbers and booleans, as in Rank; nested objects flatten to
``outer.inner``. A row without a usable probability (missing, 0, above 1, not a number), with bad JSON,
a chosen action that is not among its actions, a reward that is missing, not finite or outside the
decision point's range, or a truncated last line (in CSV: a last row without its newline, which may be
cut inside a value) is left out and reported with its line number and reason, never used. When only
the chosen action's probability is logged, the rest is spread evenly over the other actions (only the
logged policy's doubly robust reference depends on that).

Valid rows become DSJSON events exactly as ``kairos export`` writes them: features encoded and namespaces
indexed as the decision point's model sees them, so ``kairos evaluate`` and ``kairos tune`` read them
and ``--learn`` teaches the model the same features a live Rank would send. Streams row by row.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from policies.features import (
    ACTION_ID_NAMESPACE,
    RESERVED_NAMESPACES,
    FeatureError,
    NamespaceTable,
    Role,
    encode_feature,
    token,
    vw_number,
)
from service.offline import dsjson
from service.offline.dsjson import (
    BAD_ACTIONS,
    BAD_FEATURE,
    BAD_PROBABILITY,
    BAD_REWARD,
    BAD_TIMESTAMP,
    INVALID_JSON,
    MIN_LOGGED_PROBABILITY,
    MISSING_FIELD,
    NOT_ACTIVATED,
    TRUNCATED,
    UNKNOWN_ACTION,
    BadEvent,
)
from service.profile_import import csv_cell

Format = Literal["dsjson", "csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("dsjson", "csv", "jsonl")
MAX_ACTIONS = 256  # as many candidates as one Rank may send by default
MAX_BAD_ROWS_KEPT = 1000
# Rewards beyond this are refused whatever the range: a cost like 1e30 freezes a VW model for good.
MAX_ABS_REWARD = 1e6
DEFAULT_NAMESPACE = "default"  # DSJSON features outside any namespace object
CSV_FIELDS = {
    "event_id",
    "timestamp",
    "actions",
    "chosen_action",
    "probability",
    "probabilities",
    "reward",
    "action_features",
}
# A feature token as Kairos encodes it (policies.features.token, plus "=" between a name and a string value).
_TOKEN_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-%=")

Group = tuple[str, tuple[str, ...]]  # namespace name (a client name or a reserved one) and its VW tokens


class LogImportError(ValueError):
    """The whole file cannot be imported (unknown format, a CSV header without the needed columns)."""


@dataclass(frozen=True)
class Row:
    """One usable logged decision, its features already VW tokens."""

    event_id: str
    timestamp_ms: int | None
    context: tuple[Group, ...]
    action_ids: tuple[str, ...]
    action_groups: tuple[tuple[Group, ...], ...]
    chosen: int
    probability: float
    pmf: tuple[float, ...] | None  # the logging policy's full distribution, when logged
    reward: float
    default_reward: bool = False
    model_version: str = ""
    order: tuple[int, ...] | None = None  # the logged ranking (the shown action first), when logged


@dataclass(frozen=True)
class BadRow:
    line: int
    kind: str
    reason: str


@dataclass
class ImportReport:
    lines: int = 0
    imported: int = 0
    bad_count: int = 0
    bad_by_kind: Counter[str] = field(default_factory=Counter)
    bad_rows: list[BadRow] = field(default_factory=list)
    namespaces_added: list[str] = field(default_factory=list)
    learned: int = 0
    model_version: str = ""

    def add_bad(self, line: int, err: BadEvent) -> None:
        self.bad_count += 1
        self.bad_by_kind[err.kind] += 1
        if len(self.bad_rows) < MAX_BAD_ROWS_KEPT:
            self.bad_rows.append(BadRow(line, err.kind, str(err)))

    def summary(self) -> str:
        text = f"read {self.lines} rows: {self.imported} usable, {self.bad_count} left out"
        if self.bad_count:
            text += " (" + ", ".join(f"{count} {kind}" for kind, count in self.bad_by_kind.most_common()) + ")"
        return text

    def details(self, limit: int = 20) -> list[str]:
        shown = [f"  line {b.line}: {b.kind}: {b.reason}" for b in self.bad_rows[:limit]]
        if self.bad_count > limit:
            shown.append(f"  ... and {self.bad_count - limit} more (see --report, up to {MAX_BAD_ROWS_KEPT})")
        return shown

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "imported": self.imported,
            "bad_count": self.bad_count,
            "bad_by_kind": dict(self.bad_by_kind),
            "bad_rows": [{"line": b.line, "kind": b.kind, "reason": b.reason} for b in self.bad_rows],
            "namespaces_added": self.namespaces_added,
            "learned": self.learned,
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class Normalized:
    """A valid row as the model sees it: VW text lines, and the DSJSON event ``kairos export`` would write."""

    row: Row
    shared: str
    action_lines: list[str]
    event: str


# -- reading ------------------------------------------------------------------


def guess_format(path: Path) -> Format:
    """The format a file name suggests (``.csv``, ``.jsonl``/``.ndjson``, else DSJSON), under ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    if last == ".csv":
        return "csv"
    if last in (".jsonl", ".ndjson"):
        return "jsonl"
    return "dsjson"


def _open(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return path.open("r", encoding="utf-8", errors="replace", newline="")


class _Lines:
    """Lines of a file with their numbers; remembers whether the last one read ended with a newline (only
    the last line of a file can lack one, so a bad unterminated line is a truncated file)."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.number = 0
        self.terminated = True

    def __iter__(self) -> Iterator[str]:
        for line in self.handle:
            self.number += 1
            self.terminated = line.endswith("\n")
            yield line


def rows(path: Path, fmt: Format) -> Iterator[tuple[int, Row | BadEvent]]:
    """Every row of the file, numbered by its line: a Row, or BadEvent saying what is wrong with it."""
    with _open(path) as handle:
        lines = _Lines(handle)
        if fmt == "csv":
            yield from _csv_rows(lines)
            return
        parse = _dsjson_row if fmt == "dsjson" else _jsonl_row
        for text in lines:
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                kind = INVALID_JSON if lines.terminated else TRUNCATED
                yield lines.number, BadEvent(f"not valid JSON ({err.msg}; column {err.colno})", kind)
                continue
            try:
                if not isinstance(data, dict):
                    raise BadEvent("not a JSON object", INVALID_JSON)
                yield lines.number, parse(data, text, lines.number)
            except BadEvent as err:
                yield lines.number, err


def _probability(value: object, what: str = "probability") -> float:
    if value is None or value == "":
        raise BadEvent(f"{what} is missing", BAD_PROBABILITY)
    number = _to_number(value, what, BAD_PROBABILITY)
    if math.isnan(number):
        raise BadEvent(f"{what} is NaN", BAD_PROBABILITY)
    if number <= 0.0:
        raise BadEvent(f"{what} is {number:g}: the logger never shows an action it gave probability 0", BAD_PROBABILITY)
    if number > 1.0:
        raise BadEvent(f"{what} is {number:g}, above 1", BAD_PROBABILITY)
    if number < MIN_LOGGED_PROBABILITY:
        raise BadEvent(
            f"{what} is {number:g}, below {MIN_LOGGED_PROBABILITY:g} (its 1/p weight would swamp any estimate)",
            BAD_PROBABILITY,
        )
    return number


def _reward(value: object) -> float:
    if value is None or value == "":
        raise BadEvent("reward is missing", BAD_REWARD)
    number = _to_number(value, "reward", BAD_REWARD)
    if not math.isfinite(number):
        raise BadEvent(f"reward is {number}, not a finite number", BAD_REWARD)
    return number


def _to_number(value: object, what: str, kind: str) -> float:
    if isinstance(value, bool):
        raise BadEvent(f"{what} is {value!r}, not a number", kind)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BadEvent(f"{what} is {value!r}, not a number", kind)


def _timestamp(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)  # milliseconds since the epoch
    if isinstance(value, str):
        try:
            return dsjson.parse_timestamp(value)
        except ValueError as err:
            raise BadEvent(str(err), BAD_TIMESTAMP) from None
    raise BadEvent(f"timestamp {value!r} is neither ISO-8601 text nor milliseconds", BAD_TIMESTAMP)


def _flatten(features: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in features.items():
        if not isinstance(name, str) or name.startswith("_"):
            continue  # VW skips properties starting with "_"
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def encode_features(namespace: str, features: Mapping[str, Any]) -> tuple[str, ...]:
    """Client features of one namespace as the service encodes them (strings categorical, numbers valued,
    true present, false and null absent; a list of strings is several categories)."""
    tokens: list[str] = []
    for name, value in _flatten(features):
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is None:
                continue
            if not isinstance(item, str | int | float | bool):
                raise BadEvent(f"feature {namespace}.{name} is {item!r}; use strings, numbers or booleans", BAD_FEATURE)
            try:
                encoded = encode_feature(name, item)
            except FeatureError as err:
                raise BadEvent(f"namespace {namespace!r}: {err}", BAD_FEATURE) from None
            if encoded is not None:
                tokens.append(encoded)
    return tuple(tokens)


def _groups(namespaces: object, where: str) -> tuple[Group, ...]:
    if namespaces is None:
        return ()
    if not isinstance(namespaces, dict):
        raise BadEvent(f"{where} must be an object of namespaces, {{namespace: {{feature: value}}}}", BAD_FEATURE)
    found: list[Group] = []
    for namespace, features in namespaces.items():
        if not isinstance(features, dict):
            raise BadEvent(f"{where}.{namespace} must be an object of features", BAD_FEATURE)
        found.append((namespace, encode_features(namespace, features)))
    return tuple(found)


def _check_actions(ids: list[Any]) -> None:
    if not ids:
        raise BadEvent("there are no actions", BAD_ACTIONS)
    if len(ids) > MAX_ACTIONS:
        raise BadEvent(f"{len(ids)} actions; at most {MAX_ACTIONS} can be ranked at once", BAD_ACTIONS)
    if not all(isinstance(i, str) and i for i in ids):
        raise BadEvent("every action id must be a non-empty string", BAD_ACTIONS)
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise BadEvent(f"action {duplicate!r} appears twice", BAD_ACTIONS)


def _chosen(ids: list[Any], chosen: object) -> int:
    if chosen is None or chosen == "":
        raise BadEvent("chosen_action is missing", MISSING_FIELD)
    if not isinstance(chosen, str) or chosen not in ids:
        raise BadEvent(f"chosen_action {chosen!r} is not one of the row's {len(ids)} actions", UNKNOWN_ACTION)
    return ids.index(chosen)


def _share(value: object, what: str) -> float:
    number = _to_number(value, what, BAD_PROBABILITY)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise BadEvent(f"{what} is {number:g}; it must be within [0, 1]", BAD_PROBABILITY)
    return number


def _pmf(given: list[object] | None, chosen: int, stated: object) -> tuple[float, tuple[float, ...] | None]:
    """The chosen action's logged probability and, when every action has one, the logging policy's full
    distribution (checked: it sums to 1 and agrees with ``stated``)."""
    if given is None or any(value is None or value == "" for value in given):
        return _probability(stated), None
    pmf = tuple(_share(value, f"the probability of action {k + 1}") for k, value in enumerate(given))
    if not math.isclose(math.fsum(pmf), 1.0, abs_tol=1e-3):
        raise BadEvent(f"the actions' probabilities sum to {math.fsum(pmf):.4f}, not 1", BAD_PROBABILITY)
    probability = _probability(pmf[chosen], "the chosen action's probability")
    if stated not in (None, "") and not math.isclose(_probability(stated), probability, rel_tol=1e-6, abs_tol=1e-9):
        raise BadEvent(
            f"probability {stated} differs from the chosen action's in the distribution ({probability})",
            BAD_PROBABILITY,
        )
    return probability, pmf


def _jsonl_row(data: dict[str, Any], _text: str, line: int) -> Row:
    actions = data.get("actions")
    if actions is None:
        raise BadEvent("actions is missing", MISSING_FIELD)
    if not isinstance(actions, list):
        raise BadEvent("actions must be a list of ids or of {id, features, probability} objects", BAD_ACTIONS)
    ids: list[Any] = []
    groups: list[tuple[Group, ...]] = []
    given: list[object] = []
    for action in actions:
        if isinstance(action, dict):
            ids.append(action.get("id"))
            groups.append(_groups(action.get("features"), f"action {action.get('id')!r} features"))
            given.append(action.get("probability"))
        else:
            ids.append(action)
            groups.append(())
            given.append(None)
    _check_actions(ids)
    chosen = _chosen(ids, data.get("chosen_action"))
    probability, pmf = _pmf(given, chosen, data.get("probability"))
    reward = _reward(data.get("reward"))
    event_id = data.get("event_id")
    return Row(
        event_id=str(event_id) if event_id not in (None, "") else f"import-{line}",
        timestamp_ms=_timestamp(data.get("timestamp")),
        context=_groups(data.get("context"), "context"),
        action_ids=tuple(ids),
        action_groups=tuple(groups),
        chosen=chosen,
        probability=probability,
        pmf=pmf,
        reward=reward,
    )


def _csv_rows(lines: _Lines) -> Iterator[tuple[int, Row | BadEvent]]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    for needed in ("actions", "chosen_action", "reward"):
        if needed not in header:
            raise LogImportError(f"line 1: the CSV header has no {needed!r} column (see kairos import-logs --help)")
    if "probability" not in header and "probabilities" not in header:
        raise LogImportError("line 1: the CSV header needs a 'probability' (or 'probabilities') column")
    context_columns: list[tuple[int, str, str]] = []
    for index, name in enumerate(header):
        if name in CSV_FIELDS:
            continue
        namespace, dot, feature = name.partition(".")
        if not dot or not namespace or not feature:
            raise LogImportError(
                f"line 1: column {name!r} is neither a field ({', '.join(sorted(CSV_FIELDS))}) nor namespace.feature"
            )
        context_columns.append((index, namespace, feature))
    at = {name: index for index, name in enumerate(header)}
    while True:
        start = lines.number + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield start, BadEvent(f"not valid CSV ({err})", INVALID_JSON if lines.terminated else TRUNCATED)
            continue
        if not cells:
            continue
        if not lines.terminated:
            # A cut CSV row often still parses (a value cut short): without its newline it cannot be trusted.
            yield (
                start,
                BadEvent(
                    "the file ends in this row without a newline: it may be cut short (add the newline if whole)",
                    TRUNCATED,
                ),
            )
            continue
        if len(cells) != len(header):
            yield start, BadEvent(f"{len(cells)} cells where the header has {len(header)}", MISSING_FIELD)
            continue
        try:
            yield start, _csv_row(cells, at, context_columns, start)
        except BadEvent as err:
            yield start, err


def _csv_row(cells: list[str], at: dict[str, int], context_columns: list[tuple[int, str, str]], line: int) -> Row:
    def cell(name: str) -> str:
        return cells[at[name]].strip() if name in at else ""

    ids = [part.strip() for part in cell("actions").split(";") if part.strip()]
    _check_actions(ids)
    chosen = _chosen(ids, cell("chosen_action"))
    given: list[object] | None = None
    if cell("probabilities"):
        given = [part.strip() for part in cell("probabilities").split(";")]
        if len(given) != len(ids):
            raise BadEvent(f"probabilities lists {len(given)} values for {len(ids)} actions", BAD_PROBABILITY)
    probability, pmf = _pmf(given, chosen, cell("probability"))
    context: dict[str, dict[str, Any]] = {}
    for index, namespace, feature in context_columns:
        if cells[index] != "":
            context.setdefault(namespace, {})[feature] = csv_cell(cells[index])
    action_features: dict[str, Any] = {}
    if cell("action_features"):
        try:
            action_features = json.loads(cell("action_features"))
        except json.JSONDecodeError as err:
            raise BadEvent(f"action_features is not valid JSON ({err.msg})", INVALID_JSON) from None
        if not isinstance(action_features, dict):
            raise BadEvent(
                "action_features must be a JSON object: action id -> {namespace: {feature: value}}", BAD_FEATURE
            )
        unknown = sorted(set(action_features) - set(ids))
        if unknown:
            raise BadEvent(f"action_features names {unknown[0]!r}, which is not among the actions", BAD_FEATURE)
    return Row(
        event_id=cell("event_id") or f"import-{line}",
        timestamp_ms=_timestamp(cell("timestamp")),
        context=_groups(context, "context"),
        action_ids=tuple(ids),
        action_groups=tuple(_groups(action_features.get(i), f"action_features[{i!r}]") for i in ids),
        chosen=chosen,
        probability=probability,
        pmf=pmf,
        reward=_reward(cell("reward")),
    )


def _dsjson_row(data: dict[str, Any], text: str, line: int) -> Row:
    if data.get("_skipLearn") is True:
        raise BadEvent("_skipLearn is set: the event was never activated (never shown)", NOT_ACTIVATED)
    event = dsjson.read_event(text)  # the label, the probabilities and the actions, checked
    context = data["c"]
    meta = data.get("_kairos") if isinstance(data.get("_kairos"), dict) else None
    if meta is not None and event.namespaces:
        ids = meta.get("actions")
        if not (isinstance(ids, list) and len(ids) == event.actions):
            raise BadEvent(f"_kairos.actions must list the {event.actions} action ids", BAD_ACTIONS)
        shared = _encoded_groups(context, event.namespaces, "c")
        actions = [_encoded_groups(a, event.namespaces, f"action {k + 1}") for k, a in enumerate(context["_multi"])]
        default = meta.get("default_reward") is True
        version = meta.get("model_version") if isinstance(meta.get("model_version"), str) else ""
    else:
        ids = [_tag_or_position(a, k) for k, a in enumerate(context["_multi"])]
        shared = _foreign_groups(context, "c")
        actions = [_foreign_groups(a, f"action {k + 1}") for k, a in enumerate(context["_multi"])]
        default, version = False, ""
    _check_actions(ids)
    event_id = data.get("EventId")
    return Row(
        event_id=event_id if isinstance(event_id, str) and event_id else f"import-{line}",
        timestamp_ms=_timestamp(data.get("Timestamp")),
        context=shared,
        action_ids=tuple(ids),
        action_groups=tuple(actions),
        chosen=event.chosen,
        probability=event.probability,
        pmf=event.logged_pmf,
        reward=event.reward,
        default_reward=default,
        model_version=version,
        order=tuple(action - 1 for action in data["a"]),  # checked by read_event: each action once, shown first
    )


def _tag_or_position(action: dict[str, Any], k: int) -> str:
    tag = action.get("_tag")
    return tag if isinstance(tag, str) and tag else str(k + 1)


def _foreign_groups(example: dict[str, Any], where: str) -> tuple[Group, ...]:
    """VW JSON namespaces: objects (or lists of objects, merged); scalars outside them go to ``default``."""
    found: list[Group] = []
    loose: dict[str, Any] = {}
    for key, value in example.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            merged: dict[str, Any] = {}
            for part in value:
                merged.update(part)
            value = merged
        if isinstance(value, dict):
            found.append((key, encode_features(key, value)))
        else:
            loose[key] = value
    if loose:
        found.append((DEFAULT_NAMESPACE, encode_features(f"{where} {DEFAULT_NAMESPACE}", loose)))
    return tuple(found)


def _encoded_groups(example: dict[str, Any], names: dict[str, str], where: str) -> tuple[Group, ...]:
    """A Kairos export's namespaces: VW indices named in ``_kairos.namespaces``, features already encoded."""
    found: list[Group] = []
    for index, features in example.items():
        if index.startswith("_") and index != "_multi":
            continue
        if index == "_multi":
            continue
        name = names.get(index)
        if name is None:
            raise BadEvent(f"{where}: namespace {index!r} is not in _kairos.namespaces", BAD_FEATURE)
        if name == "_action":
            continue  # the action id: rebuilt from _kairos.actions
        if not isinstance(features, dict):
            raise BadEvent(f"{where}.{index} must be an object of features", BAD_FEATURE)
        tokens: list[str] = []
        for feature, value in features.items():
            if not feature or not set(feature) <= _TOKEN_CHARACTERS:
                raise BadEvent(f"{where}.{index}: feature {feature!r} is not encoded as Kairos encodes", BAD_FEATURE)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise BadEvent(f"{where}.{index}.{feature} is {value!r}, not a finite number", BAD_FEATURE)
            tokens.append(feature if value == 1 else f"{feature}:{vw_number(float(value))}")
        found.append((name, tuple(tokens)))
    return tuple(found)


# -- normalising --------------------------------------------------------------


class Normalizer:
    """Turns rows into the decision point's VW lines and DSJSON events.

    ``table`` is the decision point's namespace table: a namespace it has not seen gets the next index of
    its role, as a live Rank would give it. It grows in place (a valid row at a time), so the caller
    decides whether the growth is kept (``--learn`` stores it with the model).
    """

    def __init__(
        self,
        decision_point: str,
        table: NamespaceTable,
        reward_range: tuple[float, float] | None,
        now_ms: int,
    ) -> None:
        self.decision_point = decision_point
        self.table = table
        self.reward_range = reward_range
        self.now_ms = now_ms
        self.added: list[str] = []

    def normalize(self, row: Row) -> Normalized:
        if abs(row.reward) > MAX_ABS_REWARD:
            raise BadEvent(f"reward {row.reward:g} is beyond +-{MAX_ABS_REWARD:g}", BAD_REWARD)
        if self.reward_range is not None and not self.reward_range[0] <= row.reward <= self.reward_range[1]:
            low, high = self.reward_range
            raise BadEvent(
                f"reward {row.reward:g} is outside the decision point's reward range [{low:g}, {high:g}]", BAD_REWARD
            )
        trial = self.table.copy()
        try:
            shared = _line("shared", row.context, trial, "context")
            lines = [
                _line(f"|{ACTION_ID_NAMESPACE} {token(action_id)}", groups, trial, "action")
                for action_id, groups in zip(row.action_ids, row.action_groups, strict=True)
            ]
        except FeatureError as err:
            raise BadEvent(str(err), BAD_FEATURE) from None
        for name, index in trial.indices.items():
            if name not in self.table.indices:
                self.table.indices[name] = index
                self.added.append(name)
        probabilities = (
            list(row.pmf) if row.pmf is not None else _spread(len(row.action_ids), row.chosen, row.probability)
        )
        others = sorted((i for i in range(len(row.action_ids)) if i != row.chosen), key=lambda i: -probabilities[i])
        order = list(row.order) if row.order is not None and row.order[0] == row.chosen else [row.chosen, *others]
        names = {index: name for name, index in self.table.indices.items()}
        names.update({index: name for name, index in RESERVED_NAMESPACES.items()})
        event = dsjson.logged_event(
            event_id=row.event_id,
            ranked_at_ms=row.timestamp_ms if row.timestamp_ms is not None else self.now_ms,
            shared=shared,
            action_lines=lines,
            action_ids=list(row.action_ids),
            order=order,
            probabilities=probabilities,
            model_version=row.model_version,
            decision_point=self.decision_point,
            namespaces=names,
            reward=row.reward,
            default_reward=row.default_reward,
            reward_range=self.reward_range,
        )
        text = dsjson.dumps(event)
        dsjson.read_event(text)  # what import writes, evaluate reads: checked once more, as evaluate will
        return Normalized(row, shared, lines, text)


def _spread(actions: int, chosen: int, probability: float) -> list[float]:
    if actions == 1:
        if probability != 1.0:
            raise BadEvent(f"the only action was logged with probability {probability:g}, not 1", BAD_PROBABILITY)
        return [1.0]
    rest = (1.0 - probability) / (actions - 1)
    return [probability if i == chosen else rest for i in range(actions)]


def _line(head: str, groups: tuple[Group, ...], table: NamespaceTable, role: Role) -> str:
    parts = [head]
    for name, tokens in groups:
        if not tokens:
            continue
        index = RESERVED_NAMESPACES.get(name) or table.index(name, role)
        parts.append(f"|{index} " + " ".join(tokens))
    if head == "shared" and len(parts) == 1:
        return "shared |"
    return " ".join(parts)


# -- the whole file -----------------------------------------------------------


def import_rows(
    path: Path,
    fmt: Format,
    normalizer: Normalizer,
    use: Callable[[Normalized], None],
    *,
    progress: Callable[[ImportReport], None] | None = None,
    progress_every_s: float = 2.0,
) -> ImportReport:
    """Read, check and normalise every row of ``path``, handing each valid one to ``use`` in file order."""
    if not path.is_file():
        raise LogImportError(f"no such log file: {path}")
    report = ImportReport()
    last_report = time.monotonic()
    for line, found in rows(path, fmt):
        report.lines += 1
        try:
            if isinstance(found, BadEvent):
                raise found
            use(normalizer.normalize(found))
            report.imported += 1
        except BadEvent as err:
            report.add_bad(line, err)
        if progress is not None and time.monotonic() - last_report >= progress_every_s:
            last_report = time.monotonic()
            progress(report)
    report.namespaces_added = list(normalizer.added)
    return report
