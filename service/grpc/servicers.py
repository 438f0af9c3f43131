"""gRPC servicers: convert, call the decision plane, convert back. Nothing else lives here."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from service._pb.kairos.v1 import admin_service_pb2 as admin_pb
from service._pb.kairos.v1 import admin_service_pb2_grpc as admin_grpc
from service._pb.kairos.v1 import decision_service_pb2 as decision_pb
from service._pb.kairos.v1 import decision_service_pb2_grpc as decision_grpc
from service._pb.kairos.v1 import feature_service_pb2 as feature_pb
from service._pb.kairos.v1 import feature_service_pb2_grpc as feature_grpc
from service.audit import AuditLog
from service.domain import DecisionPointRecord
from service.errors import Code, KairosError, invalid
from service.grpc import auth, converters
from service.grpc.errors import status_of
from service.offline.export import ExportProgress
from service.plane import DecisionPlane, RankOutput
from service.version import VERSION

log = structlog.get_logger("kairos.rpc")


class ForwardedError(Exception):
    """The learning process answered a passed-through call with an error status: relay it as it is."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: object) -> None:
        super().__init__(details)
        self.code, self.details, self.trailers = code, details, trailers


Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def _check_ready(servicer: Any) -> None:
    if not servicer.ready():
        raise KairosError(Code.UNAVAILABLE, "NOT_READY", "Kairos is starting or stopping; retry shortly")


async def _abort(method: str, context: grpc.aio.ServicerContext, error: Exception) -> None:
    """End the call with the status ``error`` stands for (raises): a domain error's code and message, a
    relayed one as it came, anything else INTERNAL with the details only in the server log."""
    if isinstance(error, KairosError):
        code, message, trailers = status_of(error)
        await context.abort(code, message, trailing_metadata=trailers)
    if isinstance(error, ForwardedError):
        await context.abort(error.code, error.details, trailing_metadata=error.trailers)
    log.error("rpc_failed", method=method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")


def rpc(method: str) -> Callable[[Handler[Request, Response]], Handler[Request, Response]]:
    """Domain errors turned into statuses (never a stack trace or a path). The log line and metrics
    of each call come from service.grpc.interceptors."""

    def decorate(handler: Handler[Request, Response]) -> Handler[Request, Response]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
            try:
                _check_ready(self)
                return await handler(self, request, context)
            except Exception as error:
                await _abort(method, context, error)
            raise AssertionError("unreachable: abort raises")

        return wrapper

    return decorate


def rank_deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline on time.monotonic()'s clock; a call whose deadline has passed is not computed."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise KairosError(
            Code.DEADLINE_EXCEEDED,
            "DEADLINE_PASSED",
            "the call's deadline passed before Kairos started on it; nothing was ranked or recorded",
        )
    return time.monotonic() + float(remaining)


def ranked(output: RankOutput, context: grpc.aio.ServicerContext) -> decision_pb.RankResponse:
    """The response, with the server and model versions in the trailing metadata (for canary comparisons)."""
    if output.model_version:
        context.set_trailing_metadata((("kairos-version", VERSION), ("kairos-model-version", output.model_version)))
    else:
        context.set_trailing_metadata((("kairos-version", VERSION),))
    return converters.rank_response(output)


def rank_stream_response(plane: DecisionPlane, request: decision_pb.RankRequest) -> decision_pb.RankStreamResponse:
    """One RankStream result: the ranking, or the error status the request would have had alone."""
    try:
        ranked = converters.rank_response(plane.rank(converters.rank_input(request)))
        return decision_pb.RankStreamResponse(response=ranked, subject_id=request.subject_id)
    except KairosError as error:
        code, message, _ = status_of(error)
        return decision_pb.RankStreamResponse(
            error_code=code.value[0], error_reason=error.reason, error_message=message, subject_id=request.subject_id
        )
    except Exception:
        log.exception("rpc_failed", method="RankStream")
        return decision_pb.RankStreamResponse(
            error_code=grpc.StatusCode.INTERNAL.value[0],
            error_reason="INTERNAL",
            error_message="internal error; the server log has the details",
            subject_id=request.subject_id,
        )


