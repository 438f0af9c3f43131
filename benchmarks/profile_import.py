"""Bulk profile import rate: ``kairos import-profiles`` on generated JSON Lines, by number of worker processes.

``python -m benchmarks.profile_import [--profiles 200000] [--jobs 1,2]`` writes that many profiles of 20
features (10 numbers, 8 strings, 2 booleans in three namespaces) to a temporary file, then runs the real
command once per ``--jobs`` value, each into a fresh data directory, and prints profiles per second for
each and the speed-up against the first. The machine's other load is printed too: on a shared machine
the ratio means more than the absolute rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.load import server_command


def write_profiles(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(count):
            features = {
                "user": {f"n{k}": round(rng.uniform(0, 1000), 2) for k in range(10)},
                "crm": {f"s{k}": f"v{rng.randint(0, 50)}" for k in range(8)},
                "flags": {"member": rng.random() < 0.4, "newsletter": rng.random() < 0.5},
            }
            out.write(json.dumps({"subject_id": f"subject-{i:08d}", "features": features}) + "\n")


def import_rate(path: Path, data_dir: Path, jobs: int, count: int) -> float:
    command = [*server_command(), "import-profiles", str(path), "--data-dir", str(data_dir), "--jobs", str(jobs)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_import",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profiles", type=int, default=200_000, help="profiles to import (default 200000)")
    parser.add_argument(
        "--jobs", default="1,2", help="comma-separated worker counts to compare, the first is the base (default 1,2)"
    )
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    jobs = [int(j) for j in args.jobs.split(",")]
    with tempfile.TemporaryDirectory(prefix="kairos-import-") as tmp:
        path = Path(tmp) / "profiles.jsonl"
        write_profiles(path, args.profiles, args.seed)
        print(f"{args.profiles:,} profiles of 20 features, {path.stat().st_size / 1e6:.0f} MB of JSON Lines")
        print(f"load average before: {os.getloadavg()[0]:.2f}, usable CPUs: {len(os.sched_getaffinity(0))}")
        rates = [import_rate(path, Path(tmp) / f"data-{n}-{k}", n, args.profiles) for k, n in enumerate(jobs)]
    for n, rate in zip(jobs, rates, strict=True):
        print(f"--jobs {n}: {rate:>9,.0f} profiles/s  ({rate / rates[0]:.2f}x --jobs {jobs[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
