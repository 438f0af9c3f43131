"""The customer context: stored profiles, behaviour, each decision point's catalog and contact history.

Transport-free, like the decision plane that calls it. FeatureService writes go through here and are
committed before they return. For Rank it loads one subject's context in one read transaction
(:meth:`CustomerContext.for_rank`) and records the exposure inside Rank's own write transaction, after
checking that the contact history it decided on has not changed meanwhile (another process may have
shown something), so two concurrent Ranks cannot both pass a cap of one.

What counts as shown: ranking[0] of a Rank with a subject id. A Rank with ``defer_activation`` records a
pending exposure that counts nowhere until Activate. An exposure is ignored when its reward window
closes without a positive reward.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from policies import profile as profiles
from policies.contact import NO_TERMS, ActionTerms, Exposure
from policies.features import (
    MAX_ABS_NUMBER,
    MAX_NAMESPACE_CHARS,
    MAX_STRING_CHARS,
    NAMESPACE_ALPHABET,
    FeatureGroup,
    FeatureScalar,
)
from service.domain import MAX_ID_BYTES, CatalogEntry, Decision
from service.errors import invalid, not_found
from service.store.lmdb_store import Store, Txn

log = structlog.get_logger(__name__)
MAX_PROFILE_FEATURES = 1024
MAX_PROFILE_BYTES = 256 * 1024  # encoded; every Rank of the subject reads and decodes it
MAX_PROFILE_NAMESPACES = len(NAMESPACE_ALPHABET)
MAX_CATALOG_ACTIONS = 10_000
# Contact history kept per subject: the newest exposures, none older than the longest useful window.
MAX_EXPOSURES = 256
EXPOSURE_RETENTION_MS = 90 * 24 * 3_600_000
MAX_EVENT_TYPE_CHARS = 128


def check_subject(subject_id: str) -> None:
    if not subject_id:
        raise invalid("SUBJECT_ID_REQUIRED", "subject_id is required")
    if len(subject_id.encode()) > MAX_ID_BYTES:
        raise invalid("SUBJECT_ID_TOO_LONG", f"subject_id is longer than {MAX_ID_BYTES} bytes of UTF-8")
    if not subject_id.isprintable():  # the same rule as Rank's subject_id: ids end up in keys and exports
        raise invalid(
            "INVALID_SUBJECT_ID",
            "subject_id may contain only printable characters (no control or format characters such as NUL, "
            "newline or tab)",
        )


def check_profile_groups(groups: Iterable[tuple[str, Mapping[str, FeatureScalar | None]]]) -> None:
    """Refuse what Rank could not encode later (the same limits as request features), before it is stored."""
    for namespace, features in groups:
        if not namespace or namespace.startswith("_") or len(namespace) > MAX_NAMESPACE_CHARS:
            raise invalid(
                "INVALID_NAMESPACE",
                f"namespace {namespace[:80]!r} must be 1..{MAX_NAMESPACE_CHARS} characters, not starting with '_'",
            )
        for name, value in features.items():
            kind = type(value)
            if len(name) > MAX_STRING_CHARS or (kind is str and len(value) > MAX_STRING_CHARS):  # type: ignore[arg-type]
                raise invalid(
                    "INVALID_FEATURE",
                    f"feature {name[:80]!r}: names and string values are limited to {MAX_STRING_CHARS} characters",
                )
            if kind is float and not -MAX_ABS_NUMBER <= value <= MAX_ABS_NUMBER:  # type: ignore[operator]
                raise invalid(
                    "INVALID_FEATURE",
                    f"feature {name[:80]!r} is {value}; numbers must be finite and within +-{MAX_ABS_NUMBER:g}",
                )
            if kind not in (str, float, bool, type(None)):
                raise invalid("INVALID_FEATURE", f"feature {name[:80]!r}: values are strings, numbers or booleans")


def decode_exposures(raw: bytes | None) -> list[Exposure]:
    return [] if raw is None else [Exposure.decode(e) for e in json.loads(raw)]


def encode_exposures(exposures: Sequence[Exposure]) -> bytes:
    return json.dumps([e.encode() for e in exposures], separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class RankContext:
    """One subject's context for one Rank, read in one transaction."""

    subject_id: str
    groups: list[FeatureGroup]  # stored profile (fresh features only) and behaviour
    history: list[Exposure]
    contacts_raw: bytes | None  # as read: the write transaction checks it did not change
    terms: dict[str, ActionTerms] = field(default_factory=dict)
    budget_used: dict[str, int] = field(default_factory=dict)  # budgeted catalog actions: shows this period


