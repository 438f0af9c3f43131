"""Personalizer's REST API on Kairos: thin aiohttp handlers over the decision plane.

Served under ``/dp/{decision_point}/personalizer`` on the HTTP port, in both path styles the SDKs use:
``.../personalizer/v1.0/rank`` (azure-cognitiveservices-personalizer 0.1.1) and
``.../personalizer/rank?api-version=2022-09-01-preview`` (azure-ai-personalizer 1.0.0b1).

=====  ====================================  ======  ==========================================
Verb   Path (after the prefix)               Status  Kairos
=====  ====================================  ======  ==========================================
POST   rank                                  201     DecisionPlane.rank
POST   events/{eventId}/reward               204     DecisionPlane.reward (unknown/closed: ignored)
POST   events/{eventId}/activate             204     DecisionPlane.activate (unknown/closed: ignored)
POST   multislot/rank                        201     DecisionPlane.rank_slots
POST   multislot/events/{eventId}/reward     204     DecisionPlane.reward per slot (unknown slot: ignored)
POST   multislot/events/{eventId}/activate   204     DecisionPlane.activate (every slot)
GET    configurations/service                200     the decision point's configuration
PUT    configurations/service                200     UpdateDecisionPoint
GET    configurations/policy                 200     learner options as a VW command line
PUT    configurations/policy                 200     learner options (allow-list), model reset if reshaped
DELETE configurations/policy                 200     default learner options
POST   configurations/applyFromEvaluation    204     an evaluated policy's learner options
PUT    evaluations/{evaluationId}            200     start an offline evaluation (background thread)
GET    evaluations/{evaluationId}            200     its status and results
GET    evaluations                           200     ``{"value": [...]}``
DELETE evaluations/{evaluationId}            204     forget it
PUT    featureImportances/{id}               200     start a feature importance (background thread)
GET    featureImportances/{id}               200     its status and featureScores
GET    featureImportances                    200     ``{"value": [...]}``
DELETE featureImportances/{id}               204     forget it
DELETE logs                                  204     delete logged decisions whose windows closed
GET    logs/properties                       200     ``{"dateRange": {"from", "to"}}``
GET    model                                 200     ExportModel (application/octet-stream)
PUT    model                                 204     ImportModel
DELETE model                                 204     ResetModel
GET    model/properties                      200     checkpoint times of the current model
=====  ====================================  ======  ==========================================

Recorded from both SDKs: JSON bodies (``Content-Type: application/json``; the model's PUT sends
``application/octet-stream``), the key in ``Ocp-Apim-Subscription-Key``. Query parameters besides
``api-version``: ``evaluations/{id}`` GET sends ``startTime``, ``endTime`` (and optionally
``intervalInMinutes``, ``window``: the whole result is returned whatever they say), ``evaluations`` and
``featureImportances`` GET ``top``, ``skip`` (honoured) and ``filter`` (ignored), ``model`` GET ``signed``
(ignored). The older SDK has no multi-slot or feature importance calls; their ``v1.0`` paths are served too.

Rank, reward and activate need a token with the ``serve`` scope, the rest ``admin`` (when
authentication is on), sent as ``Ocp-Apim-Subscription-Key`` or ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import structlog
from aiohttp import web

from policies.learner_options import LearnerOptions
from service import tokens
from service.audit import AuditLog
from service.errors import Code, KairosError, invalid
from service.metrics import RpcMetrics
from service.offline.dsjson import iso_timestamp
from service.plane import DecisionPlane, check_reward
from service.rest import configuration, converters, multislot
from service.rest.errors import error_body, http_error
from service.rest.evaluations import EvaluationJobs
from service.rest.importances import ImportanceJobs

log = structlog.get_logger("kairos.rest")
PREFIXES = ("/dp/{dp}/personalizer/v1.0", "/dp/{dp}/personalizer")
# Errors of the gRPC API that Personalizer answered with success (it took rewards asynchronously).
LENIENT_REASONS = frozenset({"EVENT_NOT_FOUND", "REWARD_WINDOW_CLOSED", "ACTIVATION_WINDOW_CLOSED"})
# And for a slot's reward: a slot the event does not have, or one left without an action.
LENIENT_SLOT_REASONS = LENIENT_REASONS | {"SLOT_NOT_FOUND", "SLOT_HAS_NO_ACTION"}
LENIENT_COUNTER = "rest_ignored_events"
LOG_DELETE_PAGE = 1000

Handler = Callable[["PersonalizerApi", web.Request, str], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    handler: Handler


def json_response(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _error_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


class PersonalizerApi:
    def __init__(
        self,
        plane: DecisionPlane,
        audit: AuditLog,
        table: tokens.TokenTable | None,
        ready: Callable[[], bool],
        metrics: RpcMetrics,
        jobs: EvaluationJobs,
        importances: ImportanceJobs,
        retention_days: float,
        log_sample: float = 1.0,
    ) -> None:
        self.plane, self.audit, self.table, self.ready = plane, audit, table, ready
        self.metrics, self.jobs, self.retention_days = metrics, jobs, retention_days
        self.importances = importances
        self.log_sample = log_sample  # share of successful calls that get a log line, as for gRPC
        self._random = random.Random()
        self.max_body_bytes = 0  # set by add_routes, for the 413 message

    def add_routes(self, app: web.Application, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        for prefix in PREFIXES:
            for route in ROUTES:
                app.router.add_route(route.method, prefix + route.path, self._endpoint(route))

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        name = f"personalizer{route.path.replace('{', '').replace('}', '')}:{route.method}"

        @functools.wraps(route.handler)
        async def handle(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            self.metrics.started += 1
            self.metrics.in_flight += 1
            try:
                response = await self._answer(route, request)
            finally:
                self.metrics.in_flight -= 1
            seconds = time.perf_counter() - started
            self.metrics.observe(name, str(response.status), seconds)
            if response.status >= 400 or self.log_sample >= 1.0 or self._random.random() < self.log_sample:
                principal = request.get("principal")
                log.info(
                    "rest",
                    route=name,
                    decision_point=request.match_info.get("dp"),
                    event_id=request.match_info.get("event_id"),
                    status=response.status,
                    ms=round(seconds * 1000, 3),
                    peer=request.remote,
                    caller=principal.name if principal else None,
                )
            return response

        return handle

    async def _answer(self, route: Route, request: web.Request) -> web.StreamResponse:
        try:
            if not self.ready():
                raise KairosError(Code.UNAVAILABLE, "NOT_READY", "Kairos is starting or stopping; retry shortly")
            request["principal"] = self._authenticate(request, route.scope)
            return await route.handler(self, request, request.match_info["dp"])
        except KairosError as error:
            return _error_response(*http_error(error))
        except web.HTTPRequestEntityTooLarge:
            return _error_response(
                413,
                error_body(
                    "PayloadTooLarge",
                    f"the request body is larger than {self.max_body_bytes} bytes (max_message_bytes)",
                    "REQUEST_TOO_LARGE",
                ),
            )
        except Exception:
            log.exception("rest_failed", method=request.method, path=request.path)
            return _error_response(
                500, error_body("InternalServerError", "internal error; the server log has the details", "INTERNAL")
            )

    def _authenticate(self, request: web.Request, scope: str) -> tokens.Principal:
        if self.table is None:
            return tokens.ANONYMOUS
        presented = request.headers.get("Ocp-Apim-Subscription-Key")
        if presented is None:
            kind, _, bearer = request.headers.get("Authorization", "").partition(" ")
            presented = bearer.strip() if kind.lower() == "bearer" else None
        if presented is None:
            raise KairosError(
                Code.UNAUTHENTICATED,
                "MISSING_TOKEN",
                "this call needs a token: send the header 'Ocp-Apim-Subscription-Key: <token>' (the SDKs' key) "
                "with a token from the server's tokens file",
            )
        principal = self.table.lookup(presented)
        if principal is None:
            raise KairosError(
                Code.UNAUTHENTICATED,
                "INVALID_TOKEN",
                "the subscription key is not valid: check it against the server's tokens file",
            )
        if scope not in principal.scopes:
            raise KairosError(
                Code.PERMISSION_DENIED,
                "MISSING_SCOPE",
                f"the token {principal.name!r} lacks the scope {scope!r} this call needs; use a token with it",
                {"scope": scope},
            )
        return principal

    async def _json(self, request: web.Request) -> Any:
        return converters.parse_json(await request.read())

    def _audit(self, request: web.Request, action: str, dp: str, before: Any, after: Any) -> None:
        principal: tokens.Principal = request["principal"]
        self.audit.record(principal.name, request.remote or "", f"REST {action}", dp, before, after)

    # -- serving ----------------------------------------------------------------------------------

    async def rank(self, request: web.Request, dp: str) -> web.StreamResponse:
        ranked = converters.rank_input(dp, await self._json(request))
        return json_response(201, converters.rank_response(self.plane.rank(ranked), ranked))

    async def reward(self, request: web.Request, dp: str) -> web.StreamResponse:
        value = converters.reward_value(await self._json(request))
        event_id = request.match_info["event_id"]
        with _in_rest_terms(event_id):
            self._leniently(dp, lambda: self.plane.reward(dp, event_id, value))
        return web.Response(status=204)

    async def activate(self, request: web.Request, dp: str) -> web.StreamResponse:
        """Single- and multi-slot: activating a multi-slot event activates every slot."""
        self._leniently(dp, lambda: self.plane.activate(dp, request.match_info["event_id"]))
        return web.Response(status=204)

    async def rank_slots(self, request: web.Request, dp: str) -> web.StreamResponse:
        ranked = multislot.rank_slots_input(dp, await self._json(request))
        return json_response(201, multislot.rank_slots_response(self.plane.rank_slots(ranked)))

    async def reward_slots(self, request: web.Request, dp: str) -> web.StreamResponse:
        event_id = request.match_info["event_id"]
        rewards = multislot.slot_rewards(await self._json(request))
        config = self.plane.get_decision_point(dp).config
        for reward in rewards:  # all in range before any is applied
            check_reward(config, reward.value)
        ignored = False
        for reward in rewards:
            try:
                with _in_rest_terms(event_id):
                    self.plane.reward(dp, event_id, reward.value, slot_id=reward.slot_id)
            except KairosError as error:
                if error.reason not in LENIENT_SLOT_REASONS:
                    raise
                ignored = True
        if ignored:  # one count per call, as for single-slot rewards
            self.plane.count(dp, LENIENT_COUNTER)
        return web.Response(status=204)

    def _leniently(self, dp: str, call: Callable[[], None]) -> None:
        """Personalizer took rewards and activations for unknown or closed events without complaint:
        do the same, and count them."""
        try:
            call()
        except KairosError as error:
            if error.reason not in LENIENT_REASONS:
                raise
            self.plane.count(dp, LENIENT_COUNTER)

    # -- configuration ----------------------------------------------------------------------------

    async def get_service_configuration(self, request: web.Request, dp: str) -> web.StreamResponse:
        config = self.plane.get_decision_point(dp).config
        return json_response(200, configuration.service_configuration(config, self.retention_days))

    async def put_service_configuration(self, request: web.Request, dp: str) -> web.StreamResponse:
        current = self.plane.get_decision_point(dp).config
        config = configuration.updated_config(current, await self._json(request), self.retention_days)
        if config != current:
            self.plane.update_decision_point(config)
            self._audit(request, "configurations/service", dp, current.to_dict(), config.to_dict())
        return json_response(200, configuration.service_configuration(config, self.retention_days))

    async def get_policy(self, request: web.Request, dp: str) -> web.StreamResponse:
        return json_response(200, configuration.policy(self.plane.get_decision_point(dp)))

    async def put_policy(self, request: web.Request, dp: str) -> web.StreamResponse:
        body = await self._json(request)
        _, arguments = configuration.check_policy_name(body)
        record = self.plane.get_decision_point(dp)
        self._set_learner(request, dp, configuration.learner_from_arguments(arguments, record), "configurations/policy")
        return json_response(200, configuration.policy(self.plane.get_decision_point(dp)))

    async def reset_policy(self, request: web.Request, dp: str) -> web.StreamResponse:
        self._set_learner(request, dp, LearnerOptions(), "configurations/policy:reset")
        return json_response(200, configuration.policy(self.plane.get_decision_point(dp)))

    async def apply_from_evaluation(self, request: web.Request, dp: str) -> web.StreamResponse:
        body = await self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("evaluationId"), str):
            raise invalid("INVALID_FIELD", 'send {"evaluationId": ..., "policyName": ...}')
        options = self.jobs.options_of(dp, body["evaluationId"], str(body.get("policyName") or ""))
        self._set_learner(request, dp, options, "configurations/applyFromEvaluation")
        return web.Response(status=204)

    def _set_learner(self, request: web.Request, dp: str, learner: LearnerOptions, action: str) -> None:
        """New learner options; a change of the model's shape starts a fresh model, as Personalizer's did."""
        current = self.plane.get_decision_point(dp).config
        if learner == current.learner:
            return
        config = replace(current, learner=learner)
        self.plane.update_decision_point(config, reset_model=not learner.same_shape(current.learner))
        self._audit(request, action, dp, current.to_dict(), config.to_dict())

    # -- evaluations ------------------------------------------------------------------------------

    async def create_evaluation(self, request: web.Request, dp: str) -> web.StreamResponse:
        evaluation_id = request.match_info["evaluation_id"]
        self.jobs.create(dp, evaluation_id, await self._json(request))
        return json_response(200, self.jobs.public(self.jobs.get(dp, evaluation_id)))

    async def get_evaluation(self, request: web.Request, dp: str) -> web.StreamResponse:
        return json_response(200, self.jobs.public(self.jobs.get(dp, request.match_info["evaluation_id"])))

    async def list_evaluations(self, request: web.Request, dp: str) -> web.StreamResponse:
        return json_response(200, _page(request, [self.jobs.public(e) for e in self.jobs.list(dp)]))

    async def delete_evaluation(self, request: web.Request, dp: str) -> web.StreamResponse:
        self.jobs.delete(dp, request.match_info["evaluation_id"])
        return web.Response(status=204)

    # -- feature importances ----------------------------------------------------------------------

    async def create_importance(self, request: web.Request, dp: str) -> web.StreamResponse:
        importance_id = request.match_info["importance_id"]
        self.importances.create(dp, importance_id, await self._json(request))
        return json_response(200, self.importances.get(dp, importance_id))

    async def get_importance(self, request: web.Request, dp: str) -> web.StreamResponse:
        return json_response(200, self.importances.get(dp, request.match_info["importance_id"]))

    async def list_importances(self, request: web.Request, dp: str) -> web.StreamResponse:
        return json_response(200, _page(request, self.importances.list(dp)))

    async def delete_importance(self, request: web.Request, dp: str) -> web.StreamResponse:
        self.importances.delete(dp, request.match_info["importance_id"])
        return web.Response(status=204)

    # -- logs and model ---------------------------------------------------------------------------

    async def delete_logs(self, request: web.Request, dp: str) -> web.StreamResponse:
        after: bytes | None = b""
        while after is not None:
            after = self.plane.delete_logs(dp, after, LOG_DELETE_PAGE)
            await asyncio.sleep(0)  # other calls go on between pages
        self._audit(request, "logs:delete", dp, None, None)
        return web.Response(status=204)

    async def log_properties(self, request: web.Request, dp: str) -> web.StreamResponse:
        found = await asyncio.to_thread(self.plane.log_range, dp)
        date_range = {"from": iso_timestamp(found[0]), "to": iso_timestamp(found[1])} if found else {}
        return json_response(200, {"dateRange": date_range})

    async def export_model(self, request: web.Request, dp: str) -> web.StreamResponse:
        model, version = self.plane.export_model(dp)
        return web.Response(
            body=model, content_type="application/octet-stream", headers={"kairos-model-version": version}
        )

    async def import_model(self, request: web.Request, dp: str) -> web.StreamResponse:
        version = self.plane.import_model(dp, await request.read())
        self._audit(request, "model:import", dp, None, {"model_version": version})
        return web.Response(status=204)

    async def reset_model(self, request: web.Request, dp: str) -> web.StreamResponse:
        version = self.plane.reset_model(dp)
        self._audit(request, "model:reset", dp, None, {"model_version": version})
        return web.Response(status=204)

    async def model_properties(self, request: web.Request, dp: str) -> web.StreamResponse:
        kept = self.plane.list_checkpoints(dp)  # newest first, of the current model
        body = {}
        if kept:
            body = {
                "creationTime": iso_timestamp(kept[-1].created_ms),
                "lastModifiedTime": iso_timestamp(kept[0].created_ms),
            }
        return json_response(200, body)


@contextlib.contextmanager
def _in_rest_terms(event_id: str) -> Iterator[None]:
    """A reward sent to the route of the other kind of event: the plane's refusal, told in REST's terms."""
    shown = event_id[:80]
    try:
        yield
    except KairosError as error:
        if error.reason == "SLOT_ID_REQUIRED":
            raise invalid(
                error.reason,
                f"event {shown!r} was ranked by multislot/rank: send its rewards to "
                f'multislot/events/{shown}/reward as {{"reward": [{{"slotId": ..., "value": ...}}]}}',
            ) from None
        if error.reason == "EVENT_HAS_NO_SLOTS":
            raise invalid(
                error.reason,
                f"event {shown!r} was ranked by rank, which has no slots: send its reward to "
                f'events/{shown}/reward as {{"value": ...}}',
            ) from None
        raise


def _page(request: web.Request, found: list[dict[str, Any]]) -> dict[str, Any]:
    """A listing as Personalizer paged it: ``skip`` and ``top`` from the query."""
    skip, top = _int_query(request, "skip", 0), _int_query(request, "top", len(found))
    return {"value": found[skip : skip + top]}


def _int_query(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 9:
        raise invalid("INVALID_QUERY", f"{name} must be a non-negative integer")
    return int(text)


S, A = tokens.SERVE, tokens.ADMIN
ROUTES = (
    Route("POST", "/rank", S, PersonalizerApi.rank),
    Route("POST", "/events/{event_id}/reward", S, PersonalizerApi.reward),
    Route("POST", "/events/{event_id}/activate", S, PersonalizerApi.activate),
    Route("POST", "/multislot/rank", S, PersonalizerApi.rank_slots),
    Route("POST", "/multislot/events/{event_id}/reward", S, PersonalizerApi.reward_slots),
    Route("POST", "/multislot/events/{event_id}/activate", S, PersonalizerApi.activate),
    Route("GET", "/configurations/service", A, PersonalizerApi.get_service_configuration),
    Route("PUT", "/configurations/service", A, PersonalizerApi.put_service_configuration),
    Route("GET", "/configurations/policy", A, PersonalizerApi.get_policy),
    Route("PUT", "/configurations/policy", A, PersonalizerApi.put_policy),
    Route("DELETE", "/configurations/policy", A, PersonalizerApi.reset_policy),
    Route("POST", "/configurations/applyFromEvaluation", A, PersonalizerApi.apply_from_evaluation),
    Route("GET", "/evaluations", A, PersonalizerApi.list_evaluations),
    Route("PUT", "/evaluations/{evaluation_id}", A, PersonalizerApi.create_evaluation),
    Route("GET", "/evaluations/{evaluation_id}", A, PersonalizerApi.get_evaluation),
    Route("DELETE", "/evaluations/{evaluation_id}", A, PersonalizerApi.delete_evaluation),
    Route("GET", "/featureImportances", A, PersonalizerApi.list_importances),
    Route("PUT", "/featureImportances/{importance_id}", A, PersonalizerApi.create_importance),
    Route("GET", "/featureImportances/{importance_id}", A, PersonalizerApi.get_importance),
    Route("DELETE", "/featureImportances/{importance_id}", A, PersonalizerApi.delete_importance),
    Route("DELETE", "/logs", A, PersonalizerApi.delete_logs),
    Route("GET", "/logs/properties", A, PersonalizerApi.log_properties),
    Route("GET", "/model", A, PersonalizerApi.export_model),
    Route("PUT", "/model", A, PersonalizerApi.import_model),
    Route("DELETE", "/model", A, PersonalizerApi.reset_model),
    Route("GET", "/model/properties", A, PersonalizerApi.model_properties),
)
