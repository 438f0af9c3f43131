"""Error statuses sent to clients carry no file paths."""

from __future__ import annotations

from service.grpc.errors import without_paths


def test_error_messages_lose_file_paths_but_keep_method_names() -> None:
    assert without_paths("cannot load /srv/kairos/models/demo/1.model: bad") == "cannot load <path>: bad"
    assert without_paths("name '../../etc/passwd' must match") == "name '..<path>' must match"
    kept = "the token 'web' lacks the scope 'admin' that kairos.v1.AdminService/GetStats needs; see https://x.org/a/b"
    assert without_paths(kept) == kept