class ContactRaced(Exception):
    """The subject's contact history changed between Rank's read and its write: rank again."""


@dataclass
class _CachedCatalog:
    version: int
    entries: list[CatalogEntry]
    terms: dict[str, ActionTerms]
    budgeted: dict[str, ActionTerms]


class CustomerContext:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._catalogs: dict[str, _CachedCatalog] = {}

    # -- profiles -------------------------------------------------------------

    def put_profile(
        self,
        subject_id: str,
        groups: Sequence[tuple[str, Mapping[str, FeatureScalar | None]]],
        time_ms: int,
        replace: bool = False,
    ) -> None:
        check_subject(subject_id)
        check_profile_groups(groups)

        def commit(txn: Txn) -> None:
            raw = self.store.get_subject(txn, "profiles", subject_id)
            stored = profiles.decode(raw) if raw is not None else {}
            merged = profiles.merge(stored, groups, time_ms, replace)
            if len(merged) > MAX_PROFILE_NAMESPACES:
                raise invalid(
                    "TOO_MANY_NAMESPACES",
                    f"the profile would have {len(merged)} namespaces; at most {MAX_PROFILE_NAMESPACES} are allowed",
                    limit=str(MAX_PROFILE_NAMESPACES),
                )
            if profiles.feature_count(merged) > MAX_PROFILE_FEATURES:
                raise invalid(
                    "PROFILE_TOO_LARGE",
                    f"the profile would have {profiles.feature_count(merged)} features; at most "
                    f"{MAX_PROFILE_FEATURES} are allowed",
                    limit=str(MAX_PROFILE_FEATURES),
                )
            encoded = profiles.encode(merged)
            if len(encoded) > MAX_PROFILE_BYTES:
                raise invalid(
                    "PROFILE_TOO_LARGE",
                    f"the profile would take {len(encoded):,} bytes; at most {MAX_PROFILE_BYTES:,} are allowed",
                    limit=str(MAX_PROFILE_BYTES),
                )
            if merged:
                self.store.put_subject(txn, "profiles", subject_id, encoded)
            else:
                self.store.delete_subject(txn, "profiles", subject_id)

        self.store.write(commit)

    def get_profile(self, subject_id: str) -> profiles.Stored:
        check_subject(subject_id)
        with self.store.read() as txn:
            raw = self.store.get_subject(txn, "profiles", subject_id)
        if raw is None:
            raise not_found("PROFILE_NOT_FOUND", f"no profile is stored for subject {subject_id[:80]!r}")
        return profiles.decode(raw)

    def forget(self, subject_id: str) -> int:
        """Delete the subject's profile, behaviour and contact history, and remove its id from logged
        decisions (their features stay: the model learned from them and replay must stay exact).
        Returns the number of decisions that lost the subject id."""
        check_subject(subject_id)

        def commit(txn: Txn) -> int:
            for db in ("profiles", "behaviour", "contacts"):
                self.store.delete_subject(txn, db, subject_id)
            forgotten = 0
            for key, dp, event_id in self.store.subject_events(txn, subject_id):
                decision = self.store.get_decision(txn, dp, event_id)
                if decision is not None and decision.subject_id == subject_id:
                    decision.subject_id = ""
                    decision.forgotten = True
                    self.store.put_decision(txn, dp, decision)
                    forgotten += 1
                self.store.drop_subject_event(txn, key)
            return forgotten

        forgotten: int = self.store.write(commit)
        log.info("subject_forgotten", decisions=forgotten)  # the id itself is not logged
        return forgotten

    def sweep_profiles(self, ttl_ms: Mapping[str, int], now_ms: int, after: str, limit: int) -> tuple[int, str]:
        """Delete stored features older than their namespace's TTL from up to ``limit`` profiles after
        ``after`` (reclaiming space; Rank already ignores them). Returns the features removed and where the
        next slice starts ("" when the scan is done)."""

        def commit(txn: Txn) -> tuple[int, str]:
            removed, last = 0, ""
            for subject_id, raw in self.store.subjects_after(txn, "profiles", after, limit):
                last = subject_id
                stored = profiles.decode(raw)
                kept = profiles.drop_expired(stored, ttl_ms, now_ms)
                gone = profiles.feature_count(stored) - profiles.feature_count(kept)
                if gone:
                    removed += gone
                    if kept:
                        self.store.put_subject(txn, "profiles", subject_id, profiles.encode(kept))
                    else:
                        self.store.delete_subject(txn, "profiles", subject_id)
            return removed, last

        removed, last = self.store.write(commit)
        return removed, last

    # -- behaviour ------------------------------------------------------------

    def track(self, subject_id: str, event_type: str, category: str, time_ms: int) -> None:
        check_subject(subject_id)
        if not event_type or len(event_type) > MAX_EVENT_TYPE_CHARS or len(category) > MAX_EVENT_TYPE_CHARS:
            raise invalid(
                "INVALID_EVENT_TYPE",
                f"event_type is required; event_type and category are at most {MAX_EVENT_TYPE_CHARS} characters",
            )
        event = profiles.BehaviourEvent(time_ms, event_type, category)

        def commit(txn: Txn) -> None:
            raw = self.store.get_subject(txn, "behaviour", subject_id)
            events = profiles.decode_events(raw) if raw is not None else []
            self.store.put_subject(
                txn, "behaviour", subject_id, profiles.encode_events(profiles.append_event(events, event))
            )

        self.store.write(commit)

    # -- catalog --------------------------------------------------------------

    def put_actions(self, dp: str, entries: Sequence[CatalogEntry], replace: bool) -> None:
        seen: set[str] = set()
        for entry in entries:
            if not entry.id or len(entry.id.encode()) > MAX_ID_BYTES:
                raise invalid("INVALID_ACTION_ID", f"action ids are 1..{MAX_ID_BYTES} bytes of UTF-8")
            if entry.id in seen:
                raise invalid("DUPLICATE_ACTION_ID", f"action id {entry.id[:80]!r} appears more than once")
            seen.add(entry.id)
            for group in entry.features:
                check_profile_groups([(group.namespace, group.features)])
            for condition in entry.terms.eligibility:
                try:
                    condition.validate()
                except ValueError as err:
                    raise invalid("INVALID_CONDITION", f"action {entry.id[:80]!r}: {err}") from None
            if entry.terms.budget_max and entry.terms.budget_period_ms < 1000:
                raise invalid("INVALID_BUDGET", f"action {entry.id[:80]!r}: a budget's period is at least 1 second")

        def commit(txn: Txn) -> None:
            self.store.put_catalog(txn, dp, list(entries), replace)
            total = len(self.store.load_catalog(txn, dp))
            if total > MAX_CATALOG_ACTIONS:
                raise invalid(
                    "CATALOG_TOO_LARGE",
                    f"the catalog would have {total} actions; at most {MAX_CATALOG_ACTIONS} are allowed",
                    limit=str(MAX_CATALOG_ACTIONS),
                )

        self.store.write(commit)

    def list_actions(self, dp: str, page_size: int, after: str) -> tuple[list[CatalogEntry], str]:
        with self.store.read() as txn:
            page = self.store.load_catalog(txn, dp, after, page_size + 1)
        more = len(page) > page_size
        page = page[:page_size]
        return page, (page[-1].id if more and page else "")

    def delete_action(self, dp: str, action_id: str) -> None:
        if not self.store.write(lambda txn: self.store.delete_catalog_action(txn, dp, action_id)):
            raise not_found(
                "ACTION_NOT_FOUND", f"action {action_id[:80]!r} is not in the catalog of decision point {dp!r}"
            )

    def catalog(self, txn: Txn, dp: str) -> _CachedCatalog:
        """The decision point's catalog, cached until its version in LMDB changes."""
        version = self.store.catalog_version(txn, dp)
        cached = self._catalogs.get(dp)
        if cached is None or cached.version != version:
            entries = self.store.load_catalog(txn, dp)
            terms = {e.id: e.terms for e in entries}
            cached = _CachedCatalog(version, entries, terms, {a: t for a, t in terms.items() if t.budget_max})
            self._catalogs[dp] = cached
        return cached

    # -- contact history ------------------------------------------------------

    def contact_history(self, subject_id: str) -> list[Exposure]:
        check_subject(subject_id)
        with self.store.read() as txn:
            return decode_exposures(self.store.get_subject(txn, "contacts", subject_id))

    def mark_exposure(self, txn: Txn, decision: Decision, rewarded: bool = False, activated: bool = False) -> None:
        """Inside a Reward or Activate transaction: the exposure of ``decision`` was rewarded or shown."""
        if not decision.subject_id:
            return
        raw = self.store.get_subject(txn, "contacts", decision.subject_id)
        exposures = decode_exposures(raw)
        changed = False
        for exposure in exposures:
            if exposure.event_id == decision.event_id:
                if rewarded and not exposure.rewarded:
                    exposure.rewarded = changed = True
                if activated and exposure.pending:
                    exposure.pending, changed = False, True
        if changed:
            self.store.put_subject(txn, "contacts", decision.subject_id, encode_exposures(exposures))

    # -- Rank -----------------------------------------------------------------

    def for_rank(
        self, subject_id: str, dp: str, ttl_ms: Mapping[str, int], now_ms: int, catalog: bool
    ) -> tuple[RankContext, list[CatalogEntry]]:
        """The subject's fresh profile, behaviour and contact history, and (with ``catalog``) the decision
        point's catalog, in one read transaction."""
        with self.store.read() as txn:
            cached = self.catalog(txn, dp)
            used = {
                action_id: self.store.budget_used(txn, dp, action_id, terms.budget_period(now_ms))
                for action_id, terms in cached.budgeted.items()
            }
            if not subject_id:
                return RankContext("", [], [], None, cached.terms, used), cached.entries if catalog else []
            raw_profile = self.store.get_subject(txn, "profiles", subject_id)
            raw_behaviour = self.store.get_subject(txn, "behaviour", subject_id)
            contacts_raw = self.store.get_subject(txn, "contacts", subject_id)
        groups = profiles.fresh(profiles.decode(raw_profile), ttl_ms, now_ms) if raw_profile is not None else []
        if raw_behaviour is not None:
            behaviour = profiles.behaviour_features(profiles.decode_events(raw_behaviour), now_ms)
            if behaviour:
                groups.append(FeatureGroup("_behaviour", behaviour))
        context = RankContext(subject_id, groups, decode_exposures(contacts_raw), contacts_raw, cached.terms, used)
        return context, cached.entries if catalog else []

    def record_exposures(
        self, txn: Txn, context: RankContext, dp: str, decisions: Sequence[Decision], channel: str, now_ms: int
    ) -> None:
        """record_exposure for each decision (one of a Rank, one a slot of a RankSlots event), in one transaction."""
        for i, decision in enumerate(decisions):
            self.record_exposure(txn, context, dp, decision, channel, now_ms)
            if context.subject_id and i + 1 < len(decisions):  # the next slot's check sees what this one wrote
                context.contacts_raw = self.store.get_subject(txn, "contacts", context.subject_id)
                context.history = decode_exposures(context.contacts_raw)

    def record_exposure(
        self, txn: Txn, context: RankContext, dp: str, decision: Decision, channel: str, now_ms: int
    ) -> None:
        """Inside Rank's write transaction: count ranking[0] against its budget, and log it as shown to the
        subject (pending when deferred); raise ContactRaced when the budget or the subject's history changed
        since they were read, so the rules see what another process did meanwhile."""
        action_id = decision.action_ids[decision.chosen]
        terms = context.terms.get(action_id, NO_TERMS)
        if terms.budget_max:
            used = self.store.add_budget_use(txn, dp, action_id, terms.budget_period(now_ms))
            if used > terms.budget_max:
                raise ContactRaced()
        if not context.subject_id:
            return
        if self.store.get_subject(txn, "contacts", context.subject_id) != context.contacts_raw:
            raise ContactRaced()
        exposure = Exposure(
            now_ms,
            dp,
            action_id,
            channel,
            decision.event_id,
            decision.deadline_ms,
            terms.shared,
            pending=decision.deferred,
        )
        kept = [e for e in context.history if now_ms - e.shown_ms < EXPOSURE_RETENTION_MS]
        kept = [*kept[-(MAX_EXPOSURES - 1) :], exposure]
        self.store.put_subject(txn, "contacts", context.subject_id, encode_exposures(kept))
        self.store.add_subject_event(txn, context.subject_id, dp, decision.event_id)
