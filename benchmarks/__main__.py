"""Run Kairos's benchmarks, one after another, into one folder with a summary.

  load       open-loop Rank (+ Reward) latency against the gRPC health-check floor, rate by rate
  explorers  explorers and interactions side by side on a simulated customer base (in-process)
  drift      real-time learning (Kairos over gRPC) against a stale batch score, with a drift halfway
  digits     scikit-learn's digits as a contextual bandit: Kairos over gRPC against raw Vowpal Wabbit
  estimators coverage and error of the off-policy estimators (IPS, SNIPS, DR) on simulated logs
  soak       server memory over 10 minutes of steady traffic with a million stored profiles (only with
             --only soak: it is long, and run by hand)

Each benchmark starts its own `kairos serve` (port 0, temporary data directory) where it needs one,
and writes NAME.json (and NAME.png when matplotlib is installed: pip install -e '.[bench]') into
--out; summary.md and summary.json gather the headline numbers. Progress goes to stderr.

  python -m benchmarks                      # everything, full size (about 20-30 minutes on 2 cores)
  python -m benchmarks --quick              # everything, small (a few minutes)
  python -m benchmarks --only drift,digits --out /tmp/bench

Each benchmark has its own options and thresholds: python -m benchmarks.NAME --help.
Latency numbers are only meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NAMES = ("load", "explorers", "drift", "digits", "estimators", "soak")
DEFAULT_NAMES = tuple(name for name in NAMES if name != "soak")  # the soak runs only when asked for


def log(message: str) -> None:
    print(f"[benchmarks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _entry(name: str) -> Callable[[list[str]], int]:
    # Imported one at a time so that one benchmark's missing extra does not stop the others.
    if name == "load":
        from benchmarks import load

        return lambda argv: load.main(argv)
    if name == "explorers":
        from benchmarks import explorers

        return explorers.main
    if name == "drift":
        from benchmarks import drift

        return drift.main
    if name == "estimators":
        from benchmarks import estimators

        return estimators.main
    if name == "soak":
        from benchmarks import soak

        return soak.main
    from benchmarks import digits

    return digits.main


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def headline(name: str, out: Path) -> str:
    """One line of the most telling numbers of a benchmark's JSON."""
    data = _read(out / f"{name}.json")
    if data is None:
        return "no result"
    if name == "load":
        s = data["summary"]
        ratio = s["rank_p50_over_health_p50"]
        return (
            f"highest Rank rate held with p99 <= 10 ms: {s['highest_rank_rate_held_p99_le_10ms']}/s; "
            f"Rank p50 / health p50 per rate: {', '.join(f'{k}/s {v}' for k, v in ratio.items())}"
        )
    if name == "explorers":
        best = data["results"][0]
        return f"best: {best['config']} at {best['share_of_oracle']:.0%} of the oracle (last quarter)"
    if name == "drift":
        p = data["policies"]
        k, t = p["kairos"]["after_drift"], p["kairos_tuned"]["after_drift"]
        return (
            f"after the drift, Kairos defaults {k['vs_batch']:.2f}x the stale batch, {k['vs_ceiling']:.0%} of the "
            f"full-information ceiling, {k['vs_oracle']:.0%} of the oracle; context x action setting "
            f"{t['vs_batch']:.2f}x batch, {t['vs_ceiling']:.0%} of the ceiling"
        )
    if name == "soak":
        anon, t = data["summary"]["rss_anon_mb"], data["traffic"]
        return (
            f"RssAnon {anon['start']:.0f} -> {anon['end']:.0f} MB (max {anon['max']:.0f} MB, growth "
            f"{anon['growth_pct']}%) over {data['config']['duration']:g} s at {data['config']['rate']:g} Rank/s with "
            f"{data['config']['profiles']:,} profiles; {t['errors'] + t['reward_errors']} errors"
        )
    if name == "estimators":
        rows = data["results"]
        return (
            f"{data['seeds']} seeds: coverage of 95% intervals "
            + ", ".join(f"{n} {r['coverage']:.1%}" for n, r in rows.items())
            + f"; RMSE DR (good model) {rows['dr_good']['rmse']:.4f} vs IPS {rows['ips']['rmse']:.4f}"
        )
    return (
        f"Kairos over gRPC {data['kairos_vs_best_raw_vw']:.3f}x the best raw VW ({data['best_raw_vw']}) with its "
        f"defaults, {data['kairos_configured_vs_best_raw_vw']:.3f}x with context x action interactions"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small runs of every benchmark")
    parser.add_argument(
        "--only", default=",".join(DEFAULT_NAMES), help=f"comma-separated benchmarks to run, of {', '.join(NAMES)}"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder of the results")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown or not chosen:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown) or '(none given)'}; choose from {NAMES}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    outcomes: dict[str, dict[str, Any]] = {}
    for number, name in enumerate(chosen, 1):
        log(f"({number}/{len(chosen)}) {name}{' --quick' if args.quick else ''} -> {args.out}")
        began = time.perf_counter()
        try:
            code = _entry(name)([*(["--quick"] if args.quick else []), "--out", str(args.out)])
        except Exception:  # one broken benchmark must not cost the others' results
            traceback.print_exc()
            code = 1
        seconds = time.perf_counter() - began
        outcomes[name] = {"exit_code": code, "seconds": round(seconds, 1), "headline": headline(name, args.out)}
        log(f"({number}/{len(chosen)}) {name} finished with exit code {code} in {seconds:.0f} s")
    lines = [
        f"# Kairos benchmarks{' (quick)' if args.quick else ''}",
        "",
        f"Started {started.isoformat(timespec='seconds')}; results, JSON and plots in this folder.",
        "",
        "| benchmark | exit code | seconds | headline |",
        "|---|---:|---:|---|",
        *(f"| {n} | {o['exit_code']} | {o['seconds']:.0f} | {o['headline']} |" for n, o in outcomes.items()),
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(
        json.dumps({"started_utc": started.isoformat(timespec="seconds"), "quick": args.quick, **outcomes}, indent=2)
        + "\n"
    )
    print("\n".join(lines))
    return 0 if all(o["exit_code"] == 0 for o in outcomes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
