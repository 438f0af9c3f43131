"""Token files: what parses, what is refused with a message that says what to fix, which scope a method needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import tokens
from service.grpc.auth import scope_of, token_table
from service.settings import Settings

A, B = "a" * 20, "b-" * 10


def test_parse_and_lookup() -> None:
    table = tokens.parse(f"# comment\n\nweb serve {A}\nops  admin,serve  {B}\n", "test")
    assert len(table) == 2
    assert table.lookup(A) == tokens.Principal("web", frozenset({"serve"}))
    found = table.lookup(B)
    assert found is not None and found.scopes == {"serve", "admin"}
    assert table.lookup("a" * 19) is None
    assert table.lookup("") is None
    from_env = tokens.parse(f"web serve {A};ops admin {B}", "env")
    assert from_env.lookup(B) == tokens.Principal("ops", frozenset({"admin"}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web serve", "expected 'name scopes token'"),
        (f"web root {A}", "scopes must be serve, admin"),
        ("web serve short", "at least 16"),
        (f"web serve {A}\nweb admin {B}", "used twice"),
        (f"web serve {A}\nops admin {A}", "also another entry's token"),
        (f"we/b serve {A}", "name"),
    ],
)
def test_bad_entries_are_refused_without_echoing_tokens(text: str, message: str) -> None:
    with pytest.raises(tokens.SecurityConfigError) as caught:
        tokens.parse(text, "tokens file")
    assert message in str(caught.value)
    assert A not in str(caught.value) and B not in str(caught.value)


def test_scopes_of_methods() -> None:
    assert scope_of("/kairos.v1.DecisionService/Rank") == "serve"
    assert scope_of("/kairos.v1.AdminService/UpdateDecisionPoint") == "admin"
    assert scope_of("/kairos.v1.FeatureService/TrackEvent") == "serve"
    assert scope_of("/kairos.v1.FeatureService/DeleteProfile") == "admin"
    assert scope_of("/grpc.health.v1.Health/Check") is None
    assert scope_of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None
    assert scope_of("/kairos.v2.Unknown/Thing") == "admin"  # deny by default


def test_authentication_off_only_on_loopback_or_when_allowed(tmp_path: Path) -> None:
    assert token_table(Settings(host="127.0.0.1")) is None
    assert token_table(Settings(host="::1")) is None
    with pytest.raises(tokens.SecurityConfigError, match="KAIROS_AUTH_TOKENS_FILE"):
        token_table(Settings(host="0.0.0.0"))
    assert token_table(Settings(host="0.0.0.0", allow_unauthenticated=True)) is None
    path = tmp_path / "tokens"
    path.write_text(f"web serve {A}\n")
    table = token_table(Settings(host="0.0.0.0", auth_tokens_file=path, auth_tokens=f"ops admin {B}"))
    assert table is not None and len(table) == 2
    with pytest.raises(tokens.SecurityConfigError, match="cannot read"):
        token_table(Settings(auth_tokens_file=tmp_path / "missing"))


def test_settings_repr_hides_tokens() -> None:
    assert A not in repr(Settings(auth_tokens=f"web serve {A}"))
