"""The gRPC server: services, health, reflection, limits."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service._pb.kairos.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    decision_service_pb2,
    decision_service_pb2_grpc,
)
from service.grpc.servicers import AdminServicer, DecisionServicer
from service.metrics import RpcMetrics
from service.plane import DecisionPlane
from service.settings import Settings

SERVICE_NAMES = (
    decision_service_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


def build(
    plane: DecisionPlane, settings: Settings, ready: Callable[[], bool], metrics: RpcMetrics
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A configured server (not started), its health servicer, and the bound port."""
    server = grpc.aio.server(
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", max(settings.max_message_bytes, 64 * 1024 * 1024)),
            ("grpc.so_reuseport", 0),
        ],
    )
    decision_service_pb2_grpc.add_DecisionServiceServicer_to_server(DecisionServicer(plane, ready, metrics), server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(plane, ready, metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(
            f"cannot listen on {settings.host}:{settings.port}; is another server using that port? "
            "Choose another with --port (0 picks a free one)"
        )
    return server, health_servicer, port


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, status)
