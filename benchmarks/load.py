"""Open-loop load generator for Kairos: Rank (+ Reward) and the health Check floor, rate by rate.

It starts the real server (``kairos serve``) as a subprocess with a temporary
data directory, then for each offered rate runs two steps:

1. ``health``: grpc.health.v1 Health/Check calls at that rate, the transport
   floor (gRPC + HTTP/2 + the asyncio server, no Kairos work);
2. ``rank``: Rank calls at that rate; 20% of the ranked events then get a
   Reward. What a Rank carries depends on --scenario (benchmarks/workload.py):
   ``inline`` (24 candidates and ~15 context features in the request),
   ``profile`` (24 candidates, a subject_id whose stored profile joins 5 live
   features) or ``catalog`` (only a subject_id and live features: the stored
   catalog ranked under a contact policy).

Who sends the calls (--client): by default h2load (from Debian's
nghttp2-client), a C client that leaves the shared machine's cores to the
server. It posts one fixed body per method: the health checks, and the Ranks
that get no Reward (all the same request, each a new event). The rewarded
share of Ranks, each followed by its Reward, comes from this process's Python
gRPC client beside it, since a Reward needs the event id its Rank returned.
Rank latencies are then h2load's (the Python client's own overhead would blur
them) and gRPC errors, which h2load cannot see (they travel in HTTP/2
trailers under status 200), are found by comparing the Ranks the server
counted with the ones answered. ``--client python`` sends everything from
this process, as below.

The schedule is open-loop: call i is due at ``start + i / rate`` and is
launched then whether or not earlier calls have completed, and its latency is
measured from that due time, not from when the client got round to sending
it, so a stalled server (or client) shows up in the latencies instead of
silently lowering the offered load (no coordinated omission). ``lag`` is how
late the client launched calls; if its p99 is not small, the client, not the
server, was the limit.

Per step it reports the achieved rate, p50/p95/p99 latency, errors, the
server's CPU seconds per call (utime+stime of the server process from
/proc/PID/stat, over the step and the learning drain after it), and for Rank
the learner backlog from GetStats (at the end of the step, and the largest
seen while it ran): learning keeps up when it stays near 0. load.json also
has the event-loop thread's share of a core (near 1.0 = saturated: the
server runs Rank on one asyncio thread) and a per-second timeline of each step.

The client shares the machine with the server. It measures how much CPU
everything else used during each step ("other cores"); before a step it waits
for the machine to be quiet and repeats a step that others disturbed
(--max-other-cores, --retries), reporting the least disturbed attempt.

Examples::

    python -m benchmarks.load                      # 250..2000 Rank/s, 10 s per step
    python -m benchmarks.load --quick              # 2 rates, 3 s per step
    python -m benchmarks.load --scenario catalog --rates 250,500
    python -m benchmarks.load --rates 100,300 --duration 20 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2

from benchmarks.workload import DECISION_POINT, SCENARIOS, Workload, build_workload
from service._pb.kairos.v1 import admin_service_pb2 as apb
from service._pb.kairos.v1 import admin_service_pb2_grpc as agrpc
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import feature_service_pb2 as fpb
from service._pb.kairos.v1 import feature_service_pb2_grpc as fgrpc
from service._pb.kairos.v1 import types_pb2 as tpb

DEFAULT_RATES = (250, 500, 1000, 1500, 2000)
QUICK_RATES = (250, 1000)
RANK_METHOD = "/kairos.v1.DecisionService/Rank"
REWARD_METHOD = "/kairos.v1.DecisionService/Reward"
HEALTH_METHOD = "/grpc.health.v1.Health/Check"
P99_TARGET_MS = 10.0
HELD_FRACTION = 0.95  # a rate is "held" when at least this share of it was achieved (and p99, errors are fine)


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the server under test ------------------------------------------------------


def proc_cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of every thread of process ``pid`` (or of one of its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat").read_text()
    after_comm = text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces
    return (int(after_comm[11]) + int(after_comm[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants that are alive (``--workers`` serve from children)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds() -> float:
    """This process and its finished children (h2load runs), not the server (reaped only at the end)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def server_command() -> list[str]:
    kairos = Path(sys.executable).with_name("kairos")
    if kairos.exists():
        return [str(kairos)]
    found = shutil.which("kairos")
    return [found] if found else [sys.executable, "-m", "service.cli"]


