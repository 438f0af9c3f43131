"""Every knob of the service, typed and documented.

Values come from, in increasing priority: the defaults below, ``KAIROS_*``
environment variables (``KAIROS_PORT=50052``), the ``[server]`` table of the
config file, and command-line flags. This is the only module that reads
``os.environ``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "KAIROS_"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    """Address to listen on (the container uses 0.0.0.0)."""
    port: int = 50051
    """gRPC port; 0 picks a free one (see port_file)."""
    http_port: int = 0
    """Port of the HTTP server: Prometheus /metrics, /healthz and the Personalizer-compatible REST API
    under /dp/NAME/personalizer; 0 turns it off."""
    data_dir: Path = Path("kairos-data")
    """Directory of the LMDB database and model checkpoints."""
    workers: int = 1
    """Serving processes. 1: one process serves and learns. N > 1: N worker processes share the port
    (SO_REUSEPORT) and answer Rank from model snapshots the learning process publishes every second;
    Reward, Activate and Admin calls pass through to the learning process."""
    config: Path | None = None
    """TOML file declaring decision points (and [server] settings), applied at every start."""
    demo: bool = True
    """Create the decision point `demo` at start when it does not exist."""
    port_file: Path | None = None
    """Write the bound port here once the server is SERVING (for scripts and tests)."""
    sync_commits: bool = False
    """fsync every LMDB commit. Off: acknowledged data survives kill -9 (OS page cache), and an OS crash
    or power loss can lose up to sync_interval_s of it. On: survives power loss, ~200 us per commit."""
    sync_interval_s: float = 1.0
    """With sync_commits off, flush LMDB to disk this often."""
    map_size_mb: int = 1024
    """Initial LMDB map size; it doubles whenever it fills."""
    checkpoint_interval_s: float = 60.0
    """Save models that learned something this often (and always at shutdown)."""
    retention_days: float = 30.0
    """Logged decisions older than this are deleted."""
    max_actions: int = 256
    """Most candidates one Rank may send."""
    max_features: int = 4096
    """Most features (context and actions together) one Rank may send."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest request accepted (RESOURCE_EXHAUSTED above)."""
    max_concurrent_rpcs: int = 2000
    """Calls in flight before new ones get RESOURCE_EXHAUSTED."""
    grace_period_s: float = 10.0
    """On SIGTERM/SIGINT, how long in-flight calls may take to finish."""
    fallback_margin_ms: float = 1.0
    """Rank answers with the fallback ranking (baseline first, never learned) when the caller's deadline
    leaves less than the model's usual predict time plus this margin."""
    checkpoints_kept: int = 3
    """Newest checkpoints kept per decision point: how far back RollbackModel can go (the learning journal
    since the oldest is kept too)."""
    reflection: bool = True
    """Serve gRPC server reflection (for grpcurl)."""
    log_format: str = "auto"
    """auto (console on a terminal, JSON otherwise), json or console."""
    log_level: str = "info"
    """debug, info, warning or error; `rpc` lines (one per call) are info."""
    rpc_log_sample: float = 1.0
    """Share (0..1) of successful calls that get an `rpc` log line; failed calls always get one."""
    auth_tokens_file: Path | None = None
    """File of bearer tokens, one `name scopes token` per line (scopes: serve, admin or admin,serve).
    With no tokens configured, authentication is off, which only a loopback host permits."""
    auth_tokens: str = dataclasses.field(default="", repr=False)
    """Bearer tokens in the tokens-file format, entries separated by `;` (prefer the environment
    variable to the flag, which other users can see in the process list)."""
    allow_unauthenticated: bool = False
    """Serve without tokens on a non-loopback host (only behind something that authenticates callers)."""
    tls_cert_file: Path | None = None
    """PEM certificate (chain) of the gRPC port; with tls_key_file, the port speaks TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file."""
    tls_client_ca_file: Path | None = None
    """PEM CA certificates: clients must present a certificate signed by one of them (mutual TLS)."""

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Field docstrings, for --help and the README table."""
        import ast
        import inspect

        tree = ast.parse(inspect.getsource(cls))
        body = tree.body[0].body  # type: ignore[attr-defined]
        docs: dict[str, str] = {}
        for node, following in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
            ):
                docs[node.target.id] = " ".join(str(following.value.value).split())
        return docs


def _coerce(field: dataclasses.Field[Any], raw: Any) -> Any:
    kind = str(field.type)
    if raw is None:
        return None
    if "bool" in kind:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{field.name}: {raw!r} is not a boolean (true/false)")
    if "Path" in kind:
        return Path(raw)
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return str(raw)


def load(
    overrides: Mapping[str, Any] | None = None,
    file_settings: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if environ is None else environ
    by_name = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    for name, field in by_name.items():
        if ENV_PREFIX + name.upper() in env:
            values[name] = _coerce(field, env[ENV_PREFIX + name.upper()])
    for layer in (file_settings or {}, overrides or {}):
        for name, raw in layer.items():
            if name not in by_name:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(by_name)}")
            if raw is not None:
                values[name] = _coerce(by_name[name], raw)
    return Settings(**values)
