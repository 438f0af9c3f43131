"""Memory soak: 10 decision points, a million stored profiles, steady Rank/Reward traffic for 10 minutes.

It starts a real ``kairos serve`` on a temporary data directory, creates the
decision points (a short reward window, so the default reward is learned while
the soak runs), stores the profiles with ``kairos import-profiles`` while the
server runs, then sends Rank calls at a fixed open-loop rate: a random stored
subject, a little live context and 24 candidates drawn from a catalog, spread
over the decision points; a share of the events gets a Reward.

Every few seconds it samples the server's memory from /proc/PID/status
(summed over the process tree, for ``--workers``): RssAnon, the heap that
Kairos itself owns, and RssFile, mostly LMDB pages the kernel maps in and may
drop again; and the size of the LMDB data file. The report gives RssAnon at
the start of the soak (after the warm-up), at the end, the largest seen, the
growth over the soak and the slope of a straight line through the samples,
against the targets: RssAnon under 300 MB and growth under 10%. It also
records errors, Rank/Reward latency (not the point here) and the learned
counts and learner backlog from GetStats.

Writes soak.json and soak.png (when matplotlib is installed) into --out.

Examples::

    python -m benchmarks.soak                       # 1,000,000 profiles, 10 minutes at 200 Rank/s
    python -m benchmarks.soak --quick               # 20,000 profiles, 60 s
    python -m benchmarks.soak --duration 1200 --rate 300 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import duration_pb2

from benchmarks import memtrace
from benchmarks.load import machine, running_server, server_command, source
from benchmarks.workload import build_catalog
from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import admin_service_pb2_grpc as agrpc
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb

RANK_METHOD = "/kairos.v1.DecisionService/Rank"
REWARD_METHOD = "/kairos.v1.DecisionService/Reward"
RSS_ANON_TARGET_MB = 300.0
GROWTH_TARGET_PCT = 10.0
MB = 1 << 20


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- workload -----------------------------------------------------------------

TIERS = ("gold", "silver", "bronze", "new", "lapsed")
PLANS = ("free", "plus", "pro", "family")
CITIES = ("amsterdam", "berlin", "paris", "london", "madrid", "rome", "stockholm", "vienna")
CATEGORIES = ("travel", "electronics", "fashion", "grocery", "books", "sports", "home", "beauty")
CHANNELS = ("web", "app", "email", "call_center")
DEVICES = ("ios", "android", "desktop", "tablet")


def subject_id(index: int) -> str:
    return f"cust-{index:08d}"


def profile_line(rng: random.Random, index: int) -> str:
    """One JSON Lines profile: 15 features, in 3 namespaces for 2 subjects in 3 and in 2 for the rest."""
    user = {
        "tier": rng.choice(TIERS),
        "plan": rng.choice(PLANS),
        "age": rng.randint(18, 85),
        "tenure_days": rng.randint(0, 4000),
        "city": rng.choice(CITIES),
        "member": rng.random() < 0.4,
    }
    history = {
        "clicks_7d": rng.randint(0, 60),
        "purchases_30d": rng.randint(0, 12),
        "avg_basket": round(rng.uniform(5, 400), 2),
        "last_category": rng.choice(CATEGORIES),
        "returns_90d": rng.randint(0, 5),
    }
    billing = {
        "arpu": round(rng.uniform(5, 120), 2),
        "late_payments": rng.randint(0, 4),
        "contract_months_left": rng.randint(0, 24),
        "autopay": rng.random() < 0.6,
    }
    if index % 3 == 2:  # two namespaces: billing folded into user
        user.update(billing)
        features: dict[str, dict[str, Any]] = {"user": user, "history": history}
    else:
        features = {"user": user, "history": history, "billing": billing}
    return json.dumps({"subject_id": subject_id(index), "features": features}, separators=(",", ":"))


def write_profiles(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, count, 10_000):
            handle.write("".join(profile_line(rng, i) + "\n" for i in range(start, min(start + 10_000, count))))


def decision_point_names(count: int) -> list[str]:
    return [f"soak-{i:02d}" for i in range(count)]


def action_pool(rng: random.Random, catalog: Sequence[tpb.Action], actions: int, size: int) -> list[bytes]:
    """Serialized RankRequests holding only candidates: a Rank's bytes are its own small header plus one of
    these (protobuf appends a repeated field's entries when serialized messages are concatenated)."""
    return [dpb.RankRequest(actions=rng.sample(list(catalog), actions)).SerializeToString() for _ in range(size)]


def live_context(rng: random.Random) -> list[tpb.FeatureGroup]:
    """What the calling service knows right now: 3 features in one namespace."""
    return [
        tpb.FeatureGroup(
            namespace="session",
            features={
                "device": tpb.FeatureValue(string_value=rng.choice(DEVICES)),
                "hour": tpb.FeatureValue(number_value=rng.randint(0, 23)),
                "pages": tpb.FeatureValue(number_value=rng.randint(1, 30)),
            },
        )
    ]


# -- the server's memory ---------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        found.append(current)
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """RssAnon, RssFile, RssShmem and VmRSS in kB from /proc/PID/status (0 for a process just gone)."""
    wanted = ("RssAnon", "RssFile", "RssShmem", "VmRSS")
    values = dict.fromkeys(wanted, 0)
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0])
    return values


