"""Warm start: learn imported decisions into a decision point's model, with the server stopped.

The data directory is opened as the server opens it, lock included, so this cannot run beside a server
(two learners would checkpoint the same model). The decision point's current model (its newest
checkpoint plus the journal after it) learns every imported event, in file order, with the logged
probability of the shown action, exactly as a live event is learned; the result replaces the model the
way ``AdminService.ImportModel`` does: a new model generation, checkpointed, with the namespaces the
import gave out stored in the same step, and an audit record.
"""

from __future__ import annotations

from pathlib import Path

from policies.vw import VWPolicy
from service import datadir
from service.audit import AuditLog
from service.errors import KairosError
from service.offline.log_import import Normalized
from service.plane import DecisionPlane
from service.settings import Settings
from service.store.lmdb_store import DataDirError, Store

ACTOR = "import-logs"  # the actor of the audit record


class WarmStartError(RuntimeError):
    """The model cannot be warm-started; the message says what to do."""


class WarmStart:
    def __init__(self, settings: Settings, data_dir: Path, name: str) -> None:
        if not (data_dir / "lmdb" / "data.mdb").is_file():
            raise WarmStartError(f"no Kairos data in {data_dir}; pass the server's --data-dir")
        try:
            store = Store(data_dir / "lmdb", sync=settings.sync_commits, map_size=settings.map_size_mb << 20)
        except DataDirError as err:
            raise WarmStartError(f"{err} (--learn needs the server stopped)") from None
        try:
            datadir.prepare(store, data_dir)
            self.plane = DecisionPlane(store, data_dir / "models", checkpoints_kept=settings.checkpoints_kept)
            self.plane.load_all()
        except DataDirError as err:
            store.close()
            raise WarmStartError(str(err)) from None
        except BaseException:
            store.close()
            raise
        while self.plane.learn_pending(10_000):  # the journal after the newest checkpoint, as at start
            pass
        state = self.plane.states.get(name)
        if state is None:
            known = ", ".join(sorted(self.plane.states)) or "none"
            self.close()
            raise WarmStartError(
                f"decision point {name!r} does not exist in {data_dir} (it has: {known}); create it first"
            )
        self.name = name
        self.record = state.record
        self.model_version_before = state.model_version
        model, _ = self.plane.export_model(name)
        self.policy = VWPolicy(self.record.vw_args(), model=model)
        self._namespaces_known = len(self.record.namespaces.indices)
        self.learned = 0

    def learn(self, event: Normalized) -> None:
        if len(self.record.namespaces.indices) != self._namespaces_known:
            # A new namespace joins the group interactions (_context*_actions): the model follows, as live.
            self.policy = self.policy.under(self.record.vw_args())
            self._namespaces_known = len(self.record.namespaces.indices)
        row = event.row
        self.policy.learn(event.shared, event.action_lines, row.chosen, cost=-row.reward, probability=row.probability)
        self.learned += 1

    def commit(self, source: str, namespaces_added: list[str]) -> str:
        """Serve on from the warm-started model; returns its model version."""
        model = self.policy.to_bytes()
        try:
            version = self.plane.import_model(self.name, model)
        except KairosError as err:
            raise WarmStartError(err.message) from None
        AuditLog(self.plane.store).record(
            ACTOR,
            "",
            "ImportLogs",
            self.name,
            {"model_version": self.model_version_before},
            {
                "model_version": version,
                "events_learned": self.learned,
                "source": source,
                "namespaces_added": namespaces_added,
            },
        )
        return version

    def close(self) -> None:
        self.plane.close()
        self.plane.store.close()
