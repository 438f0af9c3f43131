"""Shutdown: answer what has already arrived before the gRPC server stops.

gRPC's ``server.stop(grace)`` lets calls whose handler is running finish, but
cancels (CANCELLED, which clients do not retry) calls that had arrived and
were still waiting for the event loop. So after health turns NOT_SERVING the
server keeps serving until the loop has gone several turns without starting
a call and none is running, within the grace period; only then does it stop,
and calls that come later get UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import time

from service.metrics import RpcMetrics

QUIET_TURNS = 5  # event-loop turns without a new call before stopping
TURN_S = 0.01


async def drain(metrics: RpcMetrics, limit_s: float) -> float:
    """Serve until quiet or ``limit_s`` has passed; return the seconds left of ``limit_s``."""
    started = time.monotonic()
    quiet, seen = 0, metrics.started
    while quiet < QUIET_TURNS and time.monotonic() - started < limit_s:
        # Counted in turns, not seconds: a handler that holds the loop for a while is not quiet time.
        await asyncio.sleep(TURN_S)
        busy = metrics.started != seen or metrics.in_flight > 0
        quiet, seen = (0 if busy else quiet + 1), metrics.started
    return max(limit_s - (time.monotonic() - started), 0.0)
