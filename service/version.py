"""The running build's version, read once (it goes into every Rank's trailing metadata)."""

from __future__ import annotations

from importlib import metadata


def _read() -> str:
    try:
        return metadata.version("kairos")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _read()
