"""The HTTP side port: Prometheus /metrics and a plain /healthz. A minimal asyncio HTTP/1.1 server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from service import metrics
from service.plane import DecisionPlane, Stats
from service.store.lmdb_store import FORMAT_VERSION
from service.version import VERSION

MAX_HEADER_BYTES = 8192
READ_TIMEOUT_S = 5.0
COUNTER_HELP = {
    "explored": "Ranks whose shown action was not among the model's most likely (exploration).",
    "fallbacks": "Ranks answered with the fallback ranking because the model could not answer (fail-open).",
}


def gauges(plane: DecisionPlane) -> list[metrics.Gauge]:
    """Per-decision-point figures, read from the plane (the same numbers GetStats returns)."""
    now_s = time.time()
    stats = [plane.stats(name) for name in sorted(plane.states)]

    def per_dp(pick: Callable[[Stats], float]) -> list[tuple[list[tuple[str, str]], float]]:
        return [([("decision_point", s.decision_point)], pick(s)) for s in stats]

    found: list[metrics.Gauge] = [
        (
            "kairos_build_info",
            "gauge",
            "Kairos version and the data directory format it writes.",
            [([("version", VERSION), ("data_format", str(FORMAT_VERSION))], 1.0)],
        ),
        ("kairos_lmdb_size_bytes", "gauge", "Bytes used in the LMDB file.", [([], float(plane.store.size_bytes()))]),
    ]
    for counter in (
        "ranks",
        "rewards",
        "late_rewards",
        "duplicate_rewards",
        "default_rewards",
        "expired_events",
        "explored",
        "fallbacks",
    ):
        samples = [([("decision_point", s.decision_point)], float(s.counters[counter])) for s in stats]
        help_text = COUNTER_HELP.get(counter, f"{counter.replace('_', ' ').capitalize()}.")
        found.append((f"kairos_{counter}_total", "counter", help_text, samples))
    found += [
        ("kairos_learned_total", "counter", "Events the model has learned.", per_dp(lambda s: s.learned)),
        ("kairos_average_reward", "gauge", "Mean reward of learned events.", per_dp(lambda s: s.average_reward)),
        (
            "kairos_exploration_share",
            "gauge",
            "Share of ranks whose shown action was not among the model's most likely (0 before any rank).",
            per_dp(lambda s: s.counters["explored"] / s.counters["ranks"] if s.counters["ranks"] else 0.0),
        ),
        (
            "kairos_open_events",
            "gauge",
            "Events whose reward window is open.",
            per_dp(lambda s: s.counters["open_events"]),
        ),
        ("kairos_learn_backlog", "gauge", "Learnable events not yet learned.", per_dp(lambda s: s.backlog)),
        (
            "kairos_checkpoint_age_seconds",
            "gauge",
            "Seconds since the last model checkpoint (-1: none yet).",
            per_dp(lambda s: now_s - s.last_checkpoint_ms / 1000 if s.last_checkpoint_ms else -1.0),
        ),
        *mode_gauges(stats),
        (
            "kairos_model_info",
            "gauge",
            "The model version each decision point serves.",
            [([("decision_point", s.decision_point), ("model_version", s.model_version)], 1.0) for s in stats],
        ),
    ]
    return found + challenger_gauges(stats)


def challenger_gauges(stats: list[Stats]) -> list[metrics.Gauge]:
    """Decision points with a challenger: its estimated value beside the champion's (as GetStats)."""
    values: list[tuple[list[tuple[str, str]], float]] = []
    events: list[tuple[list[tuple[str, str]], float]] = []
    for s in stats:
        if s.challenger is None:
            continue
        report = s.challenger.report
        events.append(([("decision_point", s.decision_point)], float(report.events)))
        for estimate in (report.champion, report.ips, report.snips):
            for bound, number in (("value", estimate.value), ("low", estimate.low), ("high", estimate.high)):
                labels = [("decision_point", s.decision_point), ("estimator", estimate.estimator), ("bound", bound)]
                values.append((labels, number))
    if not events:
        return []
    return [
        ("kairos_challenger_events", "gauge", "Events the challenger has scored and learned.", events),
        (
            "kairos_challenger_value",
            "gauge",
            "Estimated value per event over the challenger's events: estimator on_policy is the champion's "
            "mean reward, ips and snips the challenger's; bound value, low or high (95% interval).",
            values,
        ),
    ]


