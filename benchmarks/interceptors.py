"""What the server interceptors (canonical log line, metrics, token check) add to one call, in process.

Runs the interceptor chain the way grpc.aio does, around a handler that returns at once, and compares
it with calling the handler directly; logs are rendered as JSON (production) into /dev/null.

    python -m benchmarks.interceptors [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog

from service import log_setup, tokens
from service._pb.kairos.v1 import decision_service_pb2 as dpb
from service.grpc.interceptors import server_interceptors
from service.metrics import RpcMetrics

METHOD = "/kairos.v1.DecisionService/Rank"
TOKEN = "t" * 32


class _Details:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = METHOD
        self.invocation_metadata = metadata


class _Context:
    def code(self) -> grpc.StatusCode | None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"


async def _handler(request: Any, context: Any) -> dpb.RankResponse:
    return dpb.RankResponse(event_id="e" * 32)


def _chain(interceptors: list[Any]) -> Callable[[Any], Awaitable[Any]]:
    async def innermost(details: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(_handler)

    chain: Callable[[Any], Awaitable[Any]] = innermost
    for interceptor in reversed(interceptors):

        def link(details: Any, interceptor: Any = interceptor, inner: Any = chain) -> Awaitable[Any]:
            return interceptor.intercept_service(inner, details)

        chain = link
    return chain


async def _per_call_us(interceptors: list[Any] | None, calls: int, metadata: tuple[tuple[str, str], ...]) -> float:
    request, context, details = dpb.RankRequest(decision_point="demo"), _Context(), _Details(metadata)
    chain = _chain(interceptors or [])
    started = time.perf_counter()
    for _ in range(calls):
        if interceptors is None:
            await _handler(request, context)
        else:
            handler = await chain(details)
            await handler.unary_unary(request, context)
    return (time.perf_counter() - started) / calls * 1e6


async def measure(calls: int) -> dict[str, float]:
    table = tokens.parse(f"bench serve {TOKEN}", "bench")
    auth = (("authorization", f"Bearer {TOKEN}"), ("user-agent", "grpc-python"))
    cases: dict[str, tuple[list[Any] | None, tuple[tuple[str, str], ...]]] = {
        "handler alone": (None, ()),
        "interceptors, auth off, no log line": (server_interceptors(0.0, RpcMetrics(), None), ()),
        "interceptors, auth off, log line": (server_interceptors(1.0, RpcMetrics(), None), ()),
        "interceptors, token checked, log line": (server_interceptors(1.0, RpcMetrics(), table), auth),
        "interceptors, token checked, no log line": (server_interceptors(0.0, RpcMetrics(), table), auth),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(5):  # interleaved rounds, medians: the machine is noisy
        for name, (interceptors, metadata) in cases.items():
            results[name].append(await _per_call_us(interceptors, calls, metadata))
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    log_setup.configure("json", "info")
    with open(os.devnull, "w") as sink:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sink), cache_logger_on_first_use=False)
        medians = asyncio.run(measure(args.calls))
    base = medians["handler alone"]
    for name, value in medians.items():
        print(f"{name:45s} {value:7.2f} us/call  (+{value - base:6.2f})")


if __name__ == "__main__":
    main()