@contextlib.contextmanager
def running_server(
    extra_args: Sequence[str], cpus: set[int] | None, prefix: Sequence[str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``kairos serve`` on a free port with a temporary data dir; yield (process, port); stop it."""
    with tempfile.TemporaryDirectory(prefix="kairos-load-") as tmp:
        port_file = Path(tmp) / "port"
        log_path = Path(tmp) / "server.log"
        command = [
            *(prefix or server_command()),
            "serve",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--data-dir",
            str(Path(tmp) / "data"),
            "--log-level",
            "warning",
            *extra_args,
        ]
        log(f"starting server: {' '.join(command)}")
        with log_path.open("wb") as server_log:
            process = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT)
        try:
            if cpus is not None:
                os.sched_setaffinity(process.pid, cpus)
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"the server did not start (exit code {process.poll()}); its log:\n{tail}")
                time.sleep(0.05)
            port = int(port_file.read_text())
            log(f"server pid {process.pid} serving on port {port}")
            yield process, port
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            warnings = log_path.read_text(errors="replace").strip()
            if warnings:
                log(f"server log (exit code {process.returncode}):\n{warnings[-3000:]}")


# -- measurement ----------------------------------------------------------------


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds from due time to completion, OK calls
    due: list[float] = field(default_factory=list)  # due time of each OK call (perf_counter), same order
    start: float = 0.0
    lags: list[float] = field(default_factory=list)  # seconds from due time to launch
    wire: list[float] = field(default_factory=list)  # seconds from launch to completion, OK calls
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_examples: dict[str, str] = field(default_factory=dict)  # first message per status code
    reward_latencies: list[float] = field(default_factory=list)
    reward_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    last_done: float = 0.0
    extra_ok: int = 0  # OK Ranks not in ``latencies`` (the Python client's share beside h2load)


@dataclass
class StepResult:
    kind: str  # "rank" or "health"
    offered_rate: float
    duration_s: float
    sent: int
    ok: int
    achieved_rate: float
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    errors: int
    errors_by_code: dict[str, int]
    error_examples: dict[str, str]
    launch_lag_p50_ms: float  # how late the client launched calls (event-loop timer granularity, CPU)
    launch_lag_p99_ms: float
    from_launch_p50_ms: float | None  # latency from the actual launch instead of the due time
    from_launch_p99_ms: float | None
    client_cpu_cores: float  # client CPU seconds / wall seconds during the step
    server_cpu_cores: float  # server CPU seconds / wall seconds during the step
    server_main_thread_cores: float  # the same for the event-loop thread alone: near 1.0 means saturated
    other_cpu_cores: float  # everything else busy on the machine during the step (should be ~0)
    server_cpu_ms_per_call: float | None  # step and learning drain after it, per OK call
    rewards_sent: int = 0
    reward_p50_ms: float | None = None
    reward_p99_ms: float | None = None
    reward_errors: int = 0
    reward_errors_by_code: dict[str, int] = field(default_factory=dict)
    backlog_final: int | None = None  # GetStats learner.backlog when the step's calls had all completed
    backlog_max: int | None = None  # largest backlog polled during the step
    drain_s: float | None = None  # time after the step until the backlog was 0
    learned_during_step: int | None = None
    attempts: int = 1  # steps are repeated when other processes disturbed them (see --retries)
    timeline: list[dict[str, float | int | None]] = field(default_factory=list)  # per second of the step


def _ms(values: Sequence[float] | npt.NDArray[np.float64], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 3) if len(values) else None


def timeline(samples: Samples) -> list[dict[str, float | int | None]]:
    """Per second of the schedule (by due time): calls, p50, p99 and max latency in ms, to spot stalls."""
    if not samples.latencies:
        return []
    seconds = (np.asarray(samples.due) - samples.start).astype(int)
    latencies = np.asarray(samples.latencies)
    rows: list[dict[str, float | int | None]] = []
    for second in range(int(seconds.max()) + 1):
        window = latencies[seconds == second]
        rows.append(
            {
                "second": second,
                "calls": len(window),
                "p50_ms": _ms(window, 50),
                "p99_ms": _ms(window, 99),
                "max_ms": _ms(window, 100),
            }
        )
    return rows


def _record_error(counter: collections.Counter[str], examples: dict[str, str], error: BaseException) -> None:
    if isinstance(error, grpc.aio.AioRpcError):
        code, message = str(error.code().name), f"{error.details()} ({error.debug_error_string()})"
    else:
        code, message = type(error).__name__, str(error)
    counter[code] += 1
    examples.setdefault(code, message[:500])


class LoadClient:
    """Several channels (separate TCP connections) used round-robin, with pre-serialized requests."""

    def __init__(self, target: str, channels: int, timeout_s: float, reward_share: float, seed: int) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
        self.channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
        self.rank = [
            ch.unary_unary(RANK_METHOD, request_serializer=None, response_deserializer=None) for ch in self.channels
        ]
        self.reward = [
            ch.unary_unary(
                REWARD_METHOD, request_serializer=dpb.RewardRequest.SerializeToString, response_deserializer=None
            )
            for ch in self.channels
        ]
        self.health = [
            ch.unary_unary(HEALTH_METHOD, request_serializer=None, response_deserializer=None) for ch in self.channels
        ]
        self.admin = agrpc.AdminServiceStub(self.channels[0])
        self.features = [fgrpc.FeatureServiceStub(ch) for ch in self.channels]
        self.timeout_s = timeout_s
        self.reward_share = reward_share
        self.rng = random.Random(seed)

    async def ready(self) -> None:
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), 30) for ch in self.channels))

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch in self.channels))

    async def stats(self) -> apb.DecisionPointStats:
        request = apb.GetStatsRequest(decision_point=DECISION_POINT)
        response: apb.DecisionPointStats = await self.admin.GetStats(request, timeout=10)
        return response

    async def _rank_call(self, due: float, index: int, request: bytes, samples: Samples) -> None:
        launched = time.perf_counter()
        samples.lags.append(launched - due)
        slot = index % len(self.channels)
        try:
            response: bytes = await self.rank[slot](request, timeout=self.timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            _record_error(samples.errors, samples.error_examples, error)
            samples.last_done = time.perf_counter()
            return
        done = time.perf_counter()
        samples.latencies.append(done - due)
        samples.due.append(due)
        samples.wire.append(done - launched)
        samples.last_done = done
        if self.rng.random() >= self.reward_share:
            return
        value = 1.0 if self.rng.random() < 0.3 else 0.0
        event_id = dpb.RankResponse.FromString(response).event_id  # parsed only when needed
        reward = dpb.RewardRequest(decision_point=DECISION_POINT, event_id=event_id, value=value)
        started = time.perf_counter()
        try:
            await self.reward[slot](reward, timeout=self.timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            _record_error(samples.reward_errors, samples.error_examples, error)
        else:
            samples.reward_latencies.append(time.perf_counter() - started)
        samples.last_done = max(samples.last_done, time.perf_counter())

    async def _health_call(self, due: float, index: int, request: bytes, samples: Samples) -> None:
        launched = time.perf_counter()
        samples.lags.append(launched - due)
        try:
            await self.health[index % len(self.channels)](request, timeout=self.timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            _record_error(samples.errors, samples.error_examples, error)
        else:
            done = time.perf_counter()
            samples.latencies.append(done - due)
            samples.due.append(due)
            samples.wire.append(done - launched)
        samples.last_done = time.perf_counter()

    async def open_loop(self, kind: str, rate: float, duration_s: float, requests: Sequence[bytes]) -> Samples:
        """Launch call i at start + i/rate, whatever happened to the earlier ones; wait for all to finish."""
        call: Callable[[float, int, bytes, Samples], Any] = self._rank_call if kind == "rank" else self._health_call
        samples = Samples()
        total = round(rate * duration_s)
        interval = 1.0 / rate
        in_flight: set[asyncio.Task[None]] = set()
        start = samples.start = time.perf_counter()
        index = 0
        while index < total:
            now = time.perf_counter()
            while index < total and start + index * interval <= now:
                task = asyncio.create_task(
                    call(start + index * interval, index, requests[index % len(requests)], samples)
                )
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                index += 1
            if index < total:
                await asyncio.sleep(max(0.0, start + index * interval - time.perf_counter()))
        if in_flight:
            await asyncio.wait(set(in_flight))
        return samples


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed), as it goes on the wire in an HTTP/2 DATA frame."""
    return b"\0" + len(message).to_bytes(4, "big") + message


@dataclass
class H2Load:
    """Calls sent by h2load (nghttp2): a C client that costs the shared machine far less CPU per call than
    a Python one, so the server gets the cores. Each h2load process posts one fixed body, so its Ranks
    are all the same request (a new event each time; process k sends message k of the ones given) and
    it cannot reward them: the Python client sends the rewarded share of Ranks (each followed by its
    Reward) beside it."""

    port: int
    connections: int
    folder: Path
    bodies: dict[bytes, Path] = field(default_factory=dict)

    def body(self, message: bytes) -> Path:
        if message not in self.bodies:
            path = self.folder / f"{len(self.bodies)}.body"
            path.write_bytes(grpc_frame(message))
            self.bodies[message] = path
        return self.bodies[message]

    async def run(self, method: str, messages: Sequence[bytes], rate: float, duration_s: float) -> Samples:
        # One h2load process per connection, started 1/rate apart: h2load paces each client with its own
        # timer, so the clients of one process send at the same instants, in bursts of one per client,
        # which queue behind each other (16 clients took the health check's p50 from 1.7 to 3.4 ms).
        # Staggered single-client processes add up to one evenly spaced stream.
        logs = [self.folder / f"h2load-{k}.log" for k in range(self.connections)]
        processes = []
        for k, log_path in enumerate(logs):
            log_path.unlink(missing_ok=True)
            command = [
                "h2load",
                "--clients=1",
                "--max-concurrent-streams=64",
                f"--rps={rate / self.connections:.3f}",
                f"--duration={duration_s:g}",
                f"--log-file={log_path}",
                f"--data={self.body(messages[k % len(messages)])}",
                "--header=content-type: application/grpc",
                "--header=te: trailers",
                f"http://127.0.0.1:{self.port}{method}",
            ]
            processes.append(
                await asyncio.create_subprocess_exec(
                    *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
                )
            )
            if k + 1 < len(logs):
                await asyncio.sleep(1.0 / rate)
        for process in processes:
            output, _ = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"h2load failed ({process.returncode}): {output.decode(errors='replace')[-2000:]}")
        samples = Samples()
        rows = [line.split("\t") for path in logs for line in path.read_text().splitlines() if line]
        if not rows:
            return samples
        samples.start = min(int(row[0]) for row in rows) / 1e6
        for started_us, status, took_us in rows:
            if status != "200":
                samples.errors[f"HTTP_{status}"] += 1
                continue
            samples.due.append(int(started_us) / 1e6)
            samples.latencies.append(int(took_us) / 1e6)
        samples.wire = samples.latencies
        return samples


async def drive(
    client: LoadClient, h2load: H2Load | None, kind: str, rate: float, duration_s: float, requests: Sequence[bytes]
) -> Samples:
    """One step's calls: all from the Python client, or with h2load sending everything but the rewarded Ranks."""
    if h2load is None:
        return await client.open_loop(kind, rate, duration_s, requests)
    if kind == "health":
        return await h2load.run(HEALTH_METHOD, requests[:1], rate, duration_s)
    python_rate = rate * client.reward_share
    share, client.reward_share = client.reward_share, 1.0
    try:
        fixed, rewarded = await asyncio.gather(
            h2load.run(RANK_METHOD, requests[: h2load.connections], rate - python_rate, duration_s),
            client.open_loop(kind, python_rate, duration_s, requests)
            if python_rate > 0
            else asyncio.sleep(0, Samples()),
        )
    finally:
        client.reward_share = share
    # Rank latencies are h2load's (the Python client's own overhead would blur them); rewards are Python's.
    fixed.errors.update(rewarded.errors)
    fixed.error_examples.update(rewarded.error_examples)
    fixed.reward_latencies = rewarded.reward_latencies
    fixed.reward_errors = rewarded.reward_errors
    fixed.extra_ok = len(rewarded.latencies)
    return fixed


async def _poll_backlog(client: LoadClient, every_s: float, seen: list[int]) -> None:
    while True:
        with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
            seen.append((await client.stats()).learner.backlog)
        await asyncio.sleep(every_s)


async def _drain(client: LoadClient, limit_s: float) -> float | None:
    """Seconds until the learner backlog is 0 (None when it is not within limit_s)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if (await client.stats()).learner.backlog == 0:
            return round(time.perf_counter() - started, 3)
        await asyncio.sleep(0.05)
    return None


async def run_step(
    client: LoadClient,
    server_pid: int,
    kind: str,
    rate: float,
    duration_s: float,
    requests: Sequence[bytes],
    drain_limit_s: float,
    h2load: H2Load | None = None,
) -> StepResult:
    before_stats = await client.stats() if kind == "rank" else None
    backlog_seen: list[int] = []
    poller = asyncio.create_task(_poll_backlog(client, 0.5, backlog_seen)) if kind == "rank" else None
    busy0, server_cpu0, client_cpu0 = machine_busy_seconds(), tree_cpu_seconds(server_pid), client_cpu_seconds()
    main0, wall0 = proc_cpu_seconds(server_pid, server_pid), time.perf_counter()
    samples = await drive(client, h2load, kind, rate, duration_s, requests)
    busy1, server_cpu1, client_cpu1 = machine_busy_seconds(), tree_cpu_seconds(server_pid), client_cpu_seconds()
    main1, wall1 = proc_cpu_seconds(server_pid, server_pid), time.perf_counter()
    if poller is not None:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller

    backlog_final = learned = drain_s = None
    ok = len(samples.latencies) + samples.extra_ok
    if kind == "rank" and before_stats is not None:
        after_stats = await client.stats()
        backlog_final = after_stats.learner.backlog
        learned = after_stats.learned - before_stats.learned
        drain_s = await _drain(client, drain_limit_s)
        # h2load sees HTTP statuses only; a gRPC error is a 200 too. The server's count of Ranks tells.
        unanswered = ok - (after_stats.ranks - before_stats.ranks)
        if h2load is not None and unanswered > 0:
            samples.errors["GRPC_ERROR"] += unanswered
            ok -= unanswered
    server_cpu_total = tree_cpu_seconds(server_pid) - server_cpu0  # the step and its learning drain

    elapsed = max(duration_s, samples.last_done - wall0)
    wall = wall1 - wall0
    errors = sum(samples.errors.values())
    result = StepResult(
        kind=kind,
        offered_rate=rate,
        duration_s=duration_s,
        sent=ok + errors,
        ok=ok,
        achieved_rate=round(ok / elapsed, 1),
        p50_ms=_ms(samples.latencies, 50),
        p90_ms=_ms(samples.latencies, 90),
        p95_ms=_ms(samples.latencies, 95),
        p99_ms=_ms(samples.latencies, 99),
        max_ms=_ms(samples.latencies, 100),
        mean_ms=round(float(np.mean(samples.latencies)) * 1000, 3) if ok else None,
        errors=errors,
        errors_by_code=dict(samples.errors),
        error_examples=samples.error_examples,
        launch_lag_p50_ms=_ms(samples.lags, 50) or 0.0,
        launch_lag_p99_ms=_ms(samples.lags, 99) or 0.0,
        from_launch_p50_ms=_ms(samples.wire, 50),
        from_launch_p99_ms=_ms(samples.wire, 99),
        client_cpu_cores=round((client_cpu1 - client_cpu0) / wall, 3),
        server_cpu_cores=round((server_cpu1 - server_cpu0) / wall, 3),
        server_main_thread_cores=round((main1 - main0) / wall, 3),
        other_cpu_cores=round(
            max(0.0, (busy1 - busy0) - (server_cpu1 - server_cpu0) - (client_cpu1 - client_cpu0)) / wall, 3
        ),
        server_cpu_ms_per_call=round(server_cpu_total / ok * 1000, 4) if ok else None,
    )
    result.timeline = timeline(samples)
    if kind == "rank":
        result.rewards_sent = len(samples.reward_latencies) + sum(samples.reward_errors.values())
        result.reward_p50_ms = _ms(samples.reward_latencies, 50)
        result.reward_p99_ms = _ms(samples.reward_latencies, 99)
        result.reward_errors = sum(samples.reward_errors.values())
        result.reward_errors_by_code = dict(samples.reward_errors)
        result.backlog_final = backlog_final
        result.backlog_max = max([*backlog_seen, backlog_final or 0])
        result.drain_s = drain_s
        result.learned_during_step = learned
    return result


def describe(result: StepResult) -> str:
    text = (
        f"{result.kind:6} offered {result.offered_rate:g}/s achieved {result.achieved_rate:g}/s "
        f"p50 {result.p50_ms} ms p99 {result.p99_ms} ms errors {result.errors} "
        f"lag p99 {result.launch_lag_p99_ms} ms server {result.server_cpu_cores} cores "
        f"(event loop {result.server_main_thread_cores}) "
        f"client {result.client_cpu_cores} cores other {result.other_cpu_cores} cores"
    )
    if result.kind == "rank":
        text += f" backlog {result.backlog_final} (max {result.backlog_max}) drain {result.drain_s} s"
    return text


async def wait_quiet(max_cores: float, limit_s: float, window_s: float = 2.0) -> None:
    """Wait (at most limit_s) until the whole machine used under max_cores for window_s: a shared box is noisy."""
    deadline = time.monotonic() + limit_s
    while True:
        busy0, wall0 = machine_busy_seconds(), time.monotonic()
        await asyncio.sleep(window_s)
        cores = (machine_busy_seconds() - busy0) / (time.monotonic() - wall0)
        if cores <= max_cores:
            return
        if time.monotonic() > deadline:
            log(f"the machine is still busy ({cores:.2f} cores); measuring anyway")
            return
        log(f"waiting for the machine to be quiet ({cores:.2f} cores busy)")


async def measure(args: argparse.Namespace, server_pid: int, port: int) -> list[StepResult]:
    workload = build_workload(args.scenario, args.seed, args.pool, args.actions, args.catalog, args.subjects)
    requests = workload.requests
    health = [health_pb2.HealthCheckRequest(service="").SerializeToString()]
    ranked = "catalog offers" if args.scenario == "catalog" else "candidates"
    log(
        f"scenario {args.scenario}: {len(requests)} distinct Rank requests, {args.actions} {ranked} each, "
        f"{sum(map(len, requests)) // len(requests)} bytes on average"
    )
    client = LoadClient(f"127.0.0.1:{port}", args.channels, args.timeout, args.reward_share, args.seed)
    folder = tempfile.TemporaryDirectory(prefix="kairos-h2load-")
    h2load = H2Load(port, args.channels, Path(folder.name)) if args.client == "h2load" else None
    try:
        await client.ready()
        # A short reward window, so that within a step events also close with the default reward and are
        # learned, as every unrewarded event is in steady state (the demo's 10-minute window would hide that).
        window = tpb.DecisionPoint(name=DECISION_POINT)
        window.reward_wait.FromMilliseconds(round(args.reward_wait * 1000))
        update = apb.UpdateDecisionPointRequest(decision_point=window)
        update.update_mask.paths.append("reward_wait")
        await client.admin.UpdateDecisionPoint(update, timeout=10)
        await prepare(client, workload)
        gc.collect()
        gc.freeze()  # the request pool and module objects are never collected: keep GC pauses short
        if args.warmup > 0:
            rate = min(args.rates)
            log(f"warm-up: {args.warmup:g} s of Rank and health at {rate:g}/s (not reported)")
            for kind in ("health", "rank"):
                await client.open_loop(kind, rate, args.warmup, requests if kind == "rank" else health)
            await _drain(client, args.drain_limit)
        results = []
        for rate in args.rates:
            for kind in ("health", "rank"):
                attempts: list[StepResult] = []
                while len(attempts) <= args.retries:
                    await wait_quiet(args.max_other_cores, args.quiet_wait)
                    log(f"step: {kind} at {rate:g}/s for {args.duration:g} s (attempt {len(attempts) + 1})")
                    result = await run_step(
                        client,
                        server_pid,
                        kind,
                        rate,
                        args.duration,
                        requests if kind == "rank" else health,
                        args.drain_limit,
                        h2load,
                    )
                    log(describe(result))
                    attempts.append(result)
                    await asyncio.sleep(args.pause)
                    if result.other_cpu_cores <= args.max_other_cores:
                        break
                    log(f"other processes used {result.other_cpu_cores} cores during the step; repeating it")
                best = min(attempts, key=lambda r: r.other_cpu_cores)  # the least disturbed attempt
                best.attempts = len(attempts)
                results.append(best)
        return results
    finally:
        await client.close()
        folder.cleanup()


async def prepare(client: LoadClient, workload: Workload) -> None:
    """Store what the scenario's Ranks read: profiles, and the catalog with its contact policy."""
    if workload.profiles:
        log(f"storing {len(workload.profiles)} profiles")
        started, pending = time.perf_counter(), list(workload.profiles)

        async def put(lane: int) -> None:
            stub = client.features[lane % len(client.features)]
            while pending:
                subject, groups = pending.pop()
                await stub.PutProfile(fpb.PutProfileRequest(subject_id=subject, features=groups), timeout=30)

        await asyncio.gather(*(put(lane) for lane in range(32)))
        log(f"stored in {time.perf_counter() - started:.1f} s")
    if workload.catalog:
        entries = [fpb.CatalogAction(action=action) for action in workload.catalog]
        put_actions = fpb.PutActionsRequest(decision_point=DECISION_POINT, actions=entries, replace=True)
        await client.features[0].PutActions(put_actions, timeout=30)
    if workload.contact_policy is not None:
        update = apb.UpdateDecisionPointRequest(
            decision_point=tpb.DecisionPoint(name=DECISION_POINT, contact_policy=workload.contact_policy)
        )
        update.update_mask.paths.append("contact_policy")
        await client.admin.UpdateDecisionPoint(update, timeout=10)


# -- report -----------------------------------------------------------------------


def summarise(results: Sequence[StepResult]) -> dict[str, Any]:
    by_rate: dict[float, dict[str, StepResult]] = collections.defaultdict(dict)
    for result in results:
        by_rate[result.offered_rate][result.kind] = result
    ratios = {}
    for rate, steps in by_rate.items():
        rank, health = steps.get("rank"), steps.get("health")
        if rank and health and rank.p50_ms and health.p50_ms:
            ratios[str(rate)] = round(rank.p50_ms / health.p50_ms, 2)

    def held(kind: str) -> float | None:
        good = [
            r.offered_rate
            for r in results
            if r.kind == kind
            and r.errors == 0
            and r.p99_ms is not None
            and r.p99_ms <= P99_TARGET_MS
            and r.achieved_rate >= HELD_FRACTION * r.offered_rate
        ]
        return max(good) if good else None

    return {
        "rank_p50_over_health_p50": ratios,
        "highest_rank_rate_held_p99_le_10ms": held("rank"),
        "highest_health_rate_held_p99_le_10ms": held("health"),
        "held_means": f"no errors, p99 <= {P99_TARGET_MS:g} ms, achieved >= {HELD_FRACTION:.0%} of offered",
    }


def _fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def table(results: Sequence[StepResult], summary: dict[str, Any]) -> str:
    header = (
        "offered/s",
        "call",
        "achieved/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "server CPU ms/call",
        "server cores (event loop)",
        "other cores",
        "client lag p99 ms",
        "backlog end (max)",
        "Rank p50 / health p50",
    )
    rows = []
    for r in results:
        ratio = summary["rank_p50_over_health_p50"].get(str(r.offered_rate)) if r.kind == "rank" else None
        backlog = f"{r.backlog_final} ({r.backlog_max})" if r.kind == "rank" else "-"
        rows.append(
            (
                f"{r.offered_rate:g}",
                "Rank" if r.kind == "rank" else "health",
                f"{r.achieved_rate:.0f}",
                _fmt(r.p50_ms),
                _fmt(r.p95_ms),
                _fmt(r.p99_ms),
                str(r.errors),
                _fmt(r.server_cpu_ms_per_call, 3),
                f"{_fmt(r.server_cpu_cores)} ({_fmt(r.server_main_thread_cores)})",
                _fmt(r.other_cpu_cores),
                _fmt(r.launch_lag_p99_ms),
                backlog,
                _fmt(ratio, 1),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    held = summary["highest_rank_rate_held_p99_le_10ms"]
    lines.append("")
    lines.append(
        f"Highest Rank rate held with p99 <= {P99_TARGET_MS:g} ms: "
        + (f"{held:g}/s" if held is not None else "none of the offered rates")
        + f" ({summary['held_means']})."
    )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "loadavg": os.getloadavg(),
    }


def source() -> dict[str, Any]:
    """The commit of the code under test and which of its files had uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "service", "policies", "proto").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "uncommitted_changes": changed}


def plot(results: Sequence[StepResult], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {
        ("rank", "p50_ms"): ("C0", "-"),
        ("rank", "p99_ms"): ("C0", "--"),
        ("health", "p50_ms"): ("C1", "-"),
        ("health", "p99_ms"): ("C1", "--"),
    }
    for (kind, metric), (color, line) in styles.items():
        points = [(r.offered_rate, getattr(r, metric)) for r in results if r.kind == kind and getattr(r, metric)]
        if points:
            xs, ys = zip(*points, strict=True)
            label = f"{'Rank' if kind == 'rank' else 'health Check'} {metric.split('_')[0]}"
            ax.plot(xs, ys, line, color=color, marker="o", label=label)
    ax.axhline(P99_TARGET_MS, color="grey", linewidth=0.8, linestyle=":", label=f"{P99_TARGET_MS:g} ms")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.set_xlabel("offered rate (calls/s, open loop)")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.set_title("Kairos: Rank (24 actions) vs health Check latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# -- command line -----------------------------------------------------------------


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give rates as numbers separated by commas (250,500)") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def _cpus(text: str) -> set[int]:
    try:
        return {int(part) for part in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give CPU numbers separated by commas (0,1)") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=None,
        help=f"offered rates in calls/s, comma separated (default {','.join(map(str, DEFAULT_RATES))})",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per step (default 10)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: rates {','.join(map(str, QUICK_RATES))}, 3 s per step, 1 s warm-up "
        "(--rates/--duration still win)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of unreported Rank and health load at the lowest rate first (default 3)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="directory for load.json and load.png (default bench-results/)",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="inline",
        help="inline: candidates and all context in the request; profile: candidates, a subject_id whose "
        "stored profile joins a little live context; catalog: only subject_id and live context, the "
        "decision point's catalog of --actions offers ranked under a contact policy (default inline; see "
        "benchmarks/workload.py)",
    )
    parser.add_argument(
        "--subjects",
        type=int,
        default=10_000,
        help="profiles stored before the run, each ranked in turn (profile and catalog scenarios; default 10000)",
    )
    parser.add_argument(
        "--actions",
        type=int,
        default=24,
        help="candidate actions per Rank, or the catalog's size in the catalog scenario (default 24)",
    )
    parser.add_argument(
        "--catalog", type=int, default=200, help="size of the offer catalog the candidates are drawn from (default 200)"
    )
    parser.add_argument("--pool", type=int, default=1000, help="distinct Rank requests, cycled (default 1000)")
    parser.add_argument(
        "--reward-share",
        type=float,
        default=0.2,
        help="share of ranked events that get a Reward right after (default 0.2)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=16,
        help="TCP connections per client, used round-robin (default 16: with --workers the kernel spreads "
        "connections, not calls, over the worker processes, so a few connections can load one worker only)",
    )
    parser.add_argument(
        "--client",
        choices=("h2load", "python"),
        default=None,
        help="who sends the calls: h2load (from nghttp2-client; the default when installed) sends the health "
        "checks and the unrewarded Ranks while this process sends the rewarded ones; python sends everything "
        "from this process (costs the shared machine more CPU per call; the only client of the profile and "
        "catalog scenarios, since h2load would rank the same 16 subjects, one per connection, again and again: "
        "their contact histories fill up and their frequency caps bind within seconds)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline of each call in seconds (default 5)")
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=60.0,
        help="after each Rank step, wait at most this long for the learner backlog to reach 0 (default 60)",
    )
    parser.add_argument("--pause", type=float, default=0.5, help="seconds of quiet between steps (default 0.5)")
    parser.add_argument(
        "--reward-wait",
        type=float,
        default=1.0,
        help="reward window of the decision point in seconds (default 1): unrewarded events close with the "
        "default reward and are learned within the step, as in steady state",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated workload (default 7)")
    parser.add_argument(
        "--max-other-cores",
        type=float,
        default=0.15,
        help="before each step wait until the machine is this quiet, and repeat a step during which other "
        "processes used more CPU than this, in cores (default 0.15)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="repeat a disturbed step at most this often; the least disturbed attempt is reported (default 3)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=300.0, help="wait at most this long for quiet before a step (default 300)"
    )
    parser.add_argument(
        "--max-p99-ms",
        type=float,
        default=None,
        help="exit 1 if a Rank step has errors or a p99 above this (CI's generous regression margin)",
    )
    parser.add_argument(
        "--server-cpus",
        type=_cpus,
        default=None,
        help="pin the server process to these CPUs (e.g. 0); default: no pinning",
    )
    parser.add_argument(
        "--client-cpus",
        type=_cpus,
        default=None,
        help="pin this load generator to these CPUs (e.g. 1); default: no pinning",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `kairos serve` (repeat; e.g. --server-arg=--sync-commits)",
    )
    parser.add_argument(
        "--server-command",
        default=None,
        metavar="CMD",
        help="run the server with this command instead of `kairos` (it gets `serve ...` appended; its process "
        "must be the server itself, as the CPU is read from its pid)",
    )
    args = parser.parse_args(argv)
    if args.rates is None:
        args.rates = list(QUICK_RATES if args.quick else DEFAULT_RATES)
    if args.client is None:
        args.client = "h2load" if shutil.which("h2load") and args.scenario == "inline" else "python"
    if args.scenario != "inline" and args.client == "h2load":
        parser.error(
            f"the {args.scenario} scenario needs --client python: h2load repeats one request per connection, "
            "so 16 subjects would be ranked dozens of times a second each (their contact histories fill up "
            "and frequency caps bind), which no real customer base does"
        )
    if args.scenario != "inline" and args.subjects < 1:
        parser.error("--subjects must be at least 1")
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 3.0
    if args.duration <= 0 or args.actions < 1 or args.actions > args.catalog or args.channels < 1:
        parser.error("need --duration > 0, 1 <= --actions <= --catalog and --channels >= 1")
    if not 0.0 <= args.reward_share <= 1.0:
        parser.error("--reward-share must be within [0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client_cpus is not None:
        os.sched_setaffinity(0, args.client_cpus)
    started, code, before = datetime.now(UTC), source(), machine()  # the server imports the code as it is now
    prefix = shlex.split(args.server_command) if args.server_command else None
    with running_server(args.server_arg, args.server_cpus, prefix) as (process, port):
        results = asyncio.run(measure(args, process.pid, port))
    summary = summarise(results)
    report = {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.load", *(argv if argv is not None else sys.argv[1:])]),
        "machine": before,
        "loadavg_at_end": os.getloadavg(),
        "source": code,
        "config": {
            "rates": args.rates,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "scenario": args.scenario,
            "subjects": args.subjects if args.scenario != "inline" else None,
            "actions": args.actions,
            "catalog": args.catalog,
            "pool": args.pool,
            "reward_share": args.reward_share,
            "reward_wait_s": args.reward_wait,
            "channels": args.channels,
            "client": args.client,
            "timeout_s": args.timeout,
            "seed": args.seed,
            "server_cpus": sorted(args.server_cpus) if args.server_cpus else None,
            "client_cpus": sorted(args.client_cpus) if args.client_cpus else None,
            "server_args": args.server_arg,
            "server_command": args.server_command,
            "max_other_cores": args.max_other_cores,
            "retries": args.retries,
        },
        "summary": summary,
        "steps": [asdict(r) for r in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(results, summary))
    wrote = [str(args.out / "load.json")]
    if plot(results, args.out / "load.png"):
        wrote.append(str(args.out / "load.png"))
    log(f"wrote {', '.join(wrote)}")
    return 1 if args.max_p99_ms is not None and not within_limits(results, args.max_p99_ms) else 0


def within_limits(results: Sequence[StepResult], max_p99_ms: float) -> bool:
    """CI's regression check: every Rank step answered without errors and with p99 under the margin."""
    ok = True
    for r in results:
        if r.kind == "rank" and (r.errors or r.reward_errors or r.p99_ms is None or r.p99_ms > max_p99_ms):
            log(f"FAIL: Rank at {r.offered_rate:g}/s: p99 {r.p99_ms} ms (limit {max_p99_ms:g}), errors {r.errors}")
            ok = False
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
