"""The one exception tree of adwd, and the wire's error and close codes.

Every error adwd raises derives from :class:`AdwdError`. Errors of libraries
(sqlite3, websockets, the OS) are translated where they are caught, with
``raise ... from``, so callers handle one tree.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """Stable codes carried by ``error`` messages and rejected triggers."""

    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    VALIDATION_ERROR = "validation_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    NOT_IMPLEMENTED = "not_implemented"  # HTTP 501: a board endpoint adwd does not serve (issue 14)


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses.

    1000 is never used for a connection the server ends: browser clients do
    not reconnect after a normal closure.
    """

    GOING_AWAY = 1001  # service shutting down; reconnect later
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # too slow to keep up; resume from the last seq
    # Security (docs/security.md): application codes, so a client can tell them apart.
    UNAUTHENTICATED = 4401  # no valid authentication in time, too many failures, token expired
    FORBIDDEN = 4403  # kept sending what its permissions do not allow
    RATE_LIMITED = 4429  # kept sending past its limits or spent its error budget


class AdwdError(Exception):
    """Root of every error adwd raises."""


class ConfigError(AdwdError):
    """The configuration (file, environment or flags) is invalid."""


class StoreError(AdwdError):
    """The event store could not be opened, read or written."""


class ProtocolError(AdwdError):
    """An inbound message was rejected; carries what the client is told."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class WorkflowError(AdwdError):
    """A workflow could not be started (bad template, missing script...)."""
