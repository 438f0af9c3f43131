"""The gRPC server: services, health, reflection, limits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service._pb.kairos.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    decision_service_pb2,
    decision_service_pb2_grpc,
    feature_service_pb2,
    feature_service_pb2_grpc,
)
from service.audit import AuditLog
from service.grpc import auth
from service.grpc.servicers import AdminServicer, DecisionServicer, FeatureServicer
from service.plane import DecisionPlane
from service.settings import Settings

SERVICE_NAMES = (
    decision_service_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    feature_service_pb2.DESCRIPTOR.services_by_name["FeatureService"].full_name,
)


def build(
    settings: Settings,
    servicers: Sequence[tuple[Callable[[Any, grpc.aio.Server], None], Any]],
    address: str | None = None,
    share_port: bool = False,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A configured server (not started) with ``servicers`` (adder, servicer), health and reflection,
    listening on ``address`` (default host:port, with TLS when configured; a private ``address``
    stays plaintext); ``share_port`` lets worker processes bind the same port."""
    server = grpc.aio.server(
        interceptors=interceptors,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", max(settings.max_message_bytes, 64 * 1024 * 1024)),
            ("grpc.so_reuseport", 1 if share_port else 0),
        ],
    )
    for add, servicer in servicers:
        add(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    credentials = auth.server_credentials(settings) if address is None else None
    address = address or f"{settings.host}:{settings.port}"
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(
            f"cannot listen on {address}; is another server using that port? "
            "Choose another with --port (0 picks a free one)"
        )
    return server, health_servicer, port


def serving_servicers(
    plane: DecisionPlane, ready: Callable[[], bool], audit: AuditLog
) -> list[tuple[Callable[[Any, grpc.aio.Server], None], Any]]:
    """The services of the process that owns the decision points."""
    return [
        (decision_service_pb2_grpc.add_DecisionServiceServicer_to_server, DecisionServicer(plane, ready)),
        (admin_service_pb2_grpc.add_AdminServiceServicer_to_server, AdminServicer(plane, ready, audit)),
        (feature_service_pb2_grpc.add_FeatureServiceServicer_to_server, FeatureServicer(plane, ready, audit)),
    ]


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, status)