def mode_gauges(stats: list[Stats]) -> list[metrics.Gauge]:
    """Lift over the holdout (decision points with a holdout) and the apprentice comparison (decision points
    in apprentice mode): the figures of GetStats's holdout and apprentice, with their 95% intervals."""
    lifts = [(s.decision_point, s.holdout) for s in stats if s.holdout is not None and s.holdout.holdout_share > 0]
    pupils = [
        (s.decision_point, s.apprentice) for s in stats if s.apprentice is not None and s.learning_mode == "apprentice"
    ]
    found: list[metrics.Gauge] = []
    if lifts:
        found += [
            (
                "kairos_holdout_lift",
                "gauge",
                "Mean reward of model-served subjects minus held-out subjects (bound: value, low, high of 95%).",
                [
                    ([("decision_point", n), ("bound", b)], v)
                    for n, h in lifts
                    for b, v in (("value", h.lift.value), ("low", h.lift.low), ("high", h.lift.high))
                ],
            ),
            (
                "kairos_holdout_mean_reward",
                "gauge",
                "Mean reward by group: model-served subjects and held-out subjects.",
                [
                    ([("decision_point", n), ("group", g)], i.value)
                    for n, h in lifts
                    for g, i in (("model", h.model_reward), ("holdout", h.holdout_reward))
                ],
            ),
            (
                "kairos_holdout_events",
                "gauge",
                "Events with a known reward by group: model-served subjects and held-out subjects.",
                [
                    ([("decision_point", n), ("group", g)], float(i.count))
                    for n, h in lifts
                    for g, i in (("model", h.model_reward), ("holdout", h.holdout_reward))
                ],
            ),
        ]
    if pupils:
        found += [
            (
                "kairos_apprentice_match_rate",
                "gauge",
                "Apprentice mode: share of events whose baseline was the model's most likely action.",
                [([("decision_point", n)], a.match_rate.value) for n, a in pupils],
            ),
            (
                "kairos_apprentice_reward",
                "gauge",
                "Apprentice mode: the baseline's mean reward and the model's estimates (self-normalised, doubly "
                "robust), with the 95% interval (bound: value, low, high).",
                [
                    ([("decision_point", n), ("policy", p), ("bound", b)], v)
                    for n, a in pupils
                    for p, i in (
                        ("baseline", a.baseline_reward),
                        ("model", a.model_reward),
                        ("model_doubly_robust", a.model_reward_dr),
                    )
                    for b, v in (("value", i.value), ("low", i.low), ("high", i.high))
                ],
            ),
        ]
    return found


class HttpServer:
    def __init__(self, plane: DecisionPlane, rpc: metrics.RpcMetrics, serving: Callable[[], bool]) -> None:
        self.plane, self.rpc, self.serving = plane, rpc, serving
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, body, kind = self._route(method, path.split("?", 1)[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, body, kind = "400 Bad Request", "bad request\n", "text/plain"
        payload = body.encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + payload
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, str]:
        if method != "GET":
            return "405 Method Not Allowed", "only GET\n", "text/plain"
        if path == "/metrics":
            text = metrics.render(self.rpc, lambda: gauges(self.plane))
            return "200 OK", text, "text/plain; version=0.0.4; charset=utf-8"
        if path == "/healthz":
            return (
                ("200 OK", "SERVING\n", "text/plain")
                if self.serving()
                else ("503 Service Unavailable", "NOT_SERVING\n", "text/plain")
            )
        return "404 Not Found", "try /metrics or /healthz\n", "text/plain"
