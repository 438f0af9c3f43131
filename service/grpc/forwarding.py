"""Servicers of a serving worker: Rank locally, everything else passed through to the learning process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from policies.features import UnknownNamespace
from service._pb.kairos.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    decision_service_pb2_grpc,
    feature_service_pb2,
    feature_service_pb2_grpc,
)
from service.errors import KairosError
from service.grpc import auth, converters
from service.grpc.servicers import ForwardedError, rank_deadline, ranked, rpc, rpc_stream
from service.plane import DecisionPlane
from service.replica import Replica


def _passed_on(context: grpc.aio.ServicerContext) -> list[tuple[str, str]]:
    """The caller's token (the learning process authenticates it again, and knows who changed what)
    and address."""
    metadata = [(key, value) for key, value in context.invocation_metadata() or () if key == "authorization"]
    return [*metadata, (auth.FORWARDED_PEER, context.peer())]


async def forward(call: Callable[..., Awaitable[Any]], request: Any, context: grpc.aio.ServicerContext) -> Any:
    remaining = context.time_remaining()
    try:
        return await call(request, timeout=remaining if remaining is not None else 30.0, metadata=_passed_on(context))
    except grpc.aio.AioRpcError as err:
        trailers = tuple(err.trailing_metadata() or ())
        raise ForwardedError(err.code(), err.details() or "", trailers) from None


async def forward_stream(
    call: Callable[..., Any], request: Any, context: grpc.aio.ServicerContext
) -> AsyncIterator[Any]:
    """Pass a server-streaming call through, response by response (no deadline unless the caller set one)."""
    try:
        async for response in call(request, timeout=context.time_remaining(), metadata=_passed_on(context)):
            yield response
    except grpc.aio.AioRpcError as err:
        trailers = tuple(err.trailing_metadata() or ())
        raise ForwardedError(err.code(), err.details() or "", trailers) from None


class ForwardingDecisionServicer(decision_service_pb2_grpc.DecisionServiceServicer):
    def __init__(
        self,
        plane: DecisionPlane,
        replica: Replica,
        ready: Callable[[], bool],
        primary: grpc.aio.Channel,
    ) -> None:
        self.plane, self.replica, self.ready = plane, replica, ready
        self.primary = decision_service_pb2_grpc.DecisionServiceStub(primary)

    @rpc("Rank")
    async def Rank(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        deadline = rank_deadline(context)
        for first_try in (True, False):
            try:
                return ranked(self.plane.rank(converters.rank_input(request, deadline)), context)
            except UnknownNamespace:
                # Only the learning process indexes new namespaces; once it has, this worker ranks them too.
                return await forward(self.primary.Rank, request, context)
            except KairosError as error:
                if error.reason != "DECISION_POINT_NOT_FOUND" or not first_try:
                    raise
                self.replica.refresh()  # created a moment ago through another process?
        raise AssertionError("unreachable")

    async def RankStream(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """Passed through whole: the learning process ranks the batch (it owns new namespaces, too)."""
        call = self.primary.RankStream(requests, metadata=_passed_on(context))
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "", trailing_metadata=tuple(err.trailing_metadata() or ()))

    @rpc("RankSlots")
    async def RankSlots(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        # Passed through: the learning process owns the namespace table, which a slot's first use extends.
        return await forward(self.primary.RankSlots, request, context)

    @rpc("Reward")
    async def Reward(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await forward(self.primary.Reward, request, context)

    @rpc("Activate")
    async def Activate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await forward(self.primary.Activate, request, context)


def forwarding_admin_servicer(
    ready: Callable[[], bool], primary: grpc.aio.Channel
) -> admin_service_pb2_grpc.AdminServiceServicer:
    """An AdminService whose every method is the learning process's (it owns the decision points)."""
    servicer: admin_service_pb2_grpc.AdminServiceServicer = _forwarding_servicer(
        admin_service_pb2, "AdminService", admin_service_pb2_grpc, ready, primary
    )
    return servicer


def forwarding_feature_servicer(
    ready: Callable[[], bool], primary: grpc.aio.Channel
) -> feature_service_pb2_grpc.FeatureServiceServicer:
    """A FeatureService passed through to the learning process (so catalog changes are checked against the
    decision points it owns)."""
    servicer: feature_service_pb2_grpc.FeatureServiceServicer = _forwarding_servicer(
        feature_service_pb2, "FeatureService", feature_service_pb2_grpc, ready, primary
    )
    return servicer


def _forwarding_servicer(module: Any, service: str, grpc_module: Any, ready: Callable[[], bool], primary: Any) -> Any:
    stub = getattr(grpc_module, f"{service}Stub")(primary)
    methods: dict[str, Any] = {"ready": staticmethod(ready)}
    for method in module.DESCRIPTOR.services_by_name[service].methods:

        def make(name: str) -> Any:
            async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
                return await forward(getattr(stub, name), request, context)

            return rpc(name)(handler)

        def make_stream(name: str) -> Any:
            async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for response in forward_stream(getattr(stub, name), request, context):
                    yield response

            return rpc_stream(name)(handler)

        methods[method.name] = make_stream(method.name) if method.server_streaming else make(method.name)
    cls = type(f"Forwarding{service}Servicer", (getattr(grpc_module, f"{service}Servicer"),), methods)
    return cls()
