"""The interceptor chain on its own: every call counted, failed calls always logged, successful ones
sampled; tokens checked before the handler runs; the caller visible to the handler."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from structlog.testing import capture_logs

from service import tokens
from service.grpc import auth
from service.grpc.interceptors import server_interceptors
from service.metrics import RpcMetrics

TOKEN = "k" * 24


class Aborted(Exception):
    pass


class FakeContext:
    """What the interceptors use of grpc.aio.ServicerContext."""

    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def cancelled(self) -> bool:
        return False

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> None:
        self._code = code
        raise Aborted(details)


class Details:
    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.method, self.invocation_metadata = method, metadata


def call(interceptors: list[Any], method: str, metadata: tuple[tuple[str, str], ...] = ()) -> tuple[str, Any]:
    seen: list[Any] = []

    async def handler(request: Any, context: Any) -> str:
        seen.append(auth.current_caller())
        return "answer"

    async def run() -> str:
        async def innermost(details: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(handler)

        async def second(details: Any) -> grpc.RpcMethodHandler:
            return await interceptors[1].intercept_service(innermost, details)

        found = await interceptors[0].intercept_service(second, Details(method, metadata))
        try:
            return str(await found.unary_unary(object(), FakeContext()))
        except Aborted:
            return "aborted"

    return asyncio.run(run()), seen[0] if seen else None


def test_sampling_never_hides_failed_calls() -> None:
    metrics = RpcMetrics()
    table = tokens.parse(f"web serve {TOKEN}", "test")
    chain = server_interceptors(0.0, metrics, table)
    good = (("authorization", f"Bearer {TOKEN}"),)
    with capture_logs() as logs:
        for _ in range(3):
            assert call(chain, "/kairos.v1.DecisionService/Rank", good)[0] == "answer"
        assert call(chain, "/kairos.v1.DecisionService/Rank")[0] == "aborted"
        assert call(chain, "/kairos.v1.AdminService/GetStats", good)[0] == "aborted"
    assert metrics.calls == {("Rank", "OK"): 3, ("Rank", "UNAUTHENTICATED"): 1, ("GetStats", "PERMISSION_DENIED"): 1}
    assert [(line["method"], line["status"]) for line in logs if line["event"] == "rpc"] == [
        ("Rank", "UNAUTHENTICATED"),
        ("GetStats", "PERMISSION_DENIED"),
    ]


def test_the_handler_sees_its_caller_and_open_methods_need_no_token() -> None:
    table = tokens.parse(f"web serve {TOKEN}", "test")
    chain = server_interceptors(1.0, RpcMetrics(), table)
    answer, caller = call(chain, "/kairos.v1.DecisionService/Rank", (("authorization", f"bearer {TOKEN}"),))
    assert answer == "answer" and caller.principal.name == "web"
    with capture_logs() as logs:
        answer, caller = call(chain, "/grpc.health.v1.Health/Check")
    assert answer == "answer" and caller is None
    assert logs == []  # health checks are neither logged nor counted
    open_chain = server_interceptors(1.0, RpcMetrics(), None)
    assert call(open_chain, "/kairos.v1.AdminService/GetStats")[1].principal == tokens.ANONYMOUS
