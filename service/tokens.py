"""Bearer tokens: who may call, with which scopes. Transport-free (the gRPC check is service.grpc.auth).

Format, in a file (``auth_tokens_file``) or in the ``KAIROS_AUTH_TOKENS`` variable (entries separated
by newlines or ``;``), one token per entry::

    # name        scopes       token (at least 16 characters)
    checkout-web  serve        3f0c9d...
    ops           admin,serve  8a71be...

The name says who called in logs and audit records; the token itself is never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SERVE = "serve"
ADMIN = "admin"
SCOPES = frozenset({SERVE, ADMIN})
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Printable ASCII without spaces (what a header carries) and without ';' (it separates entries).
_TOKEN = re.compile(r"[\x21-\x3a\x3c-\x7e]+")


class SecurityConfigError(ValueError):
    """The token or TLS configuration cannot be used; the message says what to fix (never a token)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's name and scopes."""

    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", SCOPES)  # every call, when authentication is off


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    secret: bytes


class TokenTable:
    def __init__(self, entries: Iterable[tuple[str, frozenset[str], str]] = ()) -> None:
        self._entries = [_Entry(Principal(name, scopes), token.encode()) for name, scopes, token in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, presented: str) -> Principal | None:
        """The principal whose token is ``presented``. Every configured token is compared in constant
        time, and all of them every time, so the answer's timing says nothing about any token."""
        candidate = presented.encode()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.secret, candidate):
                found = entry.principal
        return found


def parse(text: str, source: str) -> TokenTable:
    """Entries of ``name scopes token``; ``source`` names the file or variable in error messages."""
    entries: list[tuple[str, frozenset[str], str]] = []
    names: set[str] = set()
    secrets: set[str] = set()
    for number, raw in enumerate(re.split(r"[\n;]", text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):  # whole-line comments only: a token may contain '#'
            continue
        parts = line.split()
        where = f"{source}, entry {number}"
        if len(parts) != 3:
            raise SecurityConfigError(f"{where}: expected 'name scopes token' (for example 'web serve <token>')")
        name, scope_list, token = parts
        if not _NAME.fullmatch(name):
            raise SecurityConfigError(f"{where}: name {name[:64]!r} must match {_NAME.pattern}")
        scopes = frozenset(scope_list.split(","))
        if not scopes <= SCOPES:
            raise SecurityConfigError(f"{where}: scopes must be serve, admin or admin,serve, not {scope_list[:64]!r}")
        if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise SecurityConfigError(
                f"{where}: the token of {name!r} must have at least {MIN_TOKEN_CHARS} printable ASCII "
                "characters without spaces or ';' (make one with: openssl rand -hex 32)"
            )
        if name in names:
            raise SecurityConfigError(f"{where}: the name {name!r} is used twice")
        if token in secrets:
            raise SecurityConfigError(f"{where}: the token of {name!r} is also another entry's token")
        names.add(name)
        secrets.add(token)
        entries.append((name, scopes, token))
    return TokenTable(entries)


def load(tokens_file: Path | None, tokens_env: str) -> TokenTable:
    """The tokens of the file and of the variable together."""
    text = ""
    if tokens_file is not None:
        try:
            text = tokens_file.read_text()
        except OSError as err:
            raise SecurityConfigError(f"cannot read the tokens file {tokens_file}: {err.strerror}") from None
    file_table = parse(text, f"tokens file {tokens_file}")
    env_table = parse(tokens_env, "KAIROS_AUTH_TOKENS")
    merged = [*file_table._entries, *env_table._entries]
    names = [entry.principal.name for entry in merged]
    if len(set(names)) != len(names):
        raise SecurityConfigError("a token name appears both in the tokens file and in KAIROS_AUTH_TOKENS")
    table = TokenTable()
    table._entries = merged
    return table


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
