"""Challengers: a second model of a decision point that learns in shadow and never serves.

A challenger has its own learner options (``DecisionPointConfig.challenger``) and learns the same
journal entries as the champion, in the same exactly-once loop (``models.learn`` hands it each entry).
Before it learns an entry it is asked for its distribution over the event's actions, which feeds a
progressive-validation estimate of its value from the champion's logged probabilities
(:mod:`policies.shadow_value`).

Durability follows the champion's: a challenger is checkpointed with the champion, at the same journal
position and in the same LMDB transaction, together with its accumulators, so after a crash both load
their newest valid checkpoint and the journal after it is replayed into each exactly once (the
accumulators are rebuilt by the replay too). LMDB keeps, under ``challenger:NAME`` in ``meta``, which
challenger runs (an id that grows with each new one), where in the journal it started, and its kept
checkpoints; the files are ``models/NAME/challenger/ID-SEQ.vw``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from policies.features import FeatureError
from policies.learner_options import LearnerOptions, OptionsError
from policies.shadow_value import ShadowReport, ShadowValue
from policies.vw import PolicyError, VWPolicy, write_model
from service.domain import Decision, DecisionPointRecord
from service.errors import invalid
from service.store.lmdb_store import CheckpointMeta, JournalEntry, Store, Txn

if TYPE_CHECKING:
    from service.learning.models import ModelState

log = structlog.get_logger(__name__)
FOLDER = "challenger"


@dataclass
class Challenger:
    """A running challenger: its model, journal position and value estimate."""

    id: int
    learner: LearnerOptions
    policy: VWPolicy
    base_seq: int  # journal position where it started: it learns every entry after it
    applied_seq: int  # last journal entry it has seen (learned, or skipped as unusable)
    started_ms: int
    learned: int = 0
    reward_sum: float = 0.0
    value: ShadowValue = field(default_factory=ShadowValue.empty)

    @property
    def model_version(self) -> str:
        return f"challenger-{self.id}.{self.learned}"


@dataclass(frozen=True)
class _Checkpoint:
    seq: int
    file: str
    sha256: str
    learned: int
    reward_sum: float
    value: dict[str, Any]


@dataclass
class _Record:
    """What LMDB keeps of a decision point's challenger."""

    id: int
    learner: LearnerOptions
    base_seq: int
    started_ms: int
    checkpoints: list[_Checkpoint]  # newest first

    def encode(self) -> bytes:
        data = asdict(self)
        data["learner"] = self.learner.to_dict()
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Record:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            learner=LearnerOptions.from_dict(data["learner"]),
            base_seq=data["base_seq"],
            started_ms=data["started_ms"],
            checkpoints=[_Checkpoint(**c) for c in data["checkpoints"]],
        )


@dataclass(frozen=True)
class ChallengerCopy:
    """A challenger's model and accumulators taken with the champion's (see models.copy_model)."""

    id: int
    seq: int
    learned: int
    reward_sum: float
    value: dict[str, Any]
    data: bytes

    @property
    def file(self) -> str:
        return f"{self.id:06d}-{self.seq:016d}.vw"

    @cached_property
    def sha256(self) -> str:
        # Computed where the file is written (the flush thread), read when the checkpoint is recorded.
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ChallengerSummary:
    """What GetStats reports of a challenger."""

    learner: LearnerOptions
    model_version: str
    started_ms: int
    report: ShadowReport


def _key(name: str) -> bytes:
    return b"challenger:" + name.encode()


def _folder(models_dir: Path, name: str) -> Path:
    return models_dir / name / FOLDER


def _read(store: Store, txn: Txn, name: str) -> _Record | None:
    raw = store.get_meta(txn, _key(name))
    return None if raw is None else _Record.decode(raw)


# -- configuration: set, change, clear ------------------------------------------------------------


def prepare(state: ModelState | None, record: DecisionPointRecord) -> VWPolicy | None:
    """Before ``record`` is written: a fresh model when it asks for a challenger other than the running
    one (None otherwise). Raises INVALID_ARGUMENT when VW cannot take the options. Interaction names
    get their namespace indices here, so they are stored with the record."""
    wanted = record.config.challenger
    if wanted is None or (state is not None and state.challenger is not None and state.challenger.learner == wanted):
        return None
    try:
        wanted.validate()
        return VWPolicy(wanted.vw_args(record.namespaces))
    except (OptionsError, FeatureError, PolicyError) as err:
        raise invalid("INVALID_CHALLENGER", f"the challenger's learner options cannot be used: {err}") from None


