"""The composition root: settings in, a running service out."""

from __future__ import annotations

import asyncio
import gc
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import structlog

from service import config_file, datadir, lifecycle, tokens
from service.audit import AuditLog
from service.domain import DecisionPointConfig
from service.grpc import auth
from service.grpc import server as grpc_server
from service.grpc.interceptors import server_interceptors
from service.http import HttpServer
from service.learning.loop import LearningLoop
from service.metrics import RpcMetrics
from service.plane import DecisionPlane, Limits
from service.rest import configuration
from service.rest.api import PersonalizerApi
from service.rest.evaluations import EvaluationJobs
from service.rest.importances import ImportanceJobs
from service.rest.jobs import new_executor
from service.settings import Settings
from service.store.lmdb_store import Store
from service.workers import WorkerPool

log = structlog.get_logger("kairos")
DEMO = "demo"
CONFIG_FILE = "config-file"  # the actor of audit records for changes a config file makes at start


def open_plane(settings: Settings) -> DecisionPlane:
    store = Store(settings.data_dir / "lmdb", sync=settings.sync_commits, map_size=settings.map_size_mb << 20)
    if store.stale_readers_cleared:
        log.warning("stale_lmdb_readers_cleared", count=store.stale_readers_cleared)
    datadir.prepare(store, settings.data_dir)
    return DecisionPlane(store, settings.data_dir / "models", limits_of(settings), settings.checkpoints_kept)


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_actions=settings.max_actions,
        max_features=settings.max_features,
        fallback_margin_s=settings.fallback_margin_ms / 1000,
    )


def apply_declared(plane: DecisionPlane, declared: list[DecisionPointConfig], demo: bool, audit: AuditLog) -> None:
    """Create or bring in line the decision points of the config file (and the demo one)."""
    for config in declared:
        if config.name not in plane.states:
            plane.create_decision_point(config)
            audit.record(CONFIG_FILE, "", "CreateDecisionPoint", config.name, None, config.to_dict())
            continue
        current = plane.get_decision_point(config.name).config
        if current != config:
            log.warning(
                "config_file_overrides_decision_point",
                decision_point=config.name,
                before=current.to_dict(),
                after=config.to_dict(),
                model_reset=current.learner != config.learner,
            )
            plane.update_decision_point(config, reset_model=current.learner != config.learner)
            audit.record(CONFIG_FILE, "", "UpdateDecisionPoint", config.name, current.to_dict(), config.to_dict())
    if demo and DEMO not in plane.states:
        plane.create_decision_point(DecisionPointConfig(name=DEMO))


async def serve(settings: Settings, declared: list[DecisionPointConfig]) -> None:
    """Serve until SIGTERM/SIGINT. With ``settings.workers > 1`` this process learns and owns the
    decision points, listening on a private socket, while worker processes serve the public port."""
    # Configuration errors stop here, before anything starts.
    table = auth.token_table(settings)
    auth.server_credentials(settings)
    plane = open_plane(settings)
    ready = False
    rpc_metrics = RpcMetrics()
    pooled = settings.workers > 1
    private_dir = Path(tempfile.mkdtemp(prefix="kairos-")) if pooled else None
    address = f"unix:{private_dir / 'primary.sock'}" if private_dir else None
    audit = AuditLog(plane.store)
    servicers = grpc_server.serving_servicers(plane, lambda: ready, audit)
    # In pooled mode only workers reach the private socket: trust the caller address they pass on.
    interceptors = server_interceptors(settings.rpc_log_sample, rpc_metrics, table, trust_forwarded_peer=pooled)
    server, health_servicer, port = grpc_server.build(settings, servicers, address=address, interceptors=interceptors)
    public_port = (settings.port or _free_port(settings.host)) if pooled else port
    offline = new_executor()  # evaluations and feature importances take turns on one thread
    jobs = EvaluationJobs(plane, settings.data_dir / "evaluations", configuration.learner_from_arguments, offline)
    importances = ImportanceJobs(plane, settings.data_dir / "featureImportances", offline)
    api = PersonalizerApi(
        plane,
        audit,
        table,
        lambda: ready,
        rpc_metrics,
        jobs,
        importances,
        settings.retention_days,
        settings.rpc_log_sample,
    )
    http = HttpServer(plane, rpc_metrics, lambda: ready, api, settings.max_message_bytes)
    http_port = await http.start(settings.host, settings.http_port) if settings.http_port else None
    await grpc_server.set_serving(health_servicer, False)
    await server.start()
    log.info("starting", port=public_port, workers=settings.workers, data_dir=str(settings.data_dir.resolve()))
    _announce_security(settings, table)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)

    # Loading replays the journal; do it before SERVING so health tells the truth.
    plane.load_all()
    while plane.learn_pending(256):  # replay the journal after each checkpoint, yielding to health checks
        await asyncio.sleep(0)
    apply_declared(plane, declared, settings.demo, audit)
    loop = LearningLoop(plane, settings)
    pool = None
    if private_dir is not None and address is not None:
        loop.publish_snapshots()  # workers start from the current models
        pool = WorkerPool(settings, address, public_port, private_dir)
        await pool.start()
    loop.start()
    watcher = asyncio.create_task(pool.watch()) if pool else None
    # Everything loaded so far lives as long as the process: keep it out of the garbage collector's
    # full passes, which otherwise stall the event loop for 10-25 ms under load.
    gc.collect()
    gc.freeze()

    ready = True
    await grpc_server.set_serving(health_servicer, True)
    if settings.port_file:
        _write_atomically(settings.port_file, f"{public_port}\n")
    log.info("serving", host=settings.host, port=public_port, http_port=http_port, decision_points=sorted(plane.states))

    await stop.wait()
    log.info("stopping", grace_s=settings.grace_period_s)
    await grpc_server.set_serving(health_servicer, False)
    if pool is not None and watcher is not None:
        await pool.stop(settings.grace_period_s)  # workers drain first: their pass-through calls need us
        watcher.cancel()
    grace_left = await lifecycle.drain(rpc_metrics, settings.grace_period_s)  # answer what has arrived
    await server.stop(grace_left)  # in-flight calls finish; new ones get UNAVAILABLE
    ready = False
    await http.stop()
    await jobs.stop()
    await importances.stop()
    await loop.stop()
    loop.finish()
    plane.close()
    plane.store.close()
    if private_dir is not None:
        shutil.rmtree(private_dir, ignore_errors=True)
    log.info("stopped")


def _announce_security(settings: Settings, table: tokens.TokenTable | None) -> None:
    tls = "mutual" if settings.tls_client_ca_file else "on" if settings.tls_cert_file else "off"
    if table is None:
        log.warning(
            "authentication is OFF: any caller that reaches the port may rank and administer; "
            "set auth_tokens_file (KAIROS_AUTH_TOKENS_FILE) to require bearer tokens",
            host=settings.host,
            tls=tls,
        )
    else:
        log.info("authentication is on", tokens=len(table), tls=tls)


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run(settings: Settings, config: config_file.ConfigFile | None) -> None:
    asyncio.run(serve(settings, config.decision_points if config else []))
