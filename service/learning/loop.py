"""Background work of the service, as asyncio tasks on the serving loop.

Everything runs on the one event-loop thread, in small slices that yield
between them, so Rank never waits long behind learning and VW and LMDB need
no locks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable

import structlog

from service.learning import models, snapshots
from service.learning.models import now_ms
from service.plane import DecisionPlane
from service.settings import Settings

log = structlog.get_logger(__name__)
# Work done before yielding to waiting RPCs: each slice is a few milliseconds at most (a learned event
# costs ~0.1-0.2 ms, a closed window ~0.05 ms), which bounds what it adds to a Rank's latency.
LEARN_SLICE = 16
SWEEP_SLICE = 64
SWEEP_INTERVAL_S = 0.05  # reward windows are at least 100 ms long
PROFILE_SWEEP_INTERVAL_S = 3600.0  # scanning every profile for expired features is slow work: hourly
PROFILE_SWEEP_SLICE = 200  # profiles per write transaction


class LearningLoop:
    def __init__(self, plane: DecisionPlane, settings: Settings) -> None:
        self.plane = plane
        self.settings = settings
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # One thread for LMDB flushes; stop() waits for it so the store is never closed under a flush.
        self._flusher = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmdb-flush")
        self.snapshots_dir = settings.data_dir / "snapshots"
        plane.on_learnable = self._wake.set

    def start(self) -> None:
        jobs = [self._learner, self._sweeper, self._checkpointer, self._maintenance]
        if self.settings.workers > 1:
            jobs.append(self._publisher)
        for job in jobs:
            self._tasks.append(asyncio.create_task(self._guard(job), name=job.__name__))

    def publish_snapshots(self) -> None:
        """Hand every model that learned since its last snapshot to the serving workers."""
        with self.plane.store.read() as txn:
            stale = [
                s
                for s in self.plane.states.values()
                if not snapshots.is_current(snapshots.read(self.plane.store, txn, s.name), s)
            ]
        for state in stale:
            snapshots.publish(self.plane.store, self.snapshots_dir, state)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._flusher.shutdown(wait=True)

    async def _guard(self, job: Callable[[], Awaitable[None]]) -> None:
        # A failing background job must not die silently: log and restart it.
        while True:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background_job_failed", job=getattr(job, "__name__", str(job)))
                await asyncio.sleep(1.0)

    async def _learner(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.plane.learn_pending(LEARN_SLICE):
                await asyncio.sleep(0)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            while self.plane.close_windows(now_ms(), limit=SWEEP_SLICE) >= SWEEP_SLICE:
                await asyncio.sleep(0)

    async def _publisher(self) -> None:
        while True:
            await asyncio.sleep(snapshots.PUBLISH_INTERVAL_S)
            self.publish_snapshots()

    async def _checkpointer(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval_s)
            await self.checkpoint_all()

    async def checkpoint_all(self) -> None:
        """Checkpoint each model that learned, one at a time: its bytes are copied on the loop (VW is not
        thread-safe), the file is written and fsynced on the flush thread, so a slow disk does not stall
        Rank, and the record is committed on the loop. (At shutdown plane.checkpoint_all does it all.)"""
        loop = asyncio.get_running_loop()
        for state in self.plane.to_checkpoint():
            copy = models.copy_model(state)
            try:
                sha = await loop.run_in_executor(
                    self._flusher, models.write_checkpoint_file, self.plane.models_dir, copy
                )
            except OSError as err:  # a full disk: the journal since the last checkpoint stays and is replayed
                log.error("checkpoint_failed", decision_point=state.name, error=str(err))
                continue
            self.plane.record_checkpoint(state, copy, sha)

    async def _maintenance(self) -> None:
        last_purge = 0.0
        last_profile_sweep = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.sync_interval_s)
            if not self.settings.sync_commits:
                # fdatasync takes milliseconds; py-lmdb releases the GIL for it, so a thread keeps it off the loop.
                await asyncio.get_running_loop().run_in_executor(self._flusher, self.plane.store.sync)
            if time.monotonic() - last_purge > 60:
                last_purge = time.monotonic()
                cutoff = now_ms() - int(self.settings.retention_days * 86_400_000)
                while self.plane.purge_before(cutoff, limit=1000) >= 1000:
                    await asyncio.sleep(0)
                self.plane.store.env.reader_check()
            if time.monotonic() - last_profile_sweep > PROFILE_SWEEP_INTERVAL_S:
                last_profile_sweep = time.monotonic()
                await self.sweep_profiles()

    async def sweep_profiles(self) -> int:
        """Reclaim the space of profile features past every decision point's TTL, in small slices."""
        ttls = self.plane.profile_ttls()
        removed, after = 0, ""
        while ttls:
            gone, after = self.plane.customers.sweep_profiles(ttls, now_ms(), after, PROFILE_SWEEP_SLICE)
            removed += gone
            if not after:
                break
            await asyncio.sleep(0)
        if removed:
            log.info("expired_profile_features_deleted", features=removed)
        return removed

    def finish(self) -> None:
        """At shutdown: learn everything that is ready, then checkpoint."""
        while self.plane.learn_pending(1000):
            pass
        self.plane.checkpoint_all()
        self.plane.store.sync()
