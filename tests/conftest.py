from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server import RunningServer


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Servers on their own data directories; whatever a test leaves running is killed afterwards."""
    made: list[RunningServer] = []

    def make(*args: str, name: str = "data") -> RunningServer:
        server = RunningServer(tmp_path / name, list(args))
        made.append(server)
        return server

    yield make
    for server in made:
        if server.process and server.process.poll() is None:
            server.kill9()


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server().start()
