"""A serving worker process (``kairos serve --workers N`` starts N of them).

It shares the public port with the other workers (SO_REUSEPORT), answers Rank
from LMDB and the newest model snapshot, and passes Reward, Activate and Admin
calls to the learning process over a local socket. It stops with SIGTERM, and
with its parent.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import structlog

from service import lifecycle
from service._pb.kairos.v1 import admin_service_pb2_grpc, decision_service_pb2_grpc, feature_service_pb2_grpc
from service.bootstrap import limits_of
from service.grpc import auth
from service.grpc import server as grpc_server
from service.grpc.forwarding import (
    ForwardingDecisionServicer,
    forwarding_admin_servicer,
    forwarding_feature_servicer,
)
from service.grpc.interceptors import server_interceptors
from service.metrics import RpcMetrics
from service.plane import DecisionPlane
from service.replica import Replica
from service.settings import Settings
from service.store.lmdb_store import Store

log = structlog.get_logger("kairos.worker")
REFRESH_INTERVAL_S = 0.2
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the learning process dies (even by kill -9)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        log.warning("no_parent_death_signal")


async def serve(settings: Settings, primary_address: str, ready_file: Path) -> None:
    _die_with_parent()
    store = Store(
        settings.data_dir / "lmdb", sync=settings.sync_commits, map_size=settings.map_size_mb << 20, owner=False
    )
    plane = DecisionPlane(store, settings.data_dir / "models", limits_of(settings))
    replica = Replica(plane, settings.data_dir / "snapshots")
    replica.refresh()
    primary = grpc.aio.insecure_channel(primary_address)
    ready = False
    metrics = RpcMetrics()
    servicers: list[tuple[Callable[[Any, grpc.aio.Server], None], Any]] = [
        (
            decision_service_pb2_grpc.add_DecisionServiceServicer_to_server,
            ForwardingDecisionServicer(plane, replica, lambda: ready, primary),
        ),
        (
            admin_service_pb2_grpc.add_AdminServiceServicer_to_server,
            forwarding_admin_servicer(lambda: ready, primary),
        ),
        (
            feature_service_pb2_grpc.add_FeatureServiceServicer_to_server,
            forwarding_feature_servicer(lambda: ready, primary),
        ),
    ]
    # Workers serve the public port: they authenticate every call (the learning process does again).
    interceptors = server_interceptors(settings.rpc_log_sample, metrics, auth.token_table(settings))
    server, health, port = grpc_server.build(settings, servicers, share_port=True, interceptors=interceptors)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    gc.collect()
    gc.freeze()
    ready = True  # everything is loaded: accept calls from the first connection on
    await server.start()

    async def follow() -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL_S)
            try:
                replica.refresh()
            except Exception:
                log.exception("refresh_failed")

    follower = asyncio.create_task(follow())
    await grpc_server.set_serving(health, True)
    ready_file.write_text(f"{port}\n")
    log.info("worker_serving", port=port)

    await stop.wait()
    await grpc_server.set_serving(health, False)
    await server.stop(await lifecycle.drain(metrics, settings.grace_period_s))
    ready = False
    follower.cancel()
    await primary.close()
    plane.close()
    store.close()
    log.info("worker_stopped")