def tree_memory_kb(pid: int) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for member in process_tree(pid):
        total.update(memory_kb(member))
    return dict(total)


@dataclass
class Sample:
    t_s: float  # seconds since the soak's traffic started (negative: before it)
    rss_anon_mb: float
    rss_file_mb: float
    rss_shmem_mb: float
    vm_rss_mb: float
    lmdb_file_mb: float  # apparent size of data.mdb
    lmdb_allocated_mb: float  # blocks on disk
    processes: int
    ranks_ok: int
    backlog: int | None  # learner backlog over all decision points, when GetStats answered


def take_sample(pid: int, data_file: Path, t_s: float, ranks_ok: int, backlog: int | None) -> Sample:
    kb = tree_memory_kb(pid)
    try:
        stat = data_file.stat()
        size, allocated = stat.st_size / MB, stat.st_blocks * 512 / MB
    except OSError:
        size = allocated = 0.0
    return Sample(
        t_s=round(t_s, 2),
        rss_anon_mb=round(kb.get("RssAnon", 0) / 1024, 2),
        rss_file_mb=round(kb.get("RssFile", 0) / 1024, 2),
        rss_shmem_mb=round(kb.get("RssShmem", 0) / 1024, 2),
        vm_rss_mb=round(kb.get("VmRSS", 0) / 1024, 2),
        lmdb_file_mb=round(size, 2),
        lmdb_allocated_mb=round(allocated, 2),
        processes=len(process_tree(pid)),
        ranks_ok=ranks_ok,
        backlog=backlog,
    )


# -- traffic --------------------------------------------------------------------


@dataclass
class Traffic:
    sent: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds from due time, OK Ranks
    due_s: list[float] = field(default_factory=list)  # each OK Rank's due time, seconds after the start
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    rewards_sent: int = 0
    reward_latencies: list[float] = field(default_factory=list)
    reward_errors: collections.Counter[str] = field(default_factory=collections.Counter)


def _record(counter: collections.Counter[str], examples: dict[str, str], error: BaseException) -> None:
    if isinstance(error, grpc.aio.AioRpcError):
        code, message = error.code().name, str(error.details())
    else:
        code, message = type(error).__name__, str(error)
    counter[code] += 1
    examples.setdefault(code, message[:300])


