"""One connection's security, sans-I/O: a message in, a verdict and effects out.

The ConnectionActor owns one :class:`Guard` and carries out what it returns
(send a frame, close with a code, record an audit event, start a timer,
start delivering runs). The guard decides: is the connection authenticated,
may its principal send this type of message, is it within its limits, has
it spent its error budget, has its token expired. No clock is read here;
the caller passes ``now`` (wall time, epoch seconds; bucket times are
differences of it, so a test can drive them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adwd.actors.auth import (
    ANONYMOUS,
    ANY_TYPE,
    Authenticator,
    AuthFailed,
    Permission,
    Principal,
    SecurityConfig,
    iso,
    new_nonce,
    required_permission,
    scope_of,
)
from adwd.actors.limits import ConnectionLimits, PrincipalLimits, Refused
from adwd.events.codec import encode
from adwd.events.domain import AccessDenied, AuthAttempted, DomainEvent
from adwd.events.errors import CloseCode, ErrorCode
from adwd.events.wire import (
    AuthChallenge,
    AuthChallengeData,
    Authenticate,
    AuthMethod,
    AuthResponse,
    AuthResponseData,
    ClientAuthChallenge,
    Error,
    ErrorData,
)

TimerKind = Literal["deadline", "warn", "expire"]
AUTH_TYPES = frozenset({"authenticate", "auth_challenge"})


@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame to the client."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this code (after what was sent)."""

    code: CloseCode
    reason: str


@dataclass(frozen=True, slots=True)
class Audit:
    """Record this event (stream of the connection, principal ``user_id``)."""

    event: DomainEvent
    user_id: str


@dataclass(frozen=True, slots=True)
class Timer:
    """Call :meth:`Guard.timer` with ``kind`` and ``generation`` after ``delay`` s."""

    kind: TimerKind
    delay: float
    generation: int


