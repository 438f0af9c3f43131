"""Run ``kairos`` with tracemalloc on, taking heap snapshots when asked: the soak's ``--trace-memory``.

    python -m benchmarks.memtrace DIR serve --port 0 ...

starts ``kairos`` with the arguments after DIR in this process, with tracemalloc
recording. A daemon thread watches DIR: when a file ``NAME.take`` appears it
dumps a snapshot to ``NAME.snapshot`` and the count of live objects per type
(after a full collection) to ``NAME.types.json``, then writes ``NAME.done``.
The soak takes one at the end of its warm-up and one at the end, and
:func:`growth` says which source lines and types grew in between. Tracing
slows every allocation, so a traced run measures what grows, not how fast
Kairos is.
"""

from __future__ import annotations

import collections
import gc
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

FRAMES = 8  # enough to see which Kairos function called into a library that allocates


def _watch(folder: Path) -> None:
    while True:
        for request in sorted(folder.glob("*.take")):
            name = request.stem
            request.unlink()
            gc.collect()
            tracemalloc.take_snapshot().dump(str(folder / f"{name}.snapshot"))
            types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
            (folder / f"{name}.types.json").write_text(json.dumps(dict(types)))
            (folder / f"{name}.done").write_text(str(tracemalloc.get_traced_memory()[0]))
        time.sleep(0.5)


def request_snapshot(folder: Path, name: str, timeout_s: float = 120.0) -> bool:
    """Ask the traced server for snapshot ``name`` and wait for it; False when it did not come in time."""
    (folder / f"{name}.take").write_text("")
    deadline = time.monotonic() + timeout_s
    while not (folder / f"{name}.done").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def growth(folder: Path, before: str, after: str, top: int = 15) -> dict[str, Any]:
    """What grew between two snapshots: traced bytes, source lines (by their Kairos caller) and object types."""
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*"),
        tracemalloc.Filter(False, __file__, all_frames=True),  # the snapshot thread itself
    ]
    first = tracemalloc.Snapshot.load(str(folder / f"{before}.snapshot")).filter_traces(ignore)
    last = tracemalloc.Snapshot.load(str(folder / f"{after}.snapshot")).filter_traces(ignore)
    lines = [
        {
            # The allocating line first, then its callers (a Traceback runs from the oldest frame).
            "where": " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(diff.traceback)[::-1][:4]),
            "size_diff_kb": round(diff.size_diff / 1024, 1),
            "count_diff": diff.count_diff,
            "size_kb": round(diff.size / 1024, 1),
        }
        for diff in last.compare_to(first, "traceback")[:top]
    ]
    types_before = json.loads((folder / f"{before}.types.json").read_text())
    types_after = json.loads((folder / f"{after}.types.json").read_text())
    by_type = sorted(
        ((name, count - types_before.get(name, 0)) for name, count in types_after.items()),
        key=lambda item: -item[1],
    )[:top]
    return {
        "traced_mb_before": round(int((folder / f"{before}.done").read_text()) / (1 << 20), 2),
        "traced_mb_after": round(int((folder / f"{after}.done").read_text()) / (1 << 20), 2),
        "top_growth_by_traceback": lines,
        "objects_before": sum(types_before.values()),
        "objects_after": sum(types_after.values()),
        "top_growth_by_type": [{"type": name, "count_diff": diff} for name, diff in by_type],
    }


def main(argv: list[str]) -> int:
    folder, rest = Path(argv[0]), argv[1:]
    folder.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)
    threading.Thread(target=_watch, args=(folder,), name="memtrace", daemon=True).start()
    from service import cli

    return cli.main(rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