class SoakClient:
    def __init__(self, target: str, channels: int, names: Sequence[str], args: argparse.Namespace) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
        self.channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
        self.rank = [
            ch.unary_unary(RANK_METHOD, request_serializer=None, response_deserializer=dpb.RankResponse.FromString)
            for ch in self.channels
        ]
        self.reward = [
            ch.unary_unary(
                REWARD_METHOD, request_serializer=dpb.RewardRequest.SerializeToString, response_deserializer=None
            )
            for ch in self.channels
        ]
        self.admin = agrpc.AdminServiceStub(self.channels[0])
        self.names = list(names)
        self.args = args
        self.rng = random.Random(args.seed + 1)
        self.actions = action_pool(random.Random(args.seed + 2), build_catalog(random.Random(args.seed), 200), 24, 500)
        self.traffic = Traffic()
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = 0.0

    async def ready(self) -> None:
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), 30) for ch in self.channels))

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch in self.channels))

    async def create_decision_points(self) -> None:
        for name in self.names:
            window = duration_pb2.Duration()
            window.FromMilliseconds(round(self.args.reward_wait_s * 1000))
            dp = tpb.DecisionPoint(name=name, reward_wait=window)
            await self.admin.CreateDecisionPoint(apb.CreateDecisionPointRequest(decision_point=dp), timeout=30)

    async def stats(self) -> list[apb.DecisionPointStats]:
        replies = []
        for name in self.names:
            reply: apb.DecisionPointStats = await self.admin.GetStats(
                apb.GetStatsRequest(decision_point=name), timeout=10
            )
            replies.append(reply)
        return replies

    def request(self, index: int) -> tuple[str, bytes]:
        rng = self.rng
        name = self.names[index % len(self.names)]
        header = dpb.RankRequest(
            decision_point=name,
            subject_id=subject_id(rng.randrange(self.args.profiles)),
            channel=rng.choice(CHANNELS),
            context=live_context(rng),
        )
        return name, header.SerializeToString() + rng.choice(self.actions)

    async def _call(self, due: float, index: int, name: str, body: bytes, rewarded: bool) -> None:
        slot = index % len(self.channels)
        try:
            response: dpb.RankResponse = await self.rank[slot](body, timeout=self.args.timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            _record(self.traffic.errors, self.traffic.error_examples, error)
            return
        self.traffic.ok += 1
        self.traffic.latencies.append(time.perf_counter() - due)
        self.traffic.due_s.append(due - self.started)
        if not rewarded:
            return
        self.traffic.rewards_sent += 1
        reward = dpb.RewardRequest(decision_point=name, event_id=response.event_id, value=float(index % 2))
        started = time.perf_counter()
        try:
            await self.reward[slot](reward, timeout=self.args.timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            _record(self.traffic.reward_errors, self.traffic.error_examples, error)
            return
        self.traffic.reward_latencies.append(time.perf_counter() - started)

    async def run(self, duration_s: float) -> None:
        """Launch Rank i at start + i / rate whether or not earlier calls have completed (open loop)."""
        rate, start = self.args.rate, time.perf_counter()
        self.started = start
        total = int(duration_s * rate)
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            name, body = self.request(index)
            rewarded = self.rng.random() < self.args.reward_share
            task = asyncio.create_task(self._call(due, index, name, body, rewarded))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self.traffic.sent += 1
        if self.tasks:
            await asyncio.wait(self.tasks)


# -- the soak --------------------------------------------------------------------


def import_profiles(data_dir: Path, path: Path, map_size_mb: int) -> float:
    """``kairos import-profiles`` into the serving data directory; returns the seconds it took."""
    command = [*server_command(), "import-profiles", "--data-dir", str(data_dir), str(path)]
    env = {**os.environ, "KAIROS_MAP_SIZE_MB": str(map_size_mb)}
    log(f"importing profiles: {' '.join(command)}")
    started = time.monotonic()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL)  # its progress goes to our stderr
    if done.returncode != 0:
        raise RuntimeError(f"import-profiles failed with exit code {done.returncode} (its message is above)")
    return time.monotonic() - started


async def sampler(
    client: SoakClient, pid: int, data_file: Path, start: float, every_s: float, samples: list[Sample]
) -> None:
    while True:
        backlog: int | None
        try:
            backlog = sum(s.learner.backlog for s in await client.stats())
        except grpc.aio.AioRpcError:
            backlog = None
        sample = take_sample(pid, data_file, time.perf_counter() - start, client.traffic.ok, backlog)
        samples.append(sample)
        log(
            f"t={sample.t_s:6.0f}s RssAnon {sample.rss_anon_mb:6.1f} MB, RssFile {sample.rss_file_mb:6.1f} MB, "
            f"LMDB {sample.lmdb_file_mb:7.1f} MB, Ranks OK {sample.ranks_ok:,}, errors "
            f"{sum(client.traffic.errors.values())}, backlog {backlog}"
        )
        await asyncio.sleep(every_s)


def _ms(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 3) if values else None


def latency_timeline(traffic: Traffic, every_s: float) -> list[dict[str, float | int | None]]:
    """Rank latency per interval of due times: when the slow calls were due (stalls show up as spikes)."""
    if not traffic.latencies:
        return []
    buckets = (np.asarray(traffic.due_s) // every_s).astype(int)
    latencies = np.asarray(traffic.latencies)
    rows: list[dict[str, float | int | None]] = []
    for bucket in range(int(buckets.max()) + 1):
        window = latencies[buckets == bucket].tolist()
        rows.append(
            {
                "t_s": round(bucket * every_s, 1),
                "calls": len(window),
                "p50_ms": _ms(window, 50),
                "p99_ms": _ms(window, 99),
                "max_ms": _ms(window, 100),
            }
        )
    return rows


def summarise(samples: Sequence[Sample], warmup_s: float) -> dict[str, Any]:
    """Start (first sample after the warm-up), end, max and growth of each memory series over the soak."""
    soak = [s for s in samples if s.t_s >= warmup_s] or list(samples)
    summary: dict[str, Any] = {"warmup_s": warmup_s, "samples_in_soak": len(soak)}
    for key in ("rss_anon_mb", "rss_file_mb", "vm_rss_mb", "lmdb_file_mb"):
        values = [getattr(s, key) for s in soak]
        start, end = values[0], values[-1]
        entry: dict[str, Any] = {
            "start": start,
            "end": end,
            "max": max(values),
            "growth_pct": round((end - start) / start * 100, 2) if start else None,
        }
        if len(soak) >= 2:  # MB per minute of a least-squares line: less sensitive to one noisy sample
            slope = np.polyfit([s.t_s for s in soak], values, 1)[0] * 60
            entry["slope_mb_per_min"] = round(float(slope), 3)
        summary[key] = entry
    anon = summary["rss_anon_mb"]
    summary["targets"] = {
        "rss_anon_below_mb": RSS_ANON_TARGET_MB,
        "rss_anon_max_met": anon["max"] < RSS_ANON_TARGET_MB,
        "growth_below_pct": GROWTH_TARGET_PCT,
        "growth_met": anon["growth_pct"] is not None and anon["growth_pct"] < GROWTH_TARGET_PCT,
    }
    return summary


def stats_dict(stats: Sequence[apb.DecisionPointStats]) -> dict[str, Any]:
    per_dp: dict[str, dict[str, Any]] = {
        s.decision_point: {
            "ranks": s.ranks,
            "rewards": s.rewards,
            "learned": s.learned,
            "default_rewards": s.default_rewards,
            "backlog": s.learner.backlog,
            "open_events": s.learner.open_events,
            "model_version": s.learner.model_version,
        }
        for s in stats
    }
    totals: dict[str, int] = {
        k: sum(v[k] for v in per_dp.values()) for k in ("ranks", "rewards", "learned", "default_rewards")
    }
    totals["backlog"] = sum(v["backlog"] for v in per_dp.values())
    totals["open_events"] = sum(v["open_events"] for v in per_dp.values())
    return {"total": totals, "per_decision_point": per_dp}


async def _snapshot_after(folder: Path, name: str, delay_s: float) -> bool:
    await asyncio.sleep(delay_s)
    log(f"memory trace: snapshot {name!r}")
    return await asyncio.to_thread(memtrace.request_snapshot, folder, name)


async def soak(
    args: argparse.Namespace, pid: int, port: int, data_dir: Path, profiles_path: Path, trace: Path | None
) -> dict[str, Any]:
    names = decision_point_names(args.decision_points)
    client = SoakClient(f"127.0.0.1:{port}", args.channels, names, args)
    try:
        await client.ready()
        await client.create_decision_points()
        log(f"created {len(names)} decision points (reward window {args.reward_wait_s:g} s)")
        before_import = tree_memory_kb(pid)
        import_s = await asyncio.to_thread(import_profiles, data_dir, profiles_path, args.map_size_mb)
        log(f"imported {args.profiles:,} profiles in {import_s:.1f} s")
        samples: list[Sample] = []
        start = time.perf_counter()
        task = asyncio.create_task(
            sampler(client, pid, data_dir / "lmdb" / "data.mdb", start, args.sample_every_s, samples)
        )
        log(f"soak: {args.rate:g} Rank/s for {args.duration:g} s ({args.warmup:g} s of warm-up)")
        first_snapshot = asyncio.create_task(_snapshot_after(trace, "start", args.warmup)) if trace else None
        await client.run(args.duration)
        traced = None
        if trace and first_snapshot and await first_snapshot and await _snapshot_after(trace, "end", 0):
            traced = memtrace.growth(trace, "start", "end")
        end_stats = await client.stats()  # backlog at the end of the traffic
        task.cancel()
        samples.append(
            take_sample(
                pid,
                data_dir / "lmdb" / "data.mdb",
                time.perf_counter() - start,
                client.traffic.ok,
                sum(s.learner.backlog for s in end_stats),
            )
        )
        await asyncio.sleep(args.reward_wait_s + 2)  # the open windows close and are learned
        drained_stats = await client.stats()
    finally:
        await client.close()
    traffic = client.traffic
    return {
        "import": {
            "profiles": args.profiles,
            "seconds": round(import_s, 1),
            "per_second": round(args.profiles / import_s),
            "rss_anon_mb_before": round(before_import.get("RssAnon", 0) / 1024, 2),
        },
        "summary": summarise(samples, args.warmup),
        "traffic": {
            "offered_rate": args.rate,
            "sent": traffic.sent,
            "ok": traffic.ok,
            "achieved_rate": round(traffic.ok / args.duration, 1),
            "errors": sum(traffic.errors.values()),
            "errors_by_code": dict(traffic.errors),
            "error_examples": traffic.error_examples,
            "rank_p50_ms": _ms(traffic.latencies, 50),
            "rank_p99_ms": _ms(traffic.latencies, 99),
            "rewards_sent": traffic.rewards_sent,
            "reward_errors": sum(traffic.reward_errors.values()),
            "reward_errors_by_code": dict(traffic.reward_errors),
            "reward_p50_ms": _ms(traffic.reward_latencies, 50),
            "reward_p99_ms": _ms(traffic.reward_latencies, 99),
            "rank_timeline": latency_timeline(traffic, args.sample_every_s),
        },
        "stats_at_end": stats_dict(end_stats),
        "stats_after_drain": stats_dict(drained_stats),
        "samples": [asdict(s) for s in samples],
        **({"memory_trace": traced} if trace else {}),
    }


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    samples = report["samples"]
    minutes = [s["t_s"] / 60 for s in samples]
    fig, (mem, disk, latency) = plt.subplots(1, 3, figsize=(18, 4.8))
    mem.plot(minutes, [s["rss_anon_mb"] for s in samples], label="RssAnon (Kairos's own memory)", color="C0")
    mem.plot(minutes, [s["rss_file_mb"] for s in samples], label="RssFile (mapped LMDB pages)", color="C1")
    mem.axhline(RSS_ANON_TARGET_MB, color="grey", linestyle=":", linewidth=1, label="RssAnon target")
    disk.plot(minutes, [s["lmdb_file_mb"] for s in samples], label="data.mdb size", color="C2")
    disk.plot(minutes, [s["lmdb_allocated_mb"] for s in samples], label="data.mdb on disk", color="C3", linestyle="--")
    timeline = [row for row in report["traffic"].get("rank_timeline", []) if row["p99_ms"] is not None]
    latency.plot([r["t_s"] / 60 for r in timeline], [r["p50_ms"] for r in timeline], label="Rank p50", color="C0")
    latency.plot([r["t_s"] / 60 for r in timeline], [r["p99_ms"] for r in timeline], label="Rank p99", color="C3")
    latency.set_yscale("log")
    latency.set_title(f"Rank latency per {report['config']['sample_every_s']:g} s (by scheduled send)")
    latency.set_xlabel("minutes of traffic")
    latency.set_ylabel("ms")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize=8)
    warmup = report["config"]["warmup_s"] / 60
    for ax, ylabel in ((mem, "MB (server process tree)"), (disk, "MB")):
        ax.axvline(warmup, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            "end of warm-up",
            (warmup, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -14),
            textcoords="offset points",
            color="grey",
        )
        ax.set_xlabel("minutes of traffic")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    config = report["config"]
    mem.set_title("server memory")
    disk.set_title("LMDB data file")
    fig.suptitle(
        f"Kairos soak: {config['profiles']:,} profiles, {config['decision_points']} decision points, "
        f"{config['rate']:g} Rank/s (24 candidates)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def describe(report: dict[str, Any]) -> str:
    s, t = report["summary"], report["traffic"]
    anon = s["rss_anon_mb"]
    total = report["stats_after_drain"]["total"]
    return (
        f"RssAnon start {anon['start']:.1f} MB, end {anon['end']:.1f} MB, max {anon['max']:.1f} MB, "
        f"growth {anon['growth_pct']}% (target < {RSS_ANON_TARGET_MB:g} MB and < {GROWTH_TARGET_PCT:g}%: "
        f"{'met' if s['targets']['rss_anon_max_met'] and s['targets']['growth_met'] else 'MISSED'}); "
        f"RssFile end {s['rss_file_mb']['end']:.1f} MB; LMDB {s['lmdb_file_mb']['start']:.0f} -> "
        f"{s['lmdb_file_mb']['end']:.0f} MB; Ranks {t['ok']:,}/{t['sent']:,} OK, {t['errors']} errors, "
        f"{t['reward_errors']} reward errors, p50 {t['rank_p50_ms']} ms, p99 {t['rank_p99_ms']} ms; "
        f"learned {total['learned']:,}, backlog at end {report['stats_at_end']['total']['backlog']}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="20,000 profiles and 60 s (unless given)")
    parser.add_argument("--profiles", type=int, default=None, help="stored profiles (default 1,000,000)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of traffic (default 600)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the soak's start sample (60)")
    parser.add_argument("--rate", type=float, default=200.0, help="Rank calls per second, open loop")
    parser.add_argument("--reward-share", type=float, default=0.2, help="share of ranked events rewarded")
    parser.add_argument("--decision-points", type=int, default=10)
    parser.add_argument("--reward-wait-s", type=float, default=2.0, help="reward window of each decision point")
    parser.add_argument("--sample-every-s", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--channels", type=int, default=4, help="client connections")
    parser.add_argument("--workers", type=int, default=1, help="kairos serve --workers")
    parser.add_argument("--map-size-mb", type=int, default=4096, help="LMDB map size of server and import")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="deadline of each call")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server-args", default="", help="more kairos serve flags, e.g. '--checkpoint-interval-s 600'")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="run the server under tracemalloc and report which source lines and object types grew between "
        "the end of the warm-up and the end (slows the server; for finding what grows)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for soak.json/png")
    args = parser.parse_args(argv)
    args.profiles = args.profiles if args.profiles is not None else (20_000 if args.quick else 1_000_000)
    args.duration = args.duration if args.duration is not None else (60.0 if args.quick else 600.0)
    args.warmup = args.warmup if args.warmup is not None else (10.0 if args.quick else 60.0)
    if args.profiles < 1 or args.duration <= 0 or args.rate <= 0 or args.decision_points < 1:
        parser.error("--profiles, --duration, --rate and --decision-points must be positive")
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")
    if args.reward_wait_s < 0.1:
        parser.error("--reward-wait-s must be at least 0.1 (the shortest reward window)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started, code = datetime.now(UTC), source()  # the code the server starts with, not what is there at the end
    with tempfile.TemporaryDirectory(prefix="kairos-soak-") as tmp:
        profiles_path, data_dir = Path(tmp) / "profiles.jsonl", Path(tmp) / "data"
        log(f"writing {args.profiles:,} profiles to {profiles_path.name}")
        write_profiles(profiles_path, args.profiles, args.seed)
        server_args = ["--no-demo", "--data-dir", str(data_dir), "--map-size-mb", str(args.map_size_mb)]
        server_args += ["--workers", str(args.workers), *shlex.split(args.server_args)]
        trace = Path(tmp) / "memtrace" if args.trace_memory else None
        prefix = [sys.executable, memtrace.__file__, str(trace)] if trace else None
        with running_server(server_args, None, prefix) as (process, port):
            result = asyncio.run(soak(args, process.pid, port, data_dir, profiles_path, trace))
    config = {
        k: getattr(args, k)
        for k in ("profiles", "duration", "warmup", "rate", "reward_share", "decision_points", "reward_wait_s")
    }
    config |= {
        "warmup_s": args.warmup,
        "sample_every_s": args.sample_every_s,
        "workers": args.workers,
        "actions_per_rank": 24,
        "catalog_size": 200,
        "channels": args.channels,
        "trace_memory": args.trace_memory,
        "server_args": args.server_args,
        "seed": args.seed,
    }
    report = {
        "benchmark": "soak",
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m benchmarks.soak " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "source": code,
        "config": config,
        **result,
    }
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    drawn = plot(report, args.out / "soak.png")
    log(describe(report))
    log(f"wrote {args.out / 'soak.json'}" + (f" and {args.out / 'soak.png'}" if drawn else " (no matplotlib: no plot)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