@dataclass(frozen=True, slots=True)
class GrantRead:
    """The principal may read runs: bring the connection up to date, then live.
    ``scope``: only the runs that principal may see (None: every run)."""

    scope: Principal | None = None


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Count a failed authentication (or a cut for abuse) against the client's address:
    past ``auth_failures_per_address`` it may not connect for ``auth_lockout_s``."""


@dataclass(frozen=True, slots=True)
class GrantMonitor:
    """The principal may read news of the service: health_status,
    performance_metrics and alerts (``monitor:read``)."""


Effect = Send | Close | Audit | Timer | GrantRead | GrantMonitor | AuthFailure


def _error(
    code: ErrorCode,
    message: str,
    request_id: str | None,
    details: dict[str, object] | None = None,
    retry_after: float | None = None,
) -> Send:
    if retry_after is not None:  # rate_limited: seconds until a retry can succeed
        details = {**(details or {}), "retry_after": retry_after}
    data = ErrorData(message=message, code=code, details=details)
    return Send(encode(Error(data, request_id=request_id)))


class Guard:
    """The security state of one connection."""

    def __init__(
        self,
        *,
        config: SecurityConfig,
        authenticator: Authenticator | None,
        connection_id: str,
        address: str,
        principal: Principal | None,
        principal_limits: PrincipalLimits | None,
    ) -> None:
        self._config = config
        self._auth = authenticator
        self._cid = connection_id
        self._address = address
        # Authentication off: every connection is the anonymous admin (today's behaviour).
        self.principal: Principal | None = principal if authenticator is not None else ANONYMOUS
        self._limits = ConnectionLimits(config.limits) if config.limits_on else None
        # Per principal only with authentication: without it every connection is
        # "anonymous", and one bucket for all would be a service-wide cap.
        self._principal_limits = (
            principal_limits if config.limits_on and authenticator is not None else None
        )
        self._nonce: str | None = None
        self._failures = 0
        self._generation = 0  # of the principal's timers: a refresh makes old ones moot
        self.reading = False  # runs are delivered to this connection
        self.monitoring = self.may_monitor()  # news of the service is delivered to it
        self._limiting = False  # in an episode of rate-limit refusals (audited once)

    @property
    def user_id(self) -> str:
        """The principal's name for events and logs."""
        return self.principal.user_id if self.principal else "anonymous"

    def may_read(self) -> bool:
        """Whether runs may be delivered to this connection (those of its scope)."""
        return self.principal is not None and self.principal.may(Permission.WORKFLOW_READ)

    def may_monitor(self) -> bool:
        """Whether news of the service (health, performance, alerts) may go to it."""
        return self.principal is not None and self.principal.may(Permission.MONITOR_READ)

    def scope(self) -> Principal | None:
        """The principal whose runs this connection sees; None: every run."""
        return scope_of(self.principal) if self.principal is not None else None

    def start(self, now: float) -> list[Effect]:
        """The connection is open: challenge it, or start its principal's timers."""
        if self.principal is None:
            effects = self._challenge(now, "connect")
            return [*effects, Timer("deadline", self._config.auth_timeout_s, 0)]
        return self._expiry_timers(now)

    # -- inbound ------------------------------------------------------------

    def admit(
        self, message_type: str, workflow_type: str | None, request_id: str | None, now: float
    ) -> tuple[bool, list[Effect]]:
        """May this message (not an authentication) be handled now?"""
        p = self.principal
        need = required_permission(message_type)
        if p is None and need is not None:
            effects = self._deny(
                "unauthenticated",
                message_type,
                rid=request_id,
                now=now,
                code=ErrorCode.UNAUTHORIZED,
                message="Authenticate first: answer the auth_challenge with 'authenticate' "
                "(docs/security.md); only ping is allowed before.",
                permission=need,
            )
            return False, effects
        if p is not None and need is not None and not self._permits(p, need, workflow_type):
            effects = self._deny(
                "forbidden",
                message_type,
                rid=request_id,
                now=now,
                code=ErrorCode.FORBIDDEN,
                message=f"{p.user_id!r} may not send {message_type}: it needs the {need.value!r} "
                "permission" + (f" for {workflow_type!r}" if workflow_type else "") + ". "
                "Ask the operator for it.",
                permission=need,
            )
            return False, effects
        refused = self._rate(message_type, now)
        if refused is not None:
            return False, self._limited(refused, message_type, request_id, now)
        self._limiting = False
        return True, []

    def invalid(self, now: float) -> list[Effect]:
        """An invalid frame was answered: spend the error budget."""
        if self._limits is not None and self._limits.invalid(now):
            return self._cut(CloseCode.RATE_LIMITED, "too many invalid messages", "error_budget")
        return []

    def authenticate(self, message: Authenticate | ClientAuthChallenge, now: float) -> list[Effect]:
        """Check a credential; the principal, or a failure (and maybe a close)."""
        rid = message.request_id
        if self._auth is None:
            return [
                _error(
                    ErrorCode.VALIDATION_ERROR,
                    "Authentication is not enabled on this service; send commands directly.",
                    rid,
                )
            ]
        if self.principal is not None:
            # A refresh is a command like any other: a valid credential must not
            # buy unlimited signing and audit writes.
            refused = self._rate(str(message.__struct_config__.tag), now)
            if refused is not None:
                return self._limited(refused, "authenticate", rid, now)
        method, token, key_id, signature = _credential(message)
        nonce, self._nonce = self._nonce, None  # each challenge is answered once
        try:
            if method == "api_key":
                principal = self._auth.verify_api_key(key_id, signature, nonce, self._cid)
            elif method == "token":
                principal = self._auth.verify_token(token, now)
            else:
                principal = self._auth.verify_oauth(token, now)
        except AuthFailed as failed:
            return self._failed(method, failed, rid, now)
        return self._succeeded(principal, rid, now)

    def timer(self, kind: TimerKind, generation: int, now: float) -> list[Effect]:
        """A timer fired: the deadline to authenticate, or the token's expiry."""
        if kind == "deadline":
            if self.principal is not None:
                return []
            return [
                _error(
                    ErrorCode.UNAUTHORIZED,
                    f"No authentication within {self._config.auth_timeout_s:g} s; reconnect "
                    "and answer the auth_challenge at once.",
                    None,
                ),
                *self._cut(CloseCode.UNAUTHENTICATED, "authentication timeout", "auth_timeout"),
            ]
        if generation != self._generation or self.principal is None:
            return []  # re-authenticated since: this timer is moot
        if kind == "warn":
            return self._challenge(now, "expiring")
        return [
            _error(
                ErrorCode.UNAUTHORIZED,
                "Your token expired; reconnect with a fresh one (refresh before expires_at "
                "by sending 'authenticate' again on the open connection).",
                None,
            ),
            *self._cut(CloseCode.UNAUTHENTICATED, "token expired", "token_expired"),
        ]

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _permits(p: Principal, need: Permission, workflow_type: str | None) -> bool:
        if workflow_type == ANY_TYPE:  # fail closed: it may start a type outside the grant
            return Permission.ADMIN in p.permissions or (p.may(need) and not _restricted(p))
        if need == Permission.WORKFLOW_TRIGGER:
            return p.may(need, workflow_type)
        return p.may(need)

    def _rate(self, message_type: str, now: float) -> Refused | None:
        if self._limits is None:
            return None
        refused = self._limits.command(message_type, now)
        if refused is None and self._principal_limits is not None and self.principal:
            refused = self._principal_limits.command(self.principal.user_id, message_type, now)
            if refused is not None:
                self._limits.refused(now)
        return refused

    def cancel_refused(self, adw_id: str, rid: str | None) -> list[Effect]:
        """A scoped principal's cancel of a run outside its grant (or unknown to it)."""
        return [
            _error(
                ErrorCode.FORBIDDEN,
                f"{self.user_id!r} may not cancel {adw_id!r}: it is not one of the runs its "
                "grant covers (its workflow types, or its own runs).",
                rid,
                {"permission": Permission.WORKFLOW_CANCEL.value, "adw_id": adw_id},
            ),
            self._audit_denied(
                "forbidden", "cancel_workflow", permission=Permission.WORKFLOW_CANCEL.value
            ),
        ]

    def _limited(
        self, refused: Refused, message_type: str, rid: str | None, now: float
    ) -> list[Effect]:
        effects: list[Effect] = [
            _error(
                ErrorCode.RATE_LIMITED,
                f"Over the limit {refused.limit}: retry after {refused.retry_after:g} s. "
                "Clients that keep sending past their limit are disconnected.",
                rid,
                {"limit": refused.limit},
                refused.retry_after,
            )
        ]
        if not self._limiting:
            # The first refusal of an episode is recorded, not each one: a flood must
            # not become a flood of log writes (the disconnect is recorded too).
            self._limiting = True
            audit = self._audit_denied(
                "rate_limited", message_type, limit=refused.limit, retry_after=refused.retry_after
            )
            effects.append(audit)
        if self._limits is not None and self._limits.abusive:
            effects += self._cut(CloseCode.RATE_LIMITED, "kept sending past its limits", "abuse")
        return effects

    def _deny(
        self,
        outcome: Literal["unauthenticated", "forbidden"],
        message_type: str,
        *,
        rid: str | None,
        now: float,
        code: ErrorCode,
        message: str,
        permission: Permission,
    ) -> list[Effect]:
        effects: list[Effect] = [
            _error(code, message, rid, {"permission": permission.value}),
            self._audit_denied(outcome, message_type, permission=permission.value),
        ]
        budget_spent = self._limits.invalid(now) if self._limits is not None else False
        if outcome == "unauthenticated":
            self._failures += 1
            if budget_spent or self._failures >= self._config.max_auth_failures + 2:
                effects += self._cut(CloseCode.UNAUTHENTICATED, "not authenticated", outcome)
        elif budget_spent:
            effects += self._cut(CloseCode.FORBIDDEN, "kept sending what it may not", outcome)
        return effects

    def _failed(self, method: str, failed: AuthFailed, rid: str | None, now: float) -> list[Effect]:
        self._failures += 1
        attempt = AuthAttempted(
            address=self._address,
            method=method,
            outcome="failure",
            reason=failed.reason,
            connection_id=self._cid,
        )
        effects: list[Effect] = [
            _error(ErrorCode.UNAUTHORIZED, failed.message, rid, {"reason": failed.reason}),
            Audit(attempt, self.user_id),
            AuthFailure(),
        ]
        if self._failures >= self._config.max_auth_failures:
            effects += self._cut(
                CloseCode.UNAUTHENTICATED, "too many failed authentications", "auth_failures"
            )
        elif self.principal is None or method == "api_key":
            effects += self._challenge(now, "retry")
        return effects

    def _succeeded(self, principal: Principal, rid: str | None, now: float) -> list[Effect]:
        assert self._auth is not None
        self.principal = principal
        self._failures = 0
        self._generation += 1
        token = self._auth.issue(principal, now)
        # api_key: the connection stays valid as long as the key does; expires_at is
        # the issued token's, for reconnecting with it.
        expires = principal.expires_at or now + self._config.token_ttl_s
        response = AuthResponseData(
            token=token,
            user_id=principal.user_id,
            permissions=sorted(principal.permissions),
            expires_at=iso(expires),
        )
        attempt = AuthAttempted(
            address=self._address,
            method=principal.method,
            outcome="success",
            user_id=principal.user_id,
            connection_id=self._cid,
        )
        effects: list[Effect] = [
            Send(encode(AuthResponse(response, request_id=rid))),
            Audit(attempt, principal.user_id),
        ]
        if not self.reading and self.may_read():
            self.reading = True
            effects.append(GrantRead(self.scope()))
        if not self.monitoring and self.may_monitor():
            self.monitoring = True
            effects.append(GrantMonitor())
        return effects + self._expiry_timers(now)

    def _expiry_timers(self, now: float) -> list[Effect]:
        p = self.principal
        if p is None or p.expires_at is None:
            return []
        left = p.expires_at - now
        warn = max(0.0, left - self._config.expiry_warning_s)
        return [
            Timer("warn", warn, self._generation),
            Timer("expire", max(0.0, left) + self._config.expiry_grace_s, self._generation),
        ]

    def _challenge(
        self, now: float, reason: Literal["connect", "retry", "expiring"]
    ) -> list[Effect]:
        assert self._auth is not None
        self._nonce = new_nonce()
        methods: list[AuthMethod] = list(self._config.methods)
        if reason == "expiring" and self.principal and self.principal.expires_at:
            expires_in = max(0.0, self.principal.expires_at - now) + self._config.expiry_grace_s
        else:
            expires_in = self._config.auth_timeout_s
        data = AuthChallengeData(
            challenge=self._nonce,
            method=methods[0],
            expires_in=round(expires_in, 3),
            methods=methods,
            connection_id=self._cid,
            reason=reason,
        )
        return [Send(encode(AuthChallenge(data)))]

    def _audit_denied(
        self,
        outcome: Literal["unauthenticated", "forbidden", "rate_limited", "disconnected"],
        message_type: str = "",
        *,
        permission: str = "",
        limit: str = "",
        retry_after: float | None = None,
    ) -> Audit:
        denied = AccessDenied(
            address=self._address,
            outcome=outcome,
            message_type=message_type,
            permission=permission,
            limit=limit,
            retry_after=retry_after,
            user_id=self.principal.user_id if self.principal else "",
            connection_id=self._cid,
        )
        return Audit(denied, self.user_id)

    def _cut(self, code: CloseCode, reason: str, limit: str) -> list[Effect]:
        effects: list[Effect] = [self._audit_denied("disconnected", limit=limit)]
        if code in (CloseCode.RATE_LIMITED, CloseCode.FORBIDDEN):
            # An abuser that reconnects at once would get a fresh burst each time:
            # its cuts count against its address like failed authentications.
            effects.append(AuthFailure())
        return [*effects, Close(code, reason)]


def _restricted(p: Principal) -> bool:
    return p.workflow_types is not None or p.own_runs_only


def _credential(message: Authenticate | ClientAuthChallenge) -> tuple[AuthMethod, str, str, str]:
    """(method, token, key_id, signature) of either form of the message."""
    if isinstance(message, Authenticate):
        d = message.data
        return d.method, d.token or "", d.key_id or "", d.signature or ""
    c = message.data
    if c.method == "api_key":
        key_id, _, signature = c.challenge.partition(":")
        return c.method, "", key_id, signature
    return c.method, c.challenge, "", ""
