"""The in-process cost of one Rank, by part: convert, rank, respond, close its window, learn it.

No transport: the decision plane runs on a temporary LMDB with the load
benchmark's requests (``--scenario``, as in ``benchmarks.load``: inline, the
default, sends 24 actions and ~15 context features; profile joins a stored
profile; catalog ranks the stored catalog under a contact policy), and every
event is closed with the default reward and learned, as every event
eventually is. Two measures:

- time (default): microseconds per Rank for each part, the minimum over
  several batches (the least disturbed one, on a shared machine);
- ``--instructions``: instructions per Rank counted by valgrind's callgrind,
  which do not depend on what else the machine is doing, so a change of a few
  percent shows. It runs the hot path twice under valgrind (N and 6N Ranks)
  and divides the difference, so start-up is not counted, then lists the
  native functions that grew most. Needs valgrind (Debian package) and takes
  a minute or two.

Examples::

    python -m benchmarks.hotpath
    python -m benchmarks.hotpath --instructions
    python -m benchmarks.hotpath --instructions --scenario profile
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from benchmarks.workload import SCENARIOS, Workload, build_workload
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service.domain import DecisionPointConfig
from service.grpc import converters
from service.learning.models import now_ms
from service.plane import DecisionPlane
from service.profile_import import write_batch
from service.store.lmdb_store import Store

PARTS = ("convert", "rank", "respond", "close", "learn")
CLOSE_EVERY = 25  # Ranks between window sweeps, as the sweeper's 50 ms at ~500 Rank/s


def prepare(plane: DecisionPlane, workload: Workload) -> None:
    """Store the scenario's profiles and catalog, and its contact policy, as the load benchmark does."""
    now = now_ms()
    rows = [(subject, converters.profile_groups(groups), now) for subject, groups in workload.profiles]
    for start in range(0, len(rows), 5000):
        write_batch(plane.store, rows[start : start + 5000])
    if workload.catalog:
        entries = [converters.catalog_entry(fpb.CatalogAction(action=action)) for action in workload.catalog]
        plane.customers.put_actions("demo", entries, replace=True)
    if workload.contact_policy is not None:
        config = plane.get_decision_point("demo").config
        plane.update_decision_point(replace(config, contact=converters.contact_policy(workload.contact_policy)))


def run(ranks: int, batches: int, folder: Path, scenario: str = "inline") -> dict[str, float]:
    """Microseconds per Rank for each part: the minimum over ``batches`` batches of ``ranks``."""
    plane = DecisionPlane(Store(folder / "lmdb"), folder / "models")
    plane.load_all()
    plane.create_decision_point(DecisionPointConfig(name="demo", reward_wait_ms=100))
    workload = build_workload(scenario, 7, 1000, 24, 200, subjects=1000)
    prepare(plane, workload)
    requests = [dpb.RankRequest.FromString(raw) for raw in workload.requests]
    best = dict.fromkeys(PARTS, float("inf"))
    try:
        for batch in range(batches + 1):  # the first batch warms the caches and is not counted
            spent = dict.fromkeys(PARTS, 0.0)
            for i in range(ranks):
                t0 = time.perf_counter()
                request = converters.rank_input(requests[(batch * ranks + i) % len(requests)])
                t1 = time.perf_counter()
                output = plane.rank(request)
                t2 = time.perf_counter()
                converters.rank_response(output)
                t3 = time.perf_counter()
                spent["convert"] += t1 - t0
                spent["rank"] += t2 - t1
                spent["respond"] += t3 - t2
                if i % CLOSE_EVERY == CLOSE_EVERY - 1:
                    t0 = time.perf_counter()
                    plane.close_windows(now_ms() + 1000, limit=10_000)
                    t1 = time.perf_counter()
                    while plane.learn_pending(1000):
                        pass
                    spent["close"] += t1 - t0
                    spent["learn"] += time.perf_counter() - t1
            if batch:
                best = {part: min(best[part], spent[part] / ranks * 1e6) for part in PARTS}
    finally:
        plane.close()
        plane.store.close()
    return best


def _callgrind(ranks: int, folder: Path, scenario: str) -> tuple[int, dict[str, int]]:
    out = folder / f"callgrind.{ranks}"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m"]
    command += ["benchmarks.hotpath", "--ranks", str(ranks), "--batches", "0", "--quiet", "--scenario", scenario]
    subprocess.run(command, check=True, capture_output=True)
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total, functions = 0, dict[str, int]()
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if not match:
            continue
        count, name = int(match.group(1).replace(",", "")), match.group(2)
        if "PROGRAM TOTALS" in name:
            total = count
            continue
        where, _, library = name.partition(" [")
        name = where.rsplit("/", 1)[-1] + (f" [{library.rsplit('/', 1)[-1]}" if library else "")
        functions[name] = functions.get(name, 0) + count
    return total, functions


def instructions(ranks: int, scenario: str) -> None:
    if not shutil.which("valgrind"):
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="kairos-hotpath-") as tmp:
        small, large = ranks, 6 * ranks
        print(f"running the hot path under callgrind: {small} and {large} Ranks ...", file=sys.stderr)
        total_small, by_small = _callgrind(small, Path(tmp), scenario)
        total_large, by_large = _callgrind(large, Path(tmp), scenario)
    per_rank = (total_large - total_small) / (large - small)
    print(f"instructions per Rank: {per_rank:,.0f}")
    grown = sorted(((by_large.get(k, 0) - by_small.get(k, 0)) / (large - small), k) for k in by_large)
    for count, name in reversed(grown[-15:]):
        print(f"{count:12,.0f} {count / per_rank:6.1%}  {name[:110]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hotpath", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=500, help="Ranks per batch (default 500)")
    parser.add_argument("--batches", type=int, default=6, help="timed batches after one warm-up batch (default 6)")
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="inline",
        help="what a Rank carries (see benchmarks.load; default inline)",
    )
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.ranks < CLOSE_EVERY or args.batches < 0:
        parser.error(f"--ranks must be at least {CLOSE_EVERY} and --batches at least 0")
    if args.instructions:
        instructions(max(args.ranks // 5, CLOSE_EVERY), args.scenario)
        return 0
    with tempfile.TemporaryDirectory(prefix="kairos-hotpath-") as tmp:
        best = run(args.ranks, args.batches, Path(tmp), args.scenario)
    if not args.quiet:
        print("microseconds per Rank (minimum over batches):")
        for part in PARTS:
            print(f"  {part:8} {best[part]:8.1f}")
        print(f"  {'total':8} {sum(best.values()):8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
