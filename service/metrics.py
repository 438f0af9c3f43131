"""Prometheus metrics: a tiny registry of counters and latency histograms, rendered as text.

No dependency: the exposition format is a few lines of text, and the hot path
only bumps dictionary entries.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable

# Latency buckets in seconds, dense around the millisecond that Rank aims for.
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class RpcMetrics:
    """Calls per method and status, and a latency histogram per method and status."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        # Calls begun and calls running now: shutdown drains until these stay still.
        self.started = 0
        self.in_flight = 0

    def observe(self, method: str, status: str, seconds: float) -> None:
        key = (method, status)
        self.calls[key] += 1
        self.buckets[key][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[key] += seconds

    def render(self) -> list[str]:
        lines = [
            "# HELP kairos_rpc_total Calls by method and status (gRPC methods; REST routes as personalizer/...).",
            "# TYPE kairos_rpc_total counter",
        ]
        for (method, status), count in sorted(self.calls.items()):
            lines.append(f"kairos_rpc_total{_labels([('method', method), ('status', status)])} {count}")
        lines += [
            "# HELP kairos_rpc_duration_seconds Server-side latency of calls (gRPC and REST).",
            "# TYPE kairos_rpc_duration_seconds histogram",
        ]
        for (method, status), counts in sorted(self.buckets.items()):
            series = [("method", method), ("status", status)]
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f"kairos_rpc_duration_seconds_bucket{_labels([*series, ('le', le)])} {cumulative}")
            lines.append(f"kairos_rpc_duration_seconds_sum{_labels(series)} {self.sums[(method, status)]:.6f}")
            lines.append(f"kairos_rpc_duration_seconds_count{_labels(series)} {cumulative}")
        return lines


Gauge = tuple[str, str, str, list[tuple[list[tuple[str, str]], float]]]  # name, type, help, samples


def render(rpc: RpcMetrics, gauges: Callable[[], list[Gauge]]) -> str:
    lines = rpc.render()
    for name, kind, help_text, samples in gauges():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_labels(labels)} {value:g}" for labels, value in samples]
    return "\n".join(lines) + "\n"
