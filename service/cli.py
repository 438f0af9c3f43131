"""The `kairos` command."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from service import config_file, log_setup
from service import settings as settings_module
from service.offline import cli as offline_cli
from service.settings import Settings

DESCRIPTION = """\
Kairos: real-time next-best-action decisions over gRPC.

  kairos serve                       start on 127.0.0.1:50051 with data in ./kairos-data
  kairos serve --config kairos.toml  also declare decision points from a TOML file
  kairos health                      exit 0 when the local server is SERVING
  kairos backup --to DIR             consistent copy of the data directory, also while serving
  kairos rollback NAME [--seq N]     list a decision point's checkpoints, or roll its model back to one
  kairos bench --quick               run the benchmarks (from a source checkout; --help there)
  kairos import-profiles FILE        bulk-load profiles (JSON Lines, or CSV by extension)
  kairos rank-batch --decision-point DP FILE
                                     rank the catalog for each subject of FILE (outbound campaigns)
  kairos export --decision-point N   write a decision point's logged decisions as VW DSJSON
  kairos evaluate LOGS --policy SPEC estimate how other learner configurations would have done
  kairos tune LOGS --current SPEC    recommend a configuration only when it is clearly better

Every serve flag can also be set as an environment variable KAIROS_<NAME>
(for example KAIROS_DATA_DIR=/data) or in the config file's [server] table.
"""


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser(
        "serve",
        help="run the gRPC decision service",
        description="Run the gRPC decision service. Stops cleanly on SIGTERM or SIGINT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    docs = Settings.field_docs()
    for field in fields(Settings):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{docs.get(field.name, '')} [env {settings_module.ENV_PREFIX}{field.name.upper()}]"
        if "bool" in str(field.type):
            serve.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            serve.add_argument(
                flag,
                dest=field.name,
                default=None,
                metavar=field.name.upper(),
                help=f"{help_text} (default: {field.default})",
            )


def _health_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    health = sub.add_parser(
        "health",
        help="check a running server's gRPC health (exit 0 when SERVING; for container HEALTHCHECKs)",
        description="Ask a running Kairos server's grpc.health.v1 service whether it is SERVING.",
    )
    health.add_argument("--timeout", type=float, default=3.0, help="seconds")
    _connection_arguments(health)


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    """How a client command reaches a running server."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: KAIROS_PORT or 50051")
    parser.add_argument("--ca-file", type=Path, help="speak TLS, trusting the server certificates this PEM CA signed")
    parser.add_argument("--cert-file", type=Path, help="PEM client certificate, for a server requiring mutual TLS")
    parser.add_argument("--key-file", type=Path, help="PEM private key of --cert-file")


def _channel(args: argparse.Namespace) -> tuple[Any, str]:
    """A channel to the server ``args`` name, and its address for messages."""
    import grpc

    target = f"{args.host}:{args.port or settings_module.load().port}"
    if args.ca_file:
        key = args.key_file.read_bytes() if args.key_file else None
        cert = args.cert_file.read_bytes() if args.cert_file else None
        credentials = grpc.ssl_channel_credentials(args.ca_file.read_bytes(), private_key=key, certificate_chain=cert)
        return grpc.secure_channel(target, credentials), target
    return grpc.insecure_channel(target), target


def _backup_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backup = sub.add_parser(
        "backup",
        help="copy the data directory consistently, also while a server is using it",
        description="Copy the LMDB database and the model checkpoints it refers to into a new directory. "
        "Safe while a server runs; start a server with --data-dir on the copy to restore it.",
    )
    backup.add_argument("--data-dir", type=Path, default=None, help="default: KAIROS_DATA_DIR or kairos-data")
    backup.add_argument("--to", type=Path, required=True, help="a new (or empty) directory")


def _backup(args: argparse.Namespace) -> int:
    from service.backup import BackupError, backup
    from service.store.lmdb_store import DataDirError

    data_dir = args.data_dir or settings_module.load().data_dir
    try:
        report = backup(data_dir, args.to)
    except (BackupError, DataDirError, OSError) as err:
        print(f"kairos backup: {err}", file=sys.stderr)
        return 1
    print(
        f"backed up {report.decision_points} decision points, {report.checkpoints} checkpoints, "
        f"{report.bytes} bytes to {report.destination}"
    )
    return 0


def _rollback_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rollback = sub.add_parser(
        "rollback",
        help="list a decision point's checkpoints, or roll its model back to one (on a running server)",
        description="Without --seq: list the kept checkpoints of the decision point's model, newest first. "
        "With --seq: serve on from that checkpoint (AdminService.RollbackModel).",
    )
    rollback.add_argument("name", help="decision point")
    rollback.add_argument("--seq", type=int, default=None, help="a checkpoint's seq, from the listing")
    rollback.add_argument("--token-file", type=Path, help="file holding a token with the admin scope")
    _connection_arguments(rollback)