def rpc_stream(
    method: str,
) -> Callable[
    [Callable[[Any, Request, Any], AsyncIterator[Response]]], Callable[[Any, Request, Any], AsyncIterator[Response]]
]:
    """``rpc`` for server-streaming handlers (async generators)."""

    def decorate(
        handler: Callable[[Any, Request, Any], AsyncIterator[Response]],
    ) -> Callable[[Any, Request, Any], AsyncIterator[Response]]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> AsyncIterator[Response]:
            try:
                _check_ready(self)
                async for response in handler(self, request, context):
                    yield response
            except Exception as error:
                await _abort(method, context, error)

        return wrapper

    return decorate


class _Base:
    def __init__(self, plane: DecisionPlane, ready: Callable[[], bool]) -> None:
        self.plane = plane
        self.ready = ready


class DecisionServicer(_Base, decision_grpc.DecisionServiceServicer):
    @rpc("Rank")
    async def Rank(self, request: decision_pb.RankRequest, context: grpc.aio.ServicerContext) -> Any:
        deadline = rank_deadline(context)
        return ranked(self.plane.rank(converters.rank_input(request, deadline)), context)

    async def RankStream(
        self, requests: AsyncIterator[decision_pb.RankStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[decision_pb.RankStreamResponse]:
        if not self.ready():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Kairos is starting or stopping; retry shortly")
        async for item in requests:
            yield rank_stream_response(self.plane, item.request)

    @rpc("RankSlots")
    async def RankSlots(self, request: decision_pb.RankSlotsRequest, context: grpc.aio.ServicerContext) -> Any:
        output = self.plane.rank_slots(converters.rank_slots_input(request, rank_deadline(context)))
        versions = [("kairos-version", VERSION)]
        if output.model_version:
            versions.append(("kairos-model-version", output.model_version))
        context.set_trailing_metadata(tuple(versions))
        return converters.rank_slots_response(output)

    @rpc("Reward")
    async def Reward(self, request: decision_pb.RewardRequest, context: grpc.aio.ServicerContext) -> Any:
        self.plane.reward(request.decision_point, request.event_id, request.value, request.reward_id, request.slot_id)
        return decision_pb.RewardResponse()

    @rpc("Activate")
    async def Activate(self, request: decision_pb.ActivateRequest, context: grpc.aio.ServicerContext) -> Any:
        self.plane.activate(request.decision_point, request.event_id)
        return decision_pb.ActivateResponse()


def _config_json(record: DecisionPointRecord) -> dict[str, Any]:
    return {**record.config.to_dict(), "model_generation": record.generation}


def _record(
    audit: AuditLog, context: Any, action: str, target: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    caller = auth.current_caller()
    actor = caller.principal.name if caller else "anonymous"
    peer = (caller.forwarded_peer if caller else None) or context.peer()
    audit.record(actor, peer, action, target, before, after)


class AdminServicer(_Base, admin_grpc.AdminServiceServicer):
    def __init__(self, plane: DecisionPlane, ready: Callable[[], bool], audit: AuditLog) -> None:
        super().__init__(plane, ready)
        self.audit = audit

    def _audit(
        self, context: Any, action: str, target: str, before: dict[str, Any] | None, after: dict[str, Any] | None
    ) -> None:
        _record(self.audit, context, action, target, before, after)

    @rpc("CreateDecisionPoint")
    async def CreateDecisionPoint(self, request: admin_pb.CreateDecisionPointRequest, context: Any) -> Any:
        record = self.plane.create_decision_point(converters.config(request.decision_point))
        self._audit(context, "CreateDecisionPoint", record.config.name, None, _config_json(record))
        return converters.decision_point_pb(record)

    @rpc("GetDecisionPoint")
    async def GetDecisionPoint(self, request: admin_pb.GetDecisionPointRequest, context: Any) -> Any:
        return converters.decision_point_pb(self.plane.get_decision_point(request.name))

    @rpc("ListDecisionPoints")
    async def ListDecisionPoints(self, request: admin_pb.ListDecisionPointsRequest, context: Any) -> Any:
        if request.page_size < 0:
            raise invalid("INVALID_PAGE_SIZE", "page_size must not be negative (0 means the default, 100)")
        page, token = self.plane.list_decision_points(request.page_size or 100, request.page_token)
        return admin_pb.ListDecisionPointsResponse(
            decision_points=[converters.decision_point_pb(r) for r in page], next_page_token=token
        )

    @rpc("UpdateDecisionPoint")
    async def UpdateDecisionPoint(self, request: admin_pb.UpdateDecisionPointRequest, context: Any) -> Any:
        before = self.plane.get_decision_point(request.decision_point.name)
        wanted = converters.updated_config(before.config, request)
        after = self.plane.update_decision_point(wanted, request.reset_model)
        self._audit(context, "UpdateDecisionPoint", after.config.name, _config_json(before), _config_json(after))
        return converters.decision_point_pb(after)

    @rpc("DeleteDecisionPoint")
    async def DeleteDecisionPoint(self, request: admin_pb.DeleteDecisionPointRequest, context: Any) -> Any:
        before = self.plane.get_decision_point(request.name)
        self.plane.delete_decision_point(request.name)
        self._audit(context, "DeleteDecisionPoint", request.name, _config_json(before), None)
        return admin_pb.DeleteDecisionPointResponse()

    @rpc("GetStats")
    async def GetStats(self, request: admin_pb.GetStatsRequest, context: Any) -> Any:
        return converters.stats_pb(self.plane.stats(request.decision_point))

    @rpc("ExportModel")
    async def ExportModel(self, request: admin_pb.ExportModelRequest, context: Any) -> Any:
        model, version = self.plane.export_model(request.name)
        return admin_pb.ExportModelResponse(
            model=model, model_version=version, sha256=hashlib.sha256(model).hexdigest()
        )

    @rpc("ImportModel")
    async def ImportModel(self, request: admin_pb.ImportModelRequest, context: Any) -> Any:
        before = self.plane.model_version(request.name)
        version = self.plane.import_model(request.name, request.model)
        after = {"model_version": version, "model_sha256": hashlib.sha256(request.model).hexdigest()}
        self._audit(context, "ImportModel", request.name, {"model_version": before}, after)
        return admin_pb.ImportModelResponse(model_version=version)

    @rpc("ResetModel")
    async def ResetModel(self, request: admin_pb.ResetModelRequest, context: Any) -> Any:
        before = self.plane.model_version(request.name)
        version = self.plane.reset_model(request.name)
        self._audit(context, "ResetModel", request.name, {"model_version": before}, {"model_version": version})
        return admin_pb.ResetModelResponse(model_version=version)

    @rpc("ListAuditRecords")
    async def ListAuditRecords(self, request: admin_pb.ListAuditRecordsRequest, context: Any) -> Any:
        if request.page_size < 0:
            raise invalid("INVALID_PAGE_SIZE", "page_size must not be negative (0 means the default, 100)")
        after = converters.audit_page_token(request.page_token)
        records, last = self.audit.page(request.page_size or 100, after)
        return admin_pb.ListAuditRecordsResponse(
            audit_records=[converters.audit_record_pb(r) for r in records],
            next_page_token="" if last is None else str(last),
        )

    @rpc("ListCheckpoints")
    async def ListCheckpoints(self, request: admin_pb.ListCheckpointsRequest, context: Any) -> Any:
        metas = self.plane.list_checkpoints(request.name)
        return admin_pb.ListCheckpointsResponse(checkpoints=[converters.checkpoint_pb(m) for m in metas])

    @rpc("RollbackModel")
    async def RollbackModel(self, request: admin_pb.RollbackModelRequest, context: Any) -> Any:
        before = self.plane.model_version(request.name)
        version, dropped = self.plane.rollback_model(request.name, request.seq)
        self._audit(
            context,
            "RollbackModel",
            request.name,
            {"model_version": before},
            {"model_version": version, "checkpoint_seq": request.seq, "dropped_events": dropped},
        )
        return admin_pb.RollbackModelResponse(model_version=version, dropped_events=dropped)

    @rpc("PromoteChallenger")
    async def PromoteChallenger(self, request: admin_pb.PromoteChallengerRequest, context: Any) -> Any:
        before = self.plane.get_decision_point(request.name)
        before_json = {**_config_json(before), "model_version": self.plane.model_version(request.name)}
        after = self.plane.promote_challenger(request.name)
        version = self.plane.model_version(request.name)
        self._audit(
            context, "PromoteChallenger", request.name, before_json, {**_config_json(after), "model_version": version}
        )
        return admin_pb.PromoteChallengerResponse(
            decision_point=converters.decision_point_pb(after), model_version=version
        )

    @rpc_stream("ExportDecisions")
    async def ExportDecisions(
        self, request: admin_pb.ExportDecisionsRequest, context: Any
    ) -> AsyncIterator[admin_pb.ExportDecisionsResponse]:
        progress = ExportProgress()
        since, until = converters.export_window(request)
        pages = self.plane.export_decisions(request.decision_point, progress, since, until)
        loop = asyncio.get_running_loop()
        while True:
            # Each page is read and encoded off the event loop, so Rank is not held up by a long export.
            page = await loop.run_in_executor(None, next, pages, None)
            if page is None:
                return
            if page:
                yield admin_pb.ExportDecisionsResponse(
                    events=page, still_open=progress.still_open, expired=progress.expired
                )


class FeatureServicer(_Base, feature_grpc.FeatureServiceServicer):
    """Catalog changes and forgetting are audited like AdminService changes; profile and behaviour writes
    are data, not administration."""

    def __init__(self, plane: DecisionPlane, ready: Callable[[], bool], audit: AuditLog) -> None:
        super().__init__(plane, ready)
        self.audit = audit

    @rpc("PutProfile")
    async def PutProfile(self, request: feature_pb.PutProfileRequest, context: Any) -> Any:
        written = converters.time_ms(request.update_time, request.HasField("update_time"), self.plane.clock())
        groups = converters.profile_groups(request.features)
        self.plane.customers.put_profile(request.subject_id, groups, written, request.replace)
        return feature_pb.PutProfileResponse()

    @rpc("GetProfile")
    async def GetProfile(self, request: feature_pb.GetProfileRequest, context: Any) -> Any:
        return converters.profile_pb(request.subject_id, self.plane.customers.get_profile(request.subject_id))

    @rpc("DeleteProfile")
    async def DeleteProfile(self, request: feature_pb.DeleteProfileRequest, context: Any) -> Any:
        forgotten = self.plane.customers.forget(request.subject_id)
        # The audit says that a subject was forgotten, not which: keeping the id would defeat the purpose.
        _record(self.audit, context, "DeleteProfile", "", None, {"decisions_forgotten": forgotten})
        return feature_pb.DeleteProfileResponse(decisions_forgotten=forgotten)

    @rpc("TrackEvent")
    async def TrackEvent(self, request: feature_pb.TrackEventRequest, context: Any) -> Any:
        happened = converters.time_ms(request.event_time, request.HasField("event_time"), self.plane.clock())
        self.plane.customers.track(request.subject_id, request.event_type, request.category, happened)
        if not request.HasField("rank"):
            return feature_pb.TrackEventResponse()
        rank_request = decision_pb.RankRequest()
        rank_request.CopyFrom(request.rank)
        rank_request.subject_id = request.subject_id
        ranked = self.plane.rank(converters.rank_input(rank_request))
        return feature_pb.TrackEventResponse(rank=converters.rank_response(ranked))

    @rpc("PutActions")
    async def PutActions(self, request: feature_pb.PutActionsRequest, context: Any) -> Any:
        self.plane.get_decision_point(request.decision_point)  # NOT_FOUND for an unknown one
        entries = [converters.catalog_entry(action) for action in request.actions]
        self.plane.customers.put_actions(request.decision_point, entries, request.replace)
        after = {"action_ids": [e.id for e in entries], "replace": request.replace}
        _record(self.audit, context, "PutActions", request.decision_point, None, after)
        return feature_pb.PutActionsResponse()

    @rpc("ListActions")
    async def ListActions(self, request: feature_pb.ListActionsRequest, context: Any) -> Any:
        if request.page_size < 0:
            raise invalid("INVALID_PAGE_SIZE", "page_size must not be negative (0 means the default, 100)")
        self.plane.get_decision_point(request.decision_point)
        page, token = self.plane.customers.list_actions(
            request.decision_point, request.page_size or 100, request.page_token
        )
        return feature_pb.ListActionsResponse(
            actions=[converters.catalog_action_pb(entry) for entry in page], next_page_token=token
        )

    @rpc("DeleteAction")
    async def DeleteAction(self, request: feature_pb.DeleteActionRequest, context: Any) -> Any:
        self.plane.get_decision_point(request.decision_point)
        self.plane.customers.delete_action(request.decision_point, request.action_id)
        _record(self.audit, context, "DeleteAction", request.decision_point, {"action_id": request.action_id}, None)
        return feature_pb.DeleteActionResponse()

    @rpc("GetContactHistory")
    async def GetContactHistory(self, request: feature_pb.GetContactHistoryRequest, context: Any) -> Any:
        history = self.plane.customers.contact_history(request.subject_id)
        now = self.plane.clock()
        return feature_pb.GetContactHistoryResponse(
            exposures=[converters.exposure_pb(e, now) for e in reversed(history)]
        )
