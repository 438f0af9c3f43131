"""The HTTP side port: Prometheus /metrics and a plain /healthz. A minimal asyncio HTTP/1.1 server."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from service import metrics
from service.plane import DecisionPlane, Stats
from service.rest.api import PersonalizerApi
from service.rest.errors import error_body
from service.store.lmdb_store import FORMAT_VERSION
from service.version import VERSION

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COUNTER_HELP = {
    "explored": "Ranks whose shown action was not among the model's most likely (exploration).",
    "fallbacks": "Ranks answered with the fallback ranking because the model could not answer (fail-open).",
    "rest_ignored_events": "REST Reward/Activate calls for unknown or closed events (or unknown slots), accepted "
    "and ignored (as Personalizer did).",
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
        "rest_ignored_events",
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


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Paths and methods that match no route: Personalizer's JSON error under /dp/, plain text elsewhere."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if not request.path.startswith("/dp/") or error.status < 400:
            raise
        message = f"{error.reason}: no such Personalizer route or method (the README lists them)"
        body = error_body(error.reason.replace(" ", ""), message, "NO_ROUTE")
        return web.json_response(body, status=error.status)


class HttpServer:
    """The HTTP port: /metrics, /healthz and (when given) Personalizer's REST API, on aiohttp in the
    server's event loop."""

    def __init__(
        self,
        plane: DecisionPlane,
        rpc: metrics.RpcMetrics,
        serving: Callable[[], bool],
        api: PersonalizerApi | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.plane, self.rpc, self.serving = plane, rpc, serving
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[_json_errors])
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/healthz", self._healthz)
        if api is not None:
            api.add_routes(self.app, max_body_bytes)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        text = metrics.render(self.rpc, lambda: gauges(self.plane))
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.serving():
            return web.Response(text="SERVING\n")
        return web.Response(text="NOT_SERVING\n", status=503)
