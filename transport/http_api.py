"""HTTP requests with a body, on the WebSocket port.

websockets' HTTP parser serves the opening handshake only (GET, no body), so
POST and OPTIONS are taken off the connection before it sees them: a
``ServerConnection`` subclass (websockets' ``create_connection`` hook) looks
at the request line of each new connection, handles these methods itself
and closes; every other request goes to websockets unchanged.

Endpoints (for existing ADW scripts): ``POST /api/workflow-updates`` and
``POST /api/stage-event``, accepted for runs that are running, from loopback
or with the run's token (``Authorization: Bearer $ADWD_RUN_TOKEN``).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, assert_never

import msgspec
from websockets.asyncio.server import ServerConnection

from adwd.actors.messages import LogLine, Progress, RouteOutcome, StageReport
from adwd.events.errors import ErrorCode
from adwd.events.http import (
    StatusUpdatePost,
    stage_event_decoder,
    workflow_update_decoder,
)
from adwd.projections.stages import STAGES

LOCAL_ORIGIN = re.compile(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$")
MAX_BODY = 1024 * 1024
MAX_HEAD = 65536  # request line and headers
BODY_METHODS = (b"POST ", b"OPTIONS ", b"PUT ", b"PATCH ", b"DELETE ")

# (adw_id, message for the run's actor, bearer token, from loopback) -> what came of it
Route = Callable[[str, object, str | None, bool], RouteOutcome]


class HttpAwareConnection(ServerConnection):
    """A WebSocket connection that also answers POST/OPTIONS requests itself."""

    def __init__(self, *args: Any, route: Route, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._route = route
        self._head = b""
        self._mode: str | None = None  # None: undecided, "ws", "http"

    def data_received(self, data: bytes) -> None:
        """Decide on the first line; then pass bytes on, or collect the HTTP request."""
        if self._mode == "ws":
            super().data_received(data)
            return
        self._head += data
        if self._mode is None:
            if not any(m.startswith(self._head[: len(m)]) for m in BODY_METHODS):
                self._mode, data, self._head = "ws", self._head, b""
                super().data_received(data)
                return
            if len(self._head) < 8:
                return
            self._mode = "http"
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._reply(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    _error(f"Headers over {MAX_HEAD} bytes.", ErrorCode.VALIDATION_ERROR),
                )
            return
        head, body = self._head[:end].decode("latin-1"), self._head[end + 4 :]
        lines = head.split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                _error("Body over 1 MiB; send smaller updates.", ErrorCode.VALIDATION_ERROR),
            )
            return
        if len(body) < length:
            return  # more to come
        self._mode = "done"
        task = asyncio.get_running_loop().create_task(
            self._answer(method, path, headers, body[:length])
        )
        task.add_done_callback(lambda t: t.exception())

    async def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        origin = headers.get("origin")
        cors = origin if origin is not None and LOCAL_ORIGIN.match(origin) else None
        if method == "OPTIONS":
            self._reply(HTTPStatus.NO_CONTENT, None, cors, preflight=True)
            return
        if method != "POST" or path not in ("/api/workflow-updates", "/api/stage-event"):
            self._reply(
                HTTPStatus.NOT_FOUND,
                _error(
                    f"No {method} {path}. POST to /api/workflow-updates or /api/stage-event.",
                    ErrorCode.NOT_FOUND,
                ),
                cors,
            )
            return
        try:
            adw_id, message = _parse(path, body)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, _error(str(exc), ErrorCode.VALIDATION_ERROR), cors)
            return
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        outcome = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._route, adw_id, message, token, self._local())
        )
        self._reply(*route_reply(outcome, adw_id), cors)

    def _local(self) -> bool:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        try:
            return bool(peer) and ipaddress.ip_address(peer[0]).is_loopback
        except ValueError:
            return False

    def _reply(
        self,
        status: HTTPStatus,
        body: object,
        cors: str | None = None,
        *,
        preflight: bool = False,
    ) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"HTTP/1.1 {status.value} {status.phrase}", "Connection: close",
                 f"Content-Length: {len(payload)}"]  # fmt: skip
        if payload:
            lines.append("Content-Type: application/json")
        if cors is not None:
            lines += [f"Access-Control-Allow-Origin: {cors}", "Vary: Origin"]
            if preflight:
                lines += ["Access-Control-Allow-Methods: GET, POST, OPTIONS",
                          "Access-Control-Allow-Headers: Content-Type, Authorization",
                          "Access-Control-Max-Age: 600"]  # fmt: skip
        self._mode = "done"
        if self.transport is not None:
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            self.transport.close()


def _parse(path: str, body: bytes) -> tuple[str, object]:
    """The adw_id a body is about, and the message for that run's actor."""
    if path == "/api/workflow-updates":
        update = workflow_update_decoder.decode(body)
        if isinstance(update, StatusUpdatePost):
            d = update.data
            return d.adw_id, Progress(d.progress_percent, d.current_step or None, d.message or None)
        return update.data.adw_id, LogLine(update.data.level, update.data.message)
    event = stage_event_decoder.decode(body)
    stage = event.target()
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not a Kanban stage; use one of: {', '.join(STAGES)}")
    return event.adw_id, StageReport(stage, event.message)


def route_reply(outcome: RouteOutcome, adw_id: str) -> tuple[HTTPStatus, dict[str, str]]:
    """The HTTP answer to a routed update: one case per outcome, checked exhaustive."""
    match outcome:
        case RouteOutcome.ACCEPTED:
            return HTTPStatus.ACCEPTED, {"status": "accepted", "adw_id": adw_id}
        case RouteOutcome.FORBIDDEN:
            return HTTPStatus.FORBIDDEN, _error(
                "Not from loopback and no valid run token: send "
                "'Authorization: Bearer $ADWD_RUN_TOKEN'.",
                ErrorCode.FORBIDDEN,
            )
        case RouteOutcome.NOT_FOUND:
            return HTTPStatus.NOT_FOUND, _error(
                f"No run of adw_id {adw_id!r} is running; updates are accepted only "
                "from running workflows.",
                ErrorCode.NOT_FOUND,
            )
    assert_never(outcome)


def _error(message: str, code: ErrorCode) -> dict[str, str]:
    """The body of every HTTP error: the same codes as the WebSocket ``error``."""
    return {"error": code.value, "message": message}