def install(store: Store, models_dir: Path, state: ModelState, fresh: VWPolicy | None) -> None:
    """After the decision point's record was written: start the ``fresh`` challenger (replacing a
    running one), or drop the running one when the record has none."""
    wanted = state.record.config.challenger
    if wanted is None:
        if state.challenger is not None:
            drop(store, models_dir, state)
    elif fresh is not None:
        _start(store, models_dir, state, wanted, fresh)


def _start(store: Store, models_dir: Path, state: ModelState, learner: LearnerOptions, policy: VWPolicy) -> None:
    from service.learning.models import now_ms

    with store.read() as txn:
        old = _read(store, txn, state.name)
    previous = state.challenger
    new_id = max(old.id if old else 0, previous.id if previous else 0) + 1
    # It learns what the champion learns from now on, the backlog the champion has not learned yet included.
    record = _Record(new_id, learner, base_seq=state.applied_seq, started_ms=now_ms(), checkpoints=[])
    store.write(lambda txn: store.put_meta(txn, _key(state.name), record.encode()))
    if previous is not None:
        previous.policy.close()
    state.challenger = Challenger(new_id, learner, policy, record.base_seq, record.base_seq, record.started_ms)
    shutil.rmtree(_folder(models_dir, state.name), ignore_errors=True)  # the files of earlier challengers
    log.info("challenger_started", decision_point=state.name, challenger=new_id, learner=learner.to_dict())


def drop(store: Store, models_dir: Path, state: ModelState) -> None:
    """Forget the challenger: its model, record and files."""
    running, state.challenger = state.challenger, None
    if running is not None:
        running.policy.close()
    store.write(lambda txn: txn.delete(_key(state.name), db=store.db["meta"]))
    shutil.rmtree(_folder(models_dir, state.name), ignore_errors=True)
    if running is not None:
        log.info("challenger_dropped", decision_point=state.name, challenger=running.id, learned=running.learned)


def detach(state: ModelState) -> Challenger | None:
    """Take the running challenger away from ``state`` (to promote it); its record stays until ``drop``."""
    running, state.challenger = state.challenger, None
    return running


# -- learning -------------------------------------------------------------------------------------


def observe(challenger: Challenger, entry: JournalEntry, decision: Decision | None, lines: list[str]) -> None:
    """Score the event with the challenger as it is, then learn it (each journal entry once, in order)."""
    if entry.seq <= challenger.applied_seq:
        return
    challenger.applied_seq = entry.seq
    if decision is None:
        return  # retention removed it (see models.learn): skipped by the champion too
    try:
        pmf = challenger.policy.score_and_learn(
            decision.shared, lines, decision.chosen, cost=-entry.reward, probability=decision.chosen_probability
        )
        challenger.value.add(entry.reward, decision.chosen_probability, min(max(pmf[decision.chosen], 0.0), 1.0))
    except (PolicyError, ValueError) as err:
        log.warning("challenger_skipped_event", event_id=entry.event_id, error=str(err))
        return
    challenger.learned += 1
    challenger.reward_sum += entry.reward


def follow_namespaces(state: ModelState) -> bool:
    """Reload the challenger under its command line for the grown namespace table; True if it changed."""
    running = state.challenger
    if running is None:
        return False
    args = running.learner.vw_args(state.record.namespaces)
    if args == running.policy.args:
        return False
    running.policy = running.policy.under(args)
    return True


# -- checkpoints ----------------------------------------------------------------------------------


def copy(state: ModelState) -> ChallengerCopy | None:
    """The challenger's part of a checkpoint at the champion's journal position, on the model's thread."""
    running = state.challenger
    if running is None:
        return None
    # Entries the champion dropped unlearned with a new generation (reset, import) are learned by no model.
    running.applied_seq = max(running.applied_seq, state.applied_seq)
    if running.applied_seq != state.applied_seq:
        return None  # ahead of a champion still replaying after a restart: checkpoint it once they meet
    return ChallengerCopy(
        running.id, state.applied_seq, running.learned, running.reward_sum, running.value.to_dict(),
        running.policy.to_bytes(),
    )  # fmt: skip


def write_file(models_dir: Path, name: str, copied: ChallengerCopy) -> None:
    """Write (and fsync) the challenger's checkpoint file; any thread."""
    write_model(_folder(models_dir, name) / copied.file, copied.data)
    _ = copied.sha256


