"""The WebSocket handshake's security: limits per address, bearer tokens, no query tokens.

websockets calls :meth:`HandshakeGuard.process_request` for each upgrade
request, on the loop, before it accepts: a refusal here is an HTTP answer
(401, 429, 503) and no WebSocket is ever opened. What it admits it
remembers (connection id, address, principal) for the transport's handler
to pick up; what it counted is released when the connection is lost,
whether or not the upgrade went through. The decisions themselves are pure
(actors/auth.py, actors/limits.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from adwd.actors.auth import (
    PROTOCOL,
    QUERY_CREDENTIALS,
    Authenticator,
    AuthFailed,
    Permission,
    Principal,
    SecurityConfig,
    scope_of,
    token_from_subprotocols,
)
from adwd.actors.limits import AddressLimits, PrincipalLimits
from adwd.events.domain import AccessDenied, AuthAttempted, ConnectionOpened, DomainEvent
from adwd.events.errors import ErrorCode
from adwd.transport.http_api import HttpRequest, Reply, error

log = logging.getLogger(__name__)

Audit = Callable[[DomainEvent, str, str], None]  # (event, connection id or "", principal)


@dataclass(frozen=True, slots=True)
class Admitted:
    """What the handshake learnt about a connection it let through."""

    connection_id: str
    address: str
    principal: Principal | None


def select_subprotocol(
    _connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """``adwd.v1`` if the client offers it; never echo a bearer subprotocol."""
    return Subprotocol(PROTOCOL) if PROTOCOL in offered else None


def http_permission(method: str, path: str) -> Permission | None:
    """The permission a plain HTTP request needs with authentication on (None: open).

    Probes stay open; /health and /metrics need ``monitor:read`` (or loopback:
    the host's own monitoring); the board's DELETE needs ``workflow:cancel``;
    every other read under /api/ needs ``workflow:read``. The POST endpoints of
    running workflows are not here: they have their run's own token."""
    if path in ("/health", "/metrics"):
        return Permission.MONITOR_READ
    if method == "DELETE":
        return Permission.WORKFLOW_CANCEL
    if path.startswith("/api/"):
        return Permission.WORKFLOW_READ
    return None


def address_of(connection: ServerConnection) -> str:
    """The peer's IP address ('' if unknown)."""
    peer = connection.remote_address
    return str(peer[0]) if peer else ""


class HandshakeGuard:
    """The security of every upgrade request (loop thread only)."""

    def __init__(
        self,
        config: SecurityConfig,
        authenticator: Authenticator | None,
        audit: Audit,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.principal_limits = PrincipalLimits(config.limits)
        self._addresses = AddressLimits(config.limits)
        self._audit = audit
        self._admitted: dict[ServerConnection, Admitted] = {}

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse (an HTTP answer) or admit an upgrade request."""
        address = address_of(connection)
        now = time.monotonic()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        if QUERY_CREDENTIALS & {name.lower() for name in query}:
            self._audit(
                AccessDenied(address=address, outcome="unauthenticated", limit="query_token"),
                "",
                "anonymous",
            )
            return self._refuse(
                connection,
                HTTPStatus.BAD_REQUEST,
                "A credential in the URL is refused (URLs end up in logs): send it as "
                "'Authorization: Bearer', as the adwd.bearer.<base64url> subprotocol, or in "
                "an 'authenticate' message.",
            )
        if self.config.limits_on:
            refused = self._addresses.admit(address, now)
            if refused is not None:
                self._audit(
                    AccessDenied(
                        address=address,
                        outcome="rate_limited",
                        limit=refused.limit,
                        retry_after=refused.retry_after,
                    ),
                    "",
                    "anonymous",
                )
                status = (
                    HTTPStatus.SERVICE_UNAVAILABLE
                    if refused.limit == "max_connections"
                    else HTTPStatus.TOO_MANY_REQUESTS
                )
                response = self._refuse(
                    connection,
                    status,
                    f"Too many connections ({refused.limit}); retry after "
                    f"{refused.retry_after:g} s.",
                )
                response.headers["Retry-After"] = str(max(1, round(refused.retry_after)))
                return response
        self._release_on_close(connection, address, counted=self.config.limits_on)
        cid = secrets.token_hex(6)
        principal = None
        if self.authenticator is not None:
            try:
                principal = self._bearer(request.headers)
            except AuthFailed as failed:
                self.auth_failed(address)
                attempt = AuthAttempted(
                    address=address, method="bearer", outcome="failure", reason=failed.reason
                )
                self._audit(attempt, cid, "anonymous")
                response = self._refuse(connection, HTTPStatus.UNAUTHORIZED, failed.message)
                response.headers["WWW-Authenticate"] = 'Bearer realm="adwd"'
                return response
            if principal is not None:
                attempt = AuthAttempted(
                    address=address,
                    method=principal.method,
                    outcome="success",
                    user_id=principal.user_id,
                    connection_id=cid,
                )
                self._audit(attempt, cid, principal.user_id)
        self._admitted[connection] = Admitted(cid, address, principal)
        origin = request.headers.get("Origin") or ""
        user = principal.user_id if principal else ""
        opened = ConnectionOpened(connection_id=cid, address=address, origin=origin, user_id=user)
        self._audit(opened, cid, user or "anonymous")
        return None

    def admitted(self, connection: ServerConnection) -> Admitted:
        """What the handshake admitted this connection as (forgotten once asked)."""
        found = self._admitted.pop(connection, None)
        return found or Admitted(secrets.token_hex(6), address_of(connection), None)

    def auth_failed(self, address: str) -> None:
        """A failed authentication from ``address`` (handshake or message)."""
        if self.config.limits_on:
            self._addresses.auth_failed(address, time.monotonic())

    def authorize_http(
        self, request: HttpRequest, address: str, local: bool
    ) -> Reply | Principal | None:
        """Who may send a plain HTTP request, with authentication on (docs/security.md).

        A refusal (401, 403, 429), or what to answer within: the principal whose
        grant limits the runs shown, or None for everything (authentication off, an
        unscoped principal, a probe, loopback reading /health or /metrics). Every
        refusal is audited with the peer's address, never with the credential.
        """
        if self.authenticator is None:
            return None
        need = http_permission(request.method, request.path)
        if need is None or (local and need == Permission.MONITOR_READ):
            return None
        what = f"{request.method} {request.path}"[:200]
        now = time.monotonic()
        locked = self._addresses.locked(address, now) if self.config.limits_on else 0.0
        if locked:
            # Counted, not recorded again: the failures that locked it out were.
            return error(
                HTTPStatus.TOO_MANY_REQUESTS,
                ErrorCode.RATE_LIMITED,
                f"Too many failed authentications from {address}; retry after {locked:g} s.",
                (("Retry-After", str(max(1, round(locked)))),),
            )
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            denied = AccessDenied(
                address=address,
                outcome="unauthenticated",
                message_type=what,
                permission=need.value,
            )
            self._audit(denied, "", "anonymous")
            return error(
                HTTPStatus.UNAUTHORIZED,
                ErrorCode.UNAUTHORIZED,
                f"{what} needs 'Authorization: Bearer <token>' with {need.value!r} "
                "(adwd token create, or auth_response.token).",
                (("WWW-Authenticate", 'Bearer realm="adwd"'),),
            )
        try:
            principal = self.authenticator.verify_bearer(token.strip(), time.time())
        except AuthFailed as failed:
            self.auth_failed(address)
            attempt = AuthAttempted(
                address=address, method="bearer", outcome="failure", reason=failed.reason
            )
            self._audit(attempt, "", "anonymous")
            return error(
                HTTPStatus.UNAUTHORIZED,
                ErrorCode.UNAUTHORIZED,
                failed.message,
                (("WWW-Authenticate", 'Bearer realm="adwd"'),),
            )
        if not principal.may(need):
            denied = AccessDenied(
                address=address,
                outcome="forbidden",
                message_type=what,
                permission=need.value,
                user_id=principal.user_id,
            )
            self._audit(denied, "", principal.user_id)
            return error(
                HTTPStatus.FORBIDDEN,
                ErrorCode.FORBIDDEN,
                f"{principal.user_id!r} may not {what}: it needs the {need.value!r} "
                "permission. Ask the operator for it.",
            )
        # A success is not recorded: boards poll the read API every few seconds.
        return scope_of(principal)

    def _bearer(self, headers: Headers) -> Principal | None:
        """The principal of a bearer token in the headers, None if there is none."""
        assert self.authenticator is not None
        token = None
        authorization = headers.get("Authorization")
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthFailed("malformed", "Use 'Authorization: Bearer <token>'.")
            token = value.strip()
        else:
            offered = [
                p.strip()
                for value in headers.get_all("Sec-WebSocket-Protocol")
                for p in value.split(",")
            ]
            token = token_from_subprotocols(offered)
        if token is None:
            return None
        return self.authenticator.verify_bearer(token, time.time())

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, text: str) -> Response:
        self._admitted.pop(connection, None)
        return connection.respond(status, text + "\n")

    def _release_on_close(self, connection: ServerConnection, address: str, counted: bool) -> None:
        async def release() -> None:
            try:
                await connection.wait_closed()
            finally:
                if counted:
                    self._addresses.closed(address, time.monotonic())
                self._admitted.pop(connection, None)

        task = asyncio.get_running_loop().create_task(release())
        _pending.add(task)
        task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()  # release tasks (asyncio keeps weak references)
