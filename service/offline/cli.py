"""The offline subcommands of ``kairos``: export and evaluate.

Kept apart from the serving commands; heavy imports happen inside the handlers so ``kairos --help`` and
``kairos serve`` do not pay for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMANDS = ("export", "evaluate")

EXPORT_EPILOG = """\
Only closed decisions are written: rewarded, or whose reward window passed (the decision point's
default reward is applied, and marked in _kairos.default_reward). Decisions still inside their reward
window, and deferred decisions that were never activated (never shown), are counted but not written.
Works while a server runs on the same data directory.

examples:
  kairos export --decision-point offers -o offers.dsjson
  kairos export --decision-point offers --since 2026-01-01 --until 2026-01-08T00:00Z | gzip > week.dsjson.gz
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = sub.add_parser(
        "export",
        help="write a decision point's logged decisions as VW DSJSON",
        description="Write a decision point's closed decisions, joined with their rewards, as VW DSJSON "
        "(one event per line, readable by VW's --dsjson parser and by `kairos evaluate`).",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--decision-point", required=True, metavar="NAME", help="the decision point to export")
    export.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the server's data directory (default: KAIROS_DATA_DIR, else ./kairos-data)",
    )
    export.add_argument("--since", metavar="ISO-8601", help="only decisions ranked at or after this (no zone: UTC)")
    export.add_argument("--until", metavar="ISO-8601", help="only decisions ranked before this time (UTC if no zone)")
    export.add_argument("-o", "--output", type=Path, help="write here (default: standard output)")
    export.add_argument("--quiet", action="store_true", help="no progress lines on standard error")


def run(args: argparse.Namespace) -> int:
    if args.command == "export":
        return _export(args)
    raise AssertionError(args.command)


def _export(args: argparse.Namespace) -> int:
    from service import settings as settings_module
    from service.offline import dsjson
    from service.offline.export import NO_END, ExportError, ExportProgress, export, open_store

    try:
        since = dsjson.parse_timestamp(args.since) if args.since else 0
        until = dsjson.parse_timestamp(args.until) if args.until else NO_END
    except ValueError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 2
    data_dir = args.data_dir or settings_module.load().data_dir

    def report(progress: ExportProgress) -> None:
        if not args.quiet:
            at = f", up to {dsjson.iso_timestamp(progress.last_ranked_ms)}" if progress.last_ranked_ms else ""
            print(f"kairos export: {progress.describe()}{at}", file=sys.stderr, flush=True)

    try:
        store = open_store(data_dir)
    except ExportError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 2
    try:
        out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
        try:
            done = export(store, args.decision_point, out, since_ms=since, until_ms=until, progress=report)
        finally:
            if args.output:
                out.close()
    except ExportError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"kairos export: {err}", file=sys.stderr)
        return 1
    finally:
        store.close()
    report(done)
    return 0
