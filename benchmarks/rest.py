"""REST Rank (the Personalizer API) against gRPC Rank: p50 latency at a fixed rate, side by side.

One `kairos serve` with its HTTP port; the same Rank requests (load.py's: 15 context features, 10
actions with 5 features each) go out as gRPC messages and as Personalizer JSON, open-loop at --rate,
in alternating rounds so both protocols see the same machine. The REST API is meant to stay within
--max-ratio (1.5x) of gRPC's p50.

  python -m benchmarks.rest                      # 500 Rank/s, 60 s per protocol
  python -m benchmarks.rest --duration 2 --out /tmp/rest   # a smoke run

Only meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np

from benchmarks import load, workload
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service._pb.kairos.v1 import types_pb2 as tpb

ROUNDS = 3  # alternating rounds per protocol


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _value(value: tpb.FeatureValue) -> str | float | bool | None:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


def _groups(groups: Sequence[tpb.FeatureGroup]) -> list[dict[str, dict[str, Any]]]:
    return [{g.namespace: {name: _value(v) for name, v in g.features.items()}} for g in groups]


def personalizer_json(serialized: bytes) -> bytes:
    """A gRPC RankRequest as the Personalizer rank body with the same features."""
    request = dpb.RankRequest.FromString(serialized)
    body = {
        "contextFeatures": _groups(request.context),
        "actions": [{"id": a.id, "features": _groups(a.features)} for a in request.actions],
    }
    return json.dumps(body).encode()


async def open_loop(call: Callable[[int], Awaitable[None]], rate: float, seconds: float) -> tuple[list[float], int]:
    """Send at ``rate`` per second for ``seconds`` whatever the answers take; latencies (ms) and errors."""
    latencies: list[float] = []
    errors = 0

    async def one(number: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            await call(number)
        except Exception:
            errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    start = time.perf_counter()
    for number in range(round(rate * seconds)):
        delay = start + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number)))
    await asyncio.gather(*tasks)
    return latencies, errors


def percentiles(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99)}


async def measure(args: argparse.Namespace, grpc_port: int, http_port: int) -> dict[str, Any]:
    requests = workload.build_rank_requests(args.seed, 200, args.actions, 500)
    bodies = [personalizer_json(r) for r in requests]
    url = f"http://127.0.0.1:{http_port}/dp/{workload.DECISION_POINT}/personalizer/rank?api-version=2022-09-01-preview"
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    rank = channel.unary_unary(load.RANK_METHOD, request_serializer=None, response_deserializer=None)
    connector = aiohttp.TCPConnector(limit=args.connections)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def grpc_call(number: int) -> None:
            await rank(requests[number % len(requests)], timeout=5)

        async def rest_call(number: int) -> None:
            async with session.post(url, data=bodies[number % len(bodies)], headers=headers) as response:
                await response.read()
                if response.status != 201:
                    raise RuntimeError(f"REST rank answered {response.status}")

        calls = {"grpc": grpc_call, "rest": rest_call}
        load.log(f"warm-up: {args.warmup:g} s per protocol")
        for call in calls.values():
            await open_loop(call, args.rate, args.warmup)
        found: dict[str, list[float]] = {name: [] for name in calls}
        failed = dict.fromkeys(calls, 0)
        for round_number in range(ROUNDS):
            for name, call in calls.items():
                latencies, errors = await open_loop(call, args.rate, args.duration / ROUNDS)
                found[name] += latencies
                failed[name] += errors
                load.log(f"round {round_number + 1}/{ROUNDS} {name}: p50 {np.median(latencies or [0]):.2f} ms")
    await channel.close()
    summary = {
        name: {**percentiles(found[name]), "requests": len(found[name]), "errors": failed[name]} for name in calls
    }
    grpc_p50, rest_p50 = summary["grpc"]["p50_ms"], summary["rest"]["p50_ms"]
    ratio = rest_p50 / grpc_p50 if grpc_p50 and rest_p50 else None
    return {
        "rate": args.rate,
        "duration_s_per_protocol": args.duration,
        "actions": args.actions,
        "results": summary,
        "rest_over_grpc_p50": ratio,
        "max_ratio": args.max_ratio,
        "passed": ratio is not None and ratio <= args.max_ratio and not any(failed.values()),
        "machine": load.machine(),
        "source": load.source(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="Rank requests per second (default 500)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measurement per protocol")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per protocol (default 5)")
    parser.add_argument("--actions", type=int, default=10, help="actions per Rank (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="HTTP keep-alive connections (default 8)")
    parser.add_argument("--max-ratio", type=float, default=1.5, help="REST p50 / gRPC p50 allowed (default 1.5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder of rest.json")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(5.0, args.duration)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    http_port = free_port()
    with load.running_server(["--http-port", str(http_port)], None) as (_, grpc_port):
        report = asyncio.run(measure(args, grpc_port, http_port))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rest.json").write_text(json.dumps(report, indent=2) + "\n")
    grpc_p50, rest_p50 = report["results"]["grpc"]["p50_ms"], report["results"]["rest"]["p50_ms"]
    print(
        f"Rank p50 at {args.rate:g}/s: gRPC {grpc_p50:.2f} ms, REST {rest_p50:.2f} ms, "
        f"ratio {report['rest_over_grpc_p50']:.2f} (limit {args.max_ratio:g}): "
        + ("PASS" if report["passed"] else "FAIL")
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