def _rollback(args: argparse.Namespace) -> int:
    import grpc

    from service._pb.kairos.v1 import admin_service_pb2 as admin_pb
    from service._pb.kairos.v1 import admin_service_pb2_grpc as admin_grpc

    token = args.token_file.read_text().strip() if args.token_file else ""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    channel, _ = _channel(args)
    with channel:
        admin = admin_grpc.AdminServiceStub(channel)
        try:
            if args.seq is None:
                listing = admin.ListCheckpoints(
                    admin_pb.ListCheckpointsRequest(name=args.name), timeout=30, metadata=metadata
                )
                print("seq\tmodel_version\tlearned\taverage_reward\tcreated")
                for c in listing.checkpoints:
                    created = c.create_time.ToDatetime().isoformat(timespec="seconds")
                    print(f"{c.seq}\t{c.model_version}\t{c.learned}\t{c.average_reward:.4f}\t{created}Z")
                return 0
            done = admin.RollbackModel(
                admin_pb.RollbackModelRequest(name=args.name, seq=args.seq), timeout=60, metadata=metadata
            )
        except grpc.RpcError as err:
            print(f"kairos rollback: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    print(f"{args.name}: now serving model {done.model_version} ({done.dropped_events} learned events dropped)")
    return 0


def _worker(args: argparse.Namespace) -> int:
    import asyncio

    from service import worker

    settings = settings_module.load()
    log_setup.configure(settings.log_format, settings.log_level)
    asyncio.run(worker.serve(settings, args.primary, args.ready_file))
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel, target = _channel(args)
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=args.timeout)
        except grpc.RpcError as err:
            print(f"kairos health: {target}: {err.code().name}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(name)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


def _bench(argv: list[str]) -> int:
    # The benchmarks live beside the package in a source checkout, not in the installed package.
    checkout = Path.cwd()
    if (checkout / "benchmarks" / "__main__.py").exists() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from benchmarks.__main__ import main as bench_main
    except ImportError as err:
        print(f"kairos bench: {err}; run it from the root of a Kairos source checkout", file=sys.stderr)
        return 2
    return bench_main(argv)


def _import_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "import-profiles",
        help="bulk-load subject profiles from JSON Lines or CSV, with progress",
        description="Merge profiles into the data directory, as PutProfile does, in batches of one transaction "
        "each; works while the server runs. FILE ending in .csv is CSV (subject_id and namespace.feature "
        'columns); anything else JSON Lines ({"subject_id": ..., "features": {namespace: {name: value}}}).',
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: KAIROS_DATA_DIR or ./kairos-data")
    parser.add_argument("--batch-size", type=int, default=5000, help="profiles per transaction")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes that parse and encode while this one writes (default: the usable CPUs, at most 8; "
        "1 does everything in this process)",
    )


def _import_profiles(args: argparse.Namespace) -> int:
    from service import profile_import

    settings = settings_module.load()
    try:
        profile_import.run(
            args.file,
            args.data_dir or settings.data_dir,
            args.batch_size,
            map_size_mb=settings.map_size_mb,
            jobs=args.jobs or profile_import.default_jobs(),
        )
    except (OSError, profile_import.ProfileImportError) as err:
        print(f"kairos import-profiles: {err}", file=sys.stderr)
        return 1
    return 0


def _rank_batch_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "rank-batch",
        help="rank a decision point's catalog for every subject of a file, through a running server",
        description="For each line of FILE (a subject id, or JSON with subject_id and context) call Rank with "
        "no actions, so the catalog is ranked under the contact rules and logged; print one JSON line per "
        "subject (the action to send, or why nothing may be sent) and progress on stderr.",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--decision-point", required=True)
    parser.add_argument("--channel", default="", help="the channel of the campaign, for example email")
    parser.add_argument("--event-prefix", default="", help="event id = prefix + subject id: reruns are idempotent")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: KAIROS_PORT or 50051")
    parser.add_argument("--token-file", type=Path, help="file holding a token with the serve scope")
    parser.add_argument("--ca-file", type=Path, help="speak TLS, trusting the server certificates this PEM CA signed")


def _rank_batch(args: argparse.Namespace) -> int:
    from service import rank_batch

    port = args.port or settings_module.load().port
    try:
        connection = rank_batch.Connection(
            f"{args.host}:{port}",
            token=args.token_file.read_text().strip() if args.token_file else "",
            ca_pem=args.ca_file.read_bytes() if args.ca_file else None,
        )
        rank_batch.run(args.file, connection, args.decision_point, args.channel, args.event_prefix)
    except (OSError, rank_batch.BatchError) as err:
        print(f"kairos rank-batch: {err}", file=sys.stderr)
        return 1
    return 0


def _worker_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    # Internal: started by `kairos serve --workers N`, configured through KAIROS_* variables.
    worker = sub.add_parser("worker")
    worker.add_argument("--primary", required=True, help="address of the learning process")
    worker.add_argument("--ready-file", required=True, type=Path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kairos", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    _health_parser(sub)
    _backup_parser(sub)
    _rollback_parser(sub)
    _worker_parser(sub)
    _import_parser(sub)
    _rank_batch_parser(sub)
    sub.add_parser("bench", help="run the benchmarks: kairos bench --help (the same as python -m benchmarks)")
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["bench"]:
        return _bench(given[1:])
    offline_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "health":
        return _health(args)
    if args.command == "worker":
        return _worker(args)
    if args.command == "backup":
        return _backup(args)
    if args.command == "rollback":
        return _rollback(args)
    if args.command == "import-profiles":
        return _import_profiles(args)
    if args.command == "rank-batch":
        return _rank_batch(args)
    if args.command in offline_cli.COMMANDS:
        return offline_cli.run(args)
    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        config = None
        config_path = overrides.get("config") or settings_module.load().config
        if config_path:
            config = config_file.load(Path(config_path))
        settings = settings_module.load(overrides, config.server if config else None)
    except (ValueError, config_file.ConfigError) as err:
        print(f"kairos: {err}", file=sys.stderr)
        return 2
    log_setup.configure(settings.log_format, settings.log_level)
    from service import bootstrap
    from service.store.lmdb_store import DataDirError
    from service.tokens import SecurityConfigError

    try:
        bootstrap.run(settings, config)
    except (DataDirError, SecurityConfigError) as err:
        print(f"kairos: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"kairos: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
