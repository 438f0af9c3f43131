"""Outbound campaigns: ``kairos rank-batch`` ranks a decision point's catalog for a list of subjects
through a running server (one RankStream), so every Rank goes through the same contact rules and is
logged as usual.

Input: one subject a line, either a bare subject id or JSON ``{"subject_id": "c1", "context":
{"namespace": {"feature": value}}}``. Output: JSON Lines, one per subject, with the event id and the action
to send, or the reason nothing may be sent (for example a frequency cap). With ``--event-prefix`` each
event id is the prefix plus the subject id, so running the same campaign again after an interruption
answers with the stored decisions instead of ranking twice.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc

from service._pb.kairos.v1 import decision_service_pb2 as decision_pb
from service._pb.kairos.v1 import decision_service_pb2_grpc as decision_grpc
from service._pb.kairos.v1 import types_pb2 as types_pb

# Errors worth reporting per subject; any other status stops the batch.
_PER_SUBJECT = {grpc.StatusCode.FAILED_PRECONDITION.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0]}


class BatchError(RuntimeError):
    """The batch cannot go on (bad input line, server unreachable); the message says why."""


def _value(raw: Any) -> types_pb.FeatureValue:
    if isinstance(raw, bool):
        return types_pb.FeatureValue(bool_value=raw)
    if isinstance(raw, int | float):
        return types_pb.FeatureValue(number_value=float(raw))
    return types_pb.FeatureValue(string_value=str(raw))


def requests(lines: IO[str], decision_point: str, channel: str, prefix: str) -> Iterator[decision_pb.RankRequest]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        context: dict[str, dict[str, Any]] = {}
        if text.startswith("{"):
            try:
                data = json.loads(text)
                subject, context = data["subject_id"], data.get("context", {})
            except (ValueError, KeyError) as err:
                raise BatchError(f"line {number}: {err}") from None
        else:
            subject = text
        yield decision_pb.RankRequest(
            decision_point=decision_point,
            subject_id=subject,
            channel=channel,
            event_id=f"{prefix}{subject}" if prefix else "",
            context=[
                types_pb.FeatureGroup(namespace=ns, features={k: _value(v) for k, v in features.items()})
                for ns, features in context.items()
            ],
        )


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to reach it: plaintext, or TLS trusting ``ca_pem``; a bearer token."""

    target: str
    token: str = ""
    ca_pem: bytes | None = None

    def channel(self) -> grpc.aio.Channel:
        if self.ca_pem is None:
            return grpc.aio.insecure_channel(self.target)
        return grpc.aio.secure_channel(self.target, grpc.ssl_channel_credentials(self.ca_pem))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


async def _why_refused(
    channel: grpc.aio.Channel, connection: Connection, code: grpc.StatusCode, details: str | None
) -> tuple[grpc.StatusCode, str | None]:
    """A stream the server refuses at once (no token, a token without the serve scope) can reach the client
    as INTERNAL when a request was still being sent; ask once more with a unary call that changes nothing
    (Activate of no event) to learn the real refusal."""
    try:
        await decision_grpc.DecisionServiceStub(channel).Activate(
            decision_pb.ActivateRequest(), timeout=10.0, metadata=connection.metadata()
        )
    except grpc.aio.AioRpcError as err:
        if err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return err.code(), err.details()
    return code, details


async def _run(
    connection: Connection,
    source: IO[str],
    out: IO[str],
    progress: IO[str],
    decision_point: str,
    channel: str,
    prefix: str,
) -> dict[str, int]:
    """Send every request over one RankStream and write each response as it comes back."""
    counts = {"ranked": 0, "not_sent": 0}
    started = last = time.monotonic()

    def stream() -> Iterator[decision_pb.RankStreamRequest]:
        for request in requests(source, decision_point, channel, prefix):
            yield decision_pb.RankStreamRequest(request=request)

    async with connection.channel() as channel_:
        call = decision_grpc.DecisionServiceStub(channel_).RankStream(stream(), metadata=connection.metadata())
        try:
            async for result in call:
                record: dict[str, Any] = {"subject_id": result.subject_id}
                if result.HasField("response"):
                    top = result.response.ranking[0]
                    record |= {
                        "event_id": result.response.event_id,
                        "action_id": top.action_id,
                        "probability": top.probability,
                    }
                    counts["ranked"] += 1
                elif result.error_code in _PER_SUBJECT:
                    record |= {"error": result.error_reason, "message": result.error_message}
                    counts["not_sent"] += 1
                else:
                    raise BatchError(f"subject {result.subject_id!r}: {result.error_reason}: {result.error_message}")
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    done = counts["ranked"] + counts["not_sent"]
                    print(f"ranked {done:,} subjects ({done / (last - started):,.0f}/s)", file=progress, flush=True)
        except grpc.aio.AioRpcError as err:
            code, details = err.code(), err.details()
            if code == grpc.StatusCode.INTERNAL and not counts["ranked"] + counts["not_sent"]:
                code, details = await _why_refused(channel_, connection, code, details)
            raise BatchError(f"{code.name}: {details}") from None
    elapsed = max(time.monotonic() - started, 1e-9)
    done = counts["ranked"] + counts["not_sent"]
    print(
        f"ranked {done:,} subjects in {elapsed:.1f} s ({done / elapsed:,.0f}/s): {counts['ranked']:,} to send, "
        f"{counts['not_sent']:,} not to send",
        file=progress,
        flush=True,
    )
    return counts


def run(
    path: Path,
    connection: Connection,
    decision_point: str,
    channel: str = "",
    prefix: str = "",
    out: IO[str] = sys.stdout,
    progress: IO[str] = sys.stderr,
) -> dict[str, int]:
    with path.open(encoding="utf-8") as source:
        return asyncio.run(_run(connection, source, out, progress, decision_point, channel, prefix))
