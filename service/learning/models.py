"""Each decision point's live model: load, replay, learn, checkpoint.

Learning is exactly-once through the journal: every event that becomes
learnable (a reward under FIRST, a closed window, an activation) gets the
next journal sequence number in the same LMDB transaction that changes its
state. The model learns journal entries in order; a checkpoint records the
last sequence number it contains, so after a crash the newest valid
checkpoint loads and only the entries after it are replayed.
"""

from __future__ import annotations

import collections
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from policies.vw import PolicyError, VWPolicy, write_model
from service.domain import Decision, DecisionPointRecord
from service.learning import challenger as challengers
from service.store.lmdb_store import CheckpointMeta, JournalEntry, Store, Txn

log = structlog.get_logger(__name__)
CHECKPOINTS_KEPT = 3
COUNTER_NAMES = (
    "ranks",
    "rewards",
    "late_rewards",
    "duplicate_rewards",
    "default_rewards",
    "expired_events",
    "open_events",
    "explored",  # ranks whose shown action was not among the model's most likely
    "fallbacks",
    # REST Reward/Activate calls for unknown or closed events, accepted (as Personalizer did) and ignored
    "rest_ignored_events",
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ModelState:
    record: DecisionPointRecord
    policy: VWPolicy
    applied_seq: int  # last journal entry learned into the model
    next_seq: int  # journal number the next learnable event gets
    learned: int = 0
    reward_sum: float = 0.0
    checkpoint_seq: int = 0
    checkpoint_ms: int = 0
    backlog: collections.deque[JournalEntry] = field(default_factory=collections.deque)
    loaded: bool = True  # False while a serving worker waits for the model's first snapshot
    predict_s: float = 0.0  # moving average of the model's predict time, to foresee a missed deadline
    challenger: challengers.Challenger | None = None  # learns the same entries in shadow; never serves

    @property
    def name(self) -> str:
        return self.record.config.name

    @property
    def model_version(self) -> str:
        return f"{self.record.generation}.{self.learned}"

    def vw_args(self) -> list[str]:
        return self.record.vw_args()


def _checkpoint_path(models_dir: Path, name: str, generation: int, seq: int) -> Path:
    return models_dir / name / f"{generation:06d}-{seq:016d}.vw"


def load(store: Store, models_dir: Path, record: DecisionPointRecord) -> ModelState:
    """The newest valid checkpoint of the current generation, plus a replay of the journal after it."""
    name = record.config.name
    args = record.vw_args()
    with store.read() as txn:
        metas = store.checkpoints(txn, name, record.generation)
        last_seq = store.last_journal_seq(txn, name)
    policy, start = None, None
    for meta in metas:
        try:
            policy = VWPolicy(args, model=read_checkpoint(models_dir, name, meta))
            start = meta
            break
        except (OSError, PolicyError) as err:
            log.warning("checkpoint_unusable", decision_point=name, file=meta.file, error=str(err))
    if policy is None:
        if metas:
            log.warning("no_valid_checkpoint", decision_point=name, replay_from=record.base_seq)
        policy = VWPolicy(args)
    state = ModelState(
        record=record,
        policy=policy,
        applied_seq=start.seq if start else record.base_seq,
        # The journal may be pruned empty up to the newest checkpoint: numbering continues after both.
        next_seq=max(last_seq, record.base_seq, *(meta.seq for meta in metas)) + 1,
        learned=start.learned if start else 0,
        reward_sum=start.reward_sum if start else 0.0,
        checkpoint_seq=start.seq if start else record.base_seq,
        checkpoint_ms=start.created_ms if start else 0,
    )
    # What was learned after the checkpoint is learned again, in order; the caller drains the backlog
    # (in slices, so the server can answer health checks meanwhile) before it serves.
    with store.read() as txn:
        state.backlog.extend(store.journal_after(txn, name, state.applied_seq))
    challengers.load(store, models_dir, state)
    log.info(
        "model_loaded",
        decision_point=name,
        checkpoint=start.file if start else None,
        to_replay=len(state.backlog),
    )
    return state


def read_checkpoint(models_dir: Path, name: str, meta: CheckpointMeta) -> bytes:
    """The checkpoint's model bytes, verified against the SHA-256 recorded with it."""
    data = (models_dir / name / meta.file).read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.sha256:
        raise PolicyError("checksum mismatch")
    return data


def read_event(store: Store, name: str, entry: JournalEntry) -> tuple[Decision | None, list[str]]:
    """The decision of a journal entry and its action lines; None when retention has removed them."""
    with store.read() as txn:
        decision = entry.decision or store.get_decision(txn, name, entry.event_id)
        try:
            lines = store.lines_of(txn, decision) if decision is not None else []
        except KeyError:
            decision = None
    return decision, lines


def learn(store: Store, state: ModelState, entry: JournalEntry) -> None:
    """Learn one journal entry (in sequence order) into the model, and into the challenger if any."""
    if entry.seq <= state.applied_seq:
        return  # already in the model (replayed)
    decision, lines = read_event(store, state.name, entry)
    if state.challenger is not None:
        challengers.observe(state.challenger, entry, decision, lines)
    if decision is None:
        # Only retention removes events and lines, long after they were learned; skip, never stall.
        log.warning("learn_skipped_missing_event", decision_point=state.name, event_id=entry.event_id)
    else:
        state.policy.learn(
            decision.shared,
            lines,
            decision.chosen,
            cost=-entry.reward,
            probability=decision.chosen_probability,
        )
        state.learned += 1
        state.reward_sum += entry.reward
    state.applied_seq = entry.seq


def follow_namespaces(store: Store, models_dir: Path, state: ModelState, kept: int = CHECKPOINTS_KEPT) -> None:
    """After the decision point's namespace table grew: a group interaction (``_context*_actions``) now
    covers the new namespace, so reload the model under the new command line (VW keeps the weights), and
    checkpoint it, so that a replay after a crash learns under the same command line as this run."""
    args = state.vw_args()
    challenger_moved = challengers.follow_namespaces(state)
    if args == state.policy.args and not challenger_moved:
        return
    state.policy = state.policy.under(args)
    checkpoint(store, models_dir, state, kept)
    log.info("model_follows_new_namespaces", decision_point=state.name, interactions=args.count("--interactions"))


@dataclass(frozen=True)
class ModelCopy:
    """A model's bytes and position, taken between two learned events: what a checkpoint writes."""

    name: str
    generation: int
    seq: int
    learned: int
    reward_sum: float
    data: bytes
    challenger: challengers.ChallengerCopy | None = None  # checkpointed with the champion, same seq

    def path(self, models_dir: Path) -> Path:
        return _checkpoint_path(models_dir, self.name, self.generation, self.seq)


def copy_model(state: ModelState) -> ModelCopy:
    """On the thread that owns the model (VW is not thread-safe)."""
    return ModelCopy(
        state.name,
        state.record.generation,
        state.applied_seq,
        state.learned,
        state.reward_sum,
        state.policy.to_bytes(),
        challengers.copy(state),
    )


def write_checkpoint_file(models_dir: Path, copy: ModelCopy) -> str:
    """The durable file write (fsync): any thread, so the serving loop does not wait for the disk."""
    if copy.challenger is not None:
        challengers.write_file(models_dir, copy.name, copy.challenger)
    return write_model(copy.path(models_dir), copy.data)


def record_checkpoint(
    store: Store, models_dir: Path, state: ModelState, copy: ModelCopy, sha: str, kept: int = CHECKPOINTS_KEPT
) -> CheckpointMeta | None:
    """Record a written checkpoint file in LMDB, prune old ones and the journal they cover. None (and the
    file removed) when the model moved to another generation meanwhile (reset, import, rollback)."""
    name, generation = state.name, copy.generation
    if state.record.generation != generation:
        copy.path(models_dir).unlink(missing_ok=True)
        challengers.discard(models_dir, name, copy.challenger)
        return None
    meta = CheckpointMeta(
        generation=generation,
        seq=copy.seq,
        file=copy.path(models_dir).name,
        sha256=sha,
        learned=copy.learned,
        reward_sum=copy.reward_sum,
        created_ms=now_ms(),
    )

    challenger_stale: list[str] = []

    def record(txn: Txn) -> list[CheckpointMeta]:
        store.put_checkpoint(txn, name, meta)
        if copy.challenger is not None:
            challenger_stale[:] = challengers.record_checkpoint(store, txn, name, copy.challenger, kept)
        every = store.all_checkpoints(txn, name)
        current = sorted((m for m in every if m.generation == generation), key=lambda m: m.seq)
        stale = [m for m in every if m.generation != generation] + current[:-kept]
        for old in stale:
            store.delete_checkpoint(txn, name, old)
        # Entries older than the oldest kept checkpoint can never be replayed again.
        store.prune_journal(txn, name, min(m.seq for m in current[-kept:]))
        return stale

    for old in store.write(record):
        _checkpoint_path(models_dir, name, old.generation, old.seq).unlink(missing_ok=True)
    challengers.remove_files(models_dir, name, challenger_stale)
    if meta.seq >= state.checkpoint_seq:
        state.checkpoint_seq, state.checkpoint_ms = meta.seq, meta.created_ms
    return meta


def checkpoint(store: Store, models_dir: Path, state: ModelState, kept: int = CHECKPOINTS_KEPT) -> CheckpointMeta:
    """Save the model (atomic file + sha256) and record it, all on this thread."""
    copy = copy_model(state)
    meta = record_checkpoint(store, models_dir, state, copy, write_checkpoint_file(models_dir, copy), kept)
    assert meta is not None  # same thread throughout: the generation cannot have moved
    return meta