def record_checkpoint(store: Store, txn: Txn, name: str, copied: ChallengerCopy, kept: int) -> list[str]:
    """Record the checkpoint in the champion's checkpoint transaction; returns the files no longer kept."""
    record = _read(store, txn, name)
    if record is None or record.id != copied.id:
        return [copied.file]  # replaced or dropped meanwhile
    checkpoint = _Checkpoint(copied.seq, copied.file, copied.sha256, copied.learned, copied.reward_sum, copied.value)
    every = sorted([checkpoint, *(c for c in record.checkpoints if c.seq != copied.seq)], key=lambda c: -c.seq)
    record.checkpoints = every[:kept]
    store.put_meta(txn, _key(name), record.encode())
    return [c.file for c in every[kept:]]


def remove_files(models_dir: Path, name: str, files: list[str]) -> None:
    for file in files:
        (_folder(models_dir, name) / file).unlink(missing_ok=True)


def discard(models_dir: Path, name: str, copied: ChallengerCopy | None) -> None:
    """Remove a written checkpoint file that was not recorded."""
    if copied is not None:
        remove_files(models_dir, name, [copied.file])


def load(store: Store, models_dir: Path, state: ModelState) -> None:
    """Load the challenger the record asks for, from its newest valid checkpoint, and bring it to the
    champion's journal position (the backlog after that is learned by both)."""
    wanted = state.record.config.challenger
    with store.read() as txn:
        record = _read(store, txn, state.name)
    if wanted is None:
        if record is not None:  # cleared, and the process stopped before the record went
            store.write(lambda txn: txn.delete(_key(state.name), db=store.db["meta"]))
            shutil.rmtree(_folder(models_dir, state.name), ignore_errors=True)
        return
    args = wanted.vw_args(state.record.namespaces)
    if record is None or record.learner != wanted:  # set, and the process stopped before it started
        _start(store, models_dir, state, wanted, VWPolicy(args))
        return
    running = _from_checkpoints(models_dir, state.name, record, args)
    state.challenger = running
    if running.applied_seq < state.applied_seq and not _catch_up(store, state, running):
        log.warning("challenger_restarted", decision_point=state.name, reason="journal no longer covers it")
        _start(store, models_dir, state, wanted, VWPolicy(args))
    log.info("challenger_loaded", decision_point=state.name, challenger=state.challenger.id, seq=running.applied_seq)


def _from_checkpoints(models_dir: Path, name: str, record: _Record, args: list[str]) -> Challenger:
    for checkpoint in record.checkpoints:
        path = _folder(models_dir, name) / checkpoint.file
        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != checkpoint.sha256:
                raise PolicyError("checksum mismatch")
            policy = VWPolicy(args, model=data)
        except (OSError, PolicyError) as err:
            log.warning("challenger_checkpoint_unusable", decision_point=name, file=checkpoint.file, error=str(err))
            continue
        return Challenger(
            record.id,
            record.learner,
            policy,
            record.base_seq,
            checkpoint.seq,
            record.started_ms,
            checkpoint.learned,
            checkpoint.reward_sum,
            ShadowValue.from_dict(checkpoint.value),
        )
    return Challenger(record.id, record.learner, VWPolicy(args), record.base_seq, record.base_seq, record.started_ms)


def _catch_up(store: Store, state: ModelState, running: Challenger) -> bool:
    """Learn the journal from the challenger's checkpoint up to the champion's; False when the journal
    has been pruned past it (the entries cannot be learned exactly once any more)."""
    from service.learning.models import read_event

    with store.read() as txn:
        entries = [e for e in store.journal_after(txn, state.name, running.applied_seq) if e.seq <= state.applied_seq]
    if [e.seq for e in entries] != list(range(running.applied_seq + 1, state.applied_seq + 1)):
        return False
    for entry in entries:
        decision, lines = read_event(store, state.name, entry)
        observe(running, entry, decision, lines)
    return True


def checkpoint_metas(store: Store, txn: Txn, name: str) -> list[CheckpointMeta]:
    """The challenger's kept checkpoints, with ``file`` relative to the decision point's model folder
    (for backups, which copy the files LMDB refers to)."""
    record = _read(store, txn, name)
    if record is None:
        return []
    return [
        CheckpointMeta(0, c.seq, f"{FOLDER}/{c.file}", c.sha256, c.learned, c.reward_sum, record.started_ms)
        for c in record.checkpoints
    ]


# -- reporting ------------------------------------------------------------------------------------


def summary(state: ModelState, confidence: float = 0.95) -> ChallengerSummary | None:
    running = state.challenger
    if running is None:
        return None
    config = state.record.config
    return ChallengerSummary(
        running.learner,
        running.model_version,
        running.started_ms,
        running.value.report((config.reward_min, config.reward_max), confidence),
    )
