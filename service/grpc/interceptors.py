"""The canonical line per call and the call metrics, as a gRPC server interceptor.

It wraps every Kairos method (health and reflection pass untouched), so calls refused before they
reach a servicer, by authentication for instance, are counted and logged like the rest. A streaming
call (RankStream, ExportDecisions) is one call: one line when it ends, with the messages it sent, and
its whole duration in the metrics.
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from service import tokens
from service.grpc import auth
from service.metrics import RpcMetrics

log = structlog.get_logger("kairos.rpc")
KAIROS_PREFIX = "/kairos."


def _status(context: grpc.aio.ServicerContext, raised: bool) -> str:
    code = context.code()
    if code is None:
        if not raised:
            return "OK"
        return "CANCELLED" if context.cancelled() else "UNKNOWN"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


def _decision_point(request: Any) -> str | None:
    found = getattr(request, "decision_point", None)
    if found is not None and not isinstance(found, str):  # CreateDecisionPoint sends the whole message
        found = getattr(found, "name", None)
    return found or getattr(request, "name", None) or None


class CallLogInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every call in ``metrics`` and logs one ``rpc`` line per call: every failed call, and
    the share ``sample_ok`` of the successful ones (the line costs more than the rest together)."""

    def __init__(self, metrics: RpcMetrics, sample_ok: float = 1.0, rng: random.Random | None = None) -> None:
        self.metrics = metrics
        self.sample_ok = sample_ok
        self._random = (rng or random.Random()).random

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(KAIROS_PREFIX):
            return handler
        name = method.rsplit("/", 1)[1]
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap(name, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._wrap_stream(name, handler.unary_stream))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=self._wrap_stream(name, handler.stream_stream))
        return handler

    def _wrap(
        self, name: str, inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            self.metrics.started += 1
            self.metrics.in_flight += 1
            # Request-scoped context: every line logged while serving this call names it (each call
            # runs in its own task, so this never leaks into another call).
            structlog.contextvars.bind_contextvars(rpc=name)
            response = None
            raised = True
            try:
                response = await inner(request, context)
                raised = False
                return response
            finally:
                self.metrics.in_flight -= 1
                seconds = time.perf_counter() - started
                status = _status(context, raised)
                self.metrics.observe(name, status, seconds)
                if status != "OK" or self.sample_ok >= 1.0 or self._random() < self.sample_ok:
                    self._log(name, request, response, context, status, seconds)

        return behavior

    def _wrap_stream(
        self, name: str, inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any] | Awaitable[None]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            self.metrics.started += 1
            self.metrics.in_flight += 1
            structlog.contextvars.bind_contextvars(rpc=name)
            sent = 0
            raised = True
            try:
                produced = inner(request, context)
                if inspect.isawaitable(produced):  # a call refused before its servicer (authentication) aborts
                    await produced
                else:
                    async for response in produced:
                        sent += 1
                        yield response
                raised = False
            finally:
                self.metrics.in_flight -= 1
                seconds = time.perf_counter() - started
                status = _status(context, raised)
                self.metrics.observe(name, status, seconds)
                if status != "OK" or self.sample_ok >= 1.0 or self._random() < self.sample_ok:
                    logged = request if hasattr(request, "DESCRIPTOR") else None  # a client stream is no message
                    self._log(name, logged, None, context, status, seconds, messages=sent)

        return behavior

    def _log(
        self,
        name: str,
        request: Any,
        response: Any,
        context: grpc.aio.ServicerContext,
        status: str,
        seconds: float,
        messages: int | None = None,
    ) -> None:
        caller = auth.current_caller()
        streamed = {} if messages is None else {"messages": messages}
        log.info(
            "rpc",
            **streamed,
            method=name,
            decision_point=_decision_point(request),  # None for a client stream: its requests are many
            event_id=getattr(request, "event_id", None) or getattr(response, "event_id", None) or None,
            status=status,
            ms=round(seconds * 1000, 3),
            peer=(caller.forwarded_peer if caller else None) or context.peer(),
            caller=caller.principal.name if caller else None,
        )


def server_interceptors(
    sample_ok: float,
    metrics: RpcMetrics,
    table: tokens.TokenTable | None,
    trust_forwarded_peer: bool = False,
) -> list[grpc.aio.ServerInterceptor]:
    """Logging and metrics outermost, so refused calls are counted too; then authentication."""
    return [CallLogInterceptor(metrics, sample_ok), auth.AuthInterceptor(table, trust_forwarded_peer)]
