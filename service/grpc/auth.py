"""Bearer-token authentication and scopes as a gRPC server interceptor; TLS credentials.

Each call to a Kairos service must carry ``authorization: Bearer <token>`` metadata whose token has the
method's scope (see ``scope_of``). Health checks and reflection stay open: orchestrators probe them
without credentials. The caller found here is kept in a context variable for the call's log line and
for audit records.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from service import tokens
from service.errors import Code, KairosError
from service.grpc.errors import status_of
from service.settings import Settings

OPEN_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)
SERVICE_SCOPES = {
    "kairos.v1.DecisionService": tokens.SERVE,
    "kairos.v1.AdminService": tokens.ADMIN,
    "kairos.v1.FeatureService": tokens.ADMIN,  # profile import/delete and export
}
METHOD_SCOPES = {"/kairos.v1.FeatureService/TrackEvent": tokens.SERVE}
# A worker passes its caller's address on to the learning process under this key; only the
# learning process's private socket trusts it.
FORWARDED_PEER = "x-kairos-forwarded-peer"


@dataclass(frozen=True)
class Caller:
    principal: tokens.Principal
    forwarded_peer: str | None = None


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("kairos_caller", default=None)


def current_caller() -> Caller | None:
    """The authenticated caller of the call being served (None outside a Kairos call)."""
    return _caller.get()


def scope_of(method: str) -> str | None:
    """The scope ``method`` (``/package.Service/Method``) needs; None when it is open to everyone.
    Services not listed need ``admin``: deny by default."""
    if method in METHOD_SCOPES:
        return METHOD_SCOPES[method]
    service = method[1:].split("/", 1)[0]
    if service in OPEN_SERVICES:
        return None
    return SERVICE_SCOPES.get(service, tokens.ADMIN)


def _denied(handler: grpc.RpcMethodHandler, error: KairosError) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour replaced by an error status (the same kind of method, so the
    request is still decoded the usual way)."""
    code, message, trailers = status_of(error)

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message, trailing_metadata=trailers)

    kind = next(k for k in ("unary_unary", "unary_stream", "stream_unary", "stream_stream") if getattr(handler, k))
    return handler._replace(**{kind: deny})


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, table: tokens.TokenTable | None, trust_forwarded_peer: bool = False) -> None:
        """``table`` None: authentication is off, every call is ``anonymous`` with every scope."""
        self.table = table
        self.trust_forwarded_peer = trust_forwarded_peer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        scope = scope_of(method)
        if scope is None:
            return await continuation(details)
        authorization = forwarded = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                authorization = value
            elif key == FORWARDED_PEER and self.trust_forwarded_peer:
                forwarded = value
        error = None
        principal = tokens.ANONYMOUS
        if self.table is not None:
            principal, error = self._authenticate(authorization, method, scope)
        handler = await continuation(details)
        if error is not None and handler is not None:
            return _denied(handler, error)
        _caller.set(Caller(principal, forwarded))
        return handler

    def _authenticate(
        self, authorization: str | None, method: str, scope: str
    ) -> tuple[tokens.Principal, KairosError | None]:
        assert self.table is not None
        if authorization is None:
            return tokens.ANONYMOUS, KairosError(
                Code.UNAUTHENTICATED,
                "MISSING_TOKEN",
                "this call needs a token: send the metadata 'authorization: Bearer <token>' "
                "with a token from the server's tokens file",
            )
        kind, _, presented = authorization.partition(" ")
        principal = self.table.lookup(presented.strip()) if kind.lower() == "bearer" else None
        if principal is None:
            return tokens.ANONYMOUS, KairosError(
                Code.UNAUTHENTICATED,
                "INVALID_TOKEN",
                "the bearer token is not valid: check it against the server's tokens file "
                "(metadata 'authorization: Bearer <token>')",
            )
        if scope not in principal.scopes:
            return principal, KairosError(
                Code.PERMISSION_DENIED,
                "MISSING_SCOPE",
                f"the token {principal.name!r} lacks the scope {scope!r} that {method[1:]} needs; "
                f"use a token with the {scope!r} scope",
                {"scope": scope},
            )
        return principal, None


def token_table(settings: Settings) -> tokens.TokenTable | None:
    """The configured tokens; None when authentication is off, which only a loopback address or an
    explicit ``allow_unauthenticated`` permits. Raises SecurityConfigError otherwise."""
    table = tokens.load(settings.auth_tokens_file, settings.auth_tokens)
    if len(table):
        return table
    if tokens.is_loopback(settings.host) or settings.allow_unauthenticated:
        return None
    raise tokens.SecurityConfigError(
        f"no authentication tokens are configured and Kairos would listen on {settings.host}, "
        "reachable from other machines: set auth_tokens_file (KAIROS_AUTH_TOKENS_FILE) or KAIROS_AUTH_TOKENS, "
        "or allow_unauthenticated=true if something in front of Kairos authenticates callers"
    )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for the public port when a certificate is configured; with a client CA, mutual TLS."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise tokens.SecurityConfigError("tls_client_ca_file needs tls_cert_file and tls_key_file as well")
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise tokens.SecurityConfigError("TLS needs both tls_cert_file and tls_key_file")
    try:
        key, cert = settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes()
        client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    except OSError as err:
        raise tokens.SecurityConfigError(f"cannot read a TLS file: {err.filename}: {err.strerror}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
