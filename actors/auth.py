"""Authentication and permissions as a pure core: credentials in, a principal or a reason out.

No sockets, no threads, no files (the JWKS is read by the caller and passed
in): the ConnectionActor and the handshake hook of the transport only carry
credentials here and act on what comes back. docs/security.md is the
operator's view of the same rules.

Methods (``SecurityConfig.methods``; none: authentication is off):

- ``api_key``: the operator configures ``sha256(key)`` per ``key_id``, never
  the key. The client proves possession with
  ``hex(HMAC-SHA256(sha256(key), "<nonce>:<connection_id>"))``, so neither
  the key nor anything replayable crosses the wire: the nonce is fresh per
  challenge, used once, and bound to the connection.
- ``token``: a JWT this service signs (HS256, ``kid`` names the key): from
  ``auth_response.token`` or ``adwd token create``. The first of
  ``token_keys`` signs; the others still verify until their ``valid_until``.
- ``oauth``: a JWT access token of an external identity provider, verified
  against configured public keys (a JWKS file), with issuer, audience,
  expiry, not-before and an algorithm allow-list. The algorithms always come
  from the configuration, never from the token's header.

Permissions (:class:`Permission`) are checked per message type by
:func:`required_permission` and :meth:`Principal.may`.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import jwt
import msgspec
from msgspec import Meta, Struct

from adwd.events.errors import AdwdError

Method = Literal["api_key", "token", "oauth"]
METHODS: tuple[Method, ...] = ("api_key", "token", "oauth")
SERVICE_ISSUER = "adwd"  # iss and aud of the tokens this service signs
BEARER_PROTOCOL = "adwd.bearer."  # a browser's token, as a WebSocket subprotocol
PROTOCOL = "adwd.v1"  # the subprotocol the service selects
# Query parameters that would carry a credential: refused (URLs end up in logs).
QUERY_CREDENTIALS = frozenset(
    {"token", "access_token", "auth", "authorization", "api_key", "apikey", "key", "jwt", "bearer"}
)
MIN_SECRET = 32  # bytes of an HS256 signing secret (RFC 7518 3.2: at least the hash size)


class Permission(enum.StrEnum):
    """What a principal may do. ``admin`` implies every other."""

    WORKFLOW_TRIGGER = "workflow:trigger"
    WORKFLOW_CANCEL = "workflow:cancel"
    WORKFLOW_READ = "workflow:read"
    MONITOR_READ = "monitor:read"
    ADMIN = "admin"


PermissionName = Literal[
    "workflow:trigger", "workflow:cancel", "workflow:read", "monitor:read", "admin"
]

# The permission each client message type needs; None: any connection, even
# before authentication. A type missing here needs ``admin`` (a new message
# type is closed until someone decides who may send it).
MESSAGE_PERMISSIONS: dict[str, Permission | None] = {
    "ping": None,
    "authenticate": None,
    "auth_challenge": None,
    "trigger_workflow": Permission.WORKFLOW_TRIGGER,
    "cancel_workflow": Permission.WORKFLOW_CANCEL,
    "subscribe": Permission.WORKFLOW_READ,
    "get_queue_status": Permission.WORKFLOW_READ,
    # issue 11: a terminate is a cancel; a recovery or a card move starts a run of a
    # type the message does not name (ANY_TYPE: restricted principals are refused).
    "terminate_workflow": Permission.WORKFLOW_CANCEL,
    "recover": Permission.WORKFLOW_TRIGGER,
    "card_moved": Permission.WORKFLOW_TRIGGER,
    # issue 14: the board's own messages
    "register_session": Permission.WORKFLOW_READ,
    "ticket_notification": Permission.WORKFLOW_TRIGGER,  # a restart removes the old run
    "workflow_log": Permission.WORKFLOW_TRIGGER,  # written into a run's log (unscoped only)
}
ANY_TYPE = "*"  # a command whose workflow type the scheduler decides


def required_permission(message_type: str) -> Permission | None:
    """The permission a message type needs (``admin`` for types not listed)."""
    return MESSAGE_PERMISSIONS.get(message_type, Permission.ADMIN)


class AuthFailed(AdwdError):
    """A credential was refused. ``reason`` is a stable word for the audit log;
    the message says what to do and never repeats the credential."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Principal(Struct, frozen=True, kw_only=True):
    """Who a connection is, and what it may do."""

    user_id: str
    permissions: frozenset[str]
    method: str = "none"
    workflow_types: frozenset[str] | None = None  # None: every type
    own_runs_only: bool = False
    expires_at: float | None = None  # epoch seconds; None: never

    def may(self, permission: Permission, workflow_type: str | None = None) -> bool:
        """Whether this principal holds ``permission`` (for ``workflow_type``, if given)."""
        if Permission.ADMIN in self.permissions:
            return True
        if permission not in self.permissions:
            return False
        return (
            workflow_type is None
            or self.workflow_types is None
            or workflow_type in self.workflow_types
        )


def scope_of(p: Principal) -> Principal | None:
    """The principal whose runs a connection sees, or None when it sees every run."""
    restricted = p.workflow_types is not None or p.own_runs_only
    return p if restricted and Permission.ADMIN not in p.permissions else None


def within(p: Principal, workflow_type: str, owner: str) -> bool:
    """Whether a run of ``workflow_type`` triggered by ``owner`` is within ``p``'s grant
    (its workflow types, its own runs); says nothing of the permission itself."""
    if Permission.ADMIN in p.permissions:
        return True
    if p.workflow_types is not None and workflow_type not in p.workflow_types:
        return False
    return not p.own_runs_only or owner == p.user_id


def sees(p: Principal, workflow_type: str, owner: str) -> bool:
    """Whether ``p`` may read a run of ``workflow_type`` triggered by ``owner``."""
    return p.may(Permission.WORKFLOW_READ) and within(p, workflow_type, owner)


ANONYMOUS = Principal(user_id="anonymous", permissions=frozenset({Permission.ADMIN}))
"""The principal of every connection while authentication is off: today's behaviour."""


# -- configuration ------------------------------------------------------------


class ApiKey(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One API key: its id, the SHA-256 of the key (hex), and its grant."""

    key_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    user_id: Annotated[str, Meta(min_length=1, max_length=128)]
    permissions: list[PermissionName]
    workflow_types: list[str] | None = None
    own_runs_only: bool = False


class SigningKey(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An HS256 key of the service's tokens. ``valid_until`` (ISO 8601): a previous
    key verifies tokens until then; the first key of the list signs."""

    kid: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    secret: Annotated[str, Meta(min_length=MIN_SECRET)]
    valid_until: str = ""


class OAuthConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An external identity provider whose access tokens are accepted."""

    issuer: str
    audience: str
    jwks_file: str
    algorithms: list[Literal["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]] = (
        msgspec.field(default_factory=lambda: ["RS256", "ES256"])
    )
    user_claim: str = "sub"
    permissions_claim: str = "scope"  # a space-separated string or a list
    leeway_s: Annotated[float, Meta(ge=0, le=300)] = 30.0


class Limits(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rate and connection limits (docs/security.md). ``enabled``: None -> on
    exactly when authentication is on."""

    enabled: bool | None = None
    commands_per_s: Annotated[float, Meta(gt=0)] = 20.0
    commands_burst: Annotated[float, Meta(ge=1)] = 40.0
    per_type_per_s: dict[str, float] = msgspec.field(
        default_factory=lambda: {"subscribe": 2.0, "get_queue_status": 5.0}
    )
    triggers_per_minute: Annotated[float, Meta(gt=0)] = 30.0
    principal_commands_per_s: Annotated[float, Meta(gt=0)] = 50.0
    principal_triggers_per_minute: Annotated[float, Meta(gt=0)] = 120.0
    strikes: Annotated[int, Meta(ge=1)] = 20  # refusals beyond 1/s before a disconnect
    error_budget: Annotated[float, Meta(ge=1)] = 10.0  # invalid frames (refills 1/s)
    connections_per_address_per_s: Annotated[float, Meta(gt=0)] = 10.0
    connections_per_address_burst: Annotated[float, Meta(ge=1)] = 20.0
    concurrent_per_address: Annotated[int, Meta(ge=1)] = 100
    max_connections: Annotated[int, Meta(ge=1)] = 20000
    auth_failures_per_address: Annotated[int, Meta(ge=1)] = 10
    auth_lockout_s: Annotated[float, Meta(ge=0)] = 60.0


class SecurityConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[security]`` table of the config. Empty ``methods``: authentication off."""

    methods: list[Method] = []
    api_keys: list[ApiKey] = []
    token_keys: list[SigningKey] = []
    token_ttl_s: Annotated[float, Meta(gt=0)] = 3600.0
    oauth: OAuthConfig | None = None
    auth_timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    max_auth_failures: Annotated[int, Meta(ge=1)] = 3
    expiry_warning_s: Annotated[float, Meta(ge=0)] = 60.0
    expiry_grace_s: Annotated[float, Meta(ge=0)] = 30.0
    allowed_origins: list[str] = []
    tls_cert: str = ""
    tls_key: str = ""
    limits: Limits = Limits()

    @property
    def auth_on(self) -> bool:
        """Whether connections must authenticate."""
        return bool(self.methods)

    @property
    def limits_on(self) -> bool:
        """Whether rate and connection limits apply."""
        return self.auth_on if self.limits.enabled is None else self.limits.enabled

    def problems(self) -> list[str]:
        """What is inconsistent (each says what to write instead)."""
        found = []
        if "api_key" in self.methods and not self.api_keys:
            found.append("methods has 'api_key' but [[security.api_keys]] is empty: add a key")
        if "token" in self.methods and not self.token_keys:
            found.append("methods has 'token' but [[security.token_keys]] is empty: add a key")
        if "oauth" in self.methods and self.oauth is None:
            found.append("methods has 'oauth' but [security.oauth] is missing: add it")
        if bool(self.tls_cert) != bool(self.tls_key):
            found.append("set both tls_cert and tls_key (or neither)")
        for key in self.token_keys[1:]:
            if not key.valid_until:
                found.append(f"token key {key.kid!r} is not the first: give it a valid_until")
            else:
                try:
                    _parse_time(key.valid_until)
                except ValueError:
                    found.append(f"token key {key.kid!r}: valid_until is not ISO 8601")
        return found


# -- the core -----------------------------------------------------------------


def api_key_hash(key: str) -> str:
    """What the config stores for an API key: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_proof(key: str, nonce: str, connection_id: str) -> str:
    """The client's answer to a challenge: HMAC-SHA256 keyed with sha256(key)."""
    return _proof(hashlib.sha256(key.encode()).digest(), nonce, connection_id)


def _proof(secret: bytes, nonce: str, connection_id: str) -> str:
    return hmac.new(secret, f"{nonce}:{connection_id}".encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh challenge: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def bearer_subprotocol(token: str) -> str:
    """The subprotocol a browser offers to carry ``token`` (base64url, no padding)."""
    return BEARER_PROTOCOL + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def token_from_subprotocols(offered: list[str]) -> str | None:
    """The bearer token among offered subprotocols, or None. Raises AuthFailed if malformed."""
    for name in offered:
        if name.startswith(BEARER_PROTOCOL):
            raw = name[len(BEARER_PROTOCOL) :]
            try:
                return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            except (ValueError, UnicodeDecodeError):
                raise AuthFailed(
                    "malformed",
                    "The adwd.bearer.* subprotocol is not base64url: encode the token "
                    "with base64url, without padding.",
                ) from None
    return None


def _parse_time(text: str) -> float:
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def iso(ts: float) -> str:
    """An epoch time as ISO 8601 UTC."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def _known(perms: object) -> frozenset[str]:
    values = perms.split() if isinstance(perms, str) else perms
    if not isinstance(values, list | tuple):
        return frozenset()
    return frozenset(p for p in values if isinstance(p, str) and p in set(Permission))


class Authenticator:
    """Verifies credentials and signs service tokens. Immutable after construction
    (shared by every connection's actor, on any thread)."""

    def __init__(self, config: SecurityConfig, jwks: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self._keys = {k.key_id: k for k in config.api_keys}
        self._oauth_keys: dict[str | None, Any] = {}
        if jwks is not None:
            for jwk in jwt.PyJWKSet.from_dict(dict(jwks)).keys:
                self._oauth_keys[jwk.key_id] = jwk

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods clients may use."""
        return tuple(self.config.methods)

    # -- api_key ---------------------------------------------------------

    def verify_api_key(
        self, key_id: str, proof: str, nonce: str | None, connection_id: str
    ) -> Principal:
        """The principal of an API key whose proof answers ``nonce`` on this connection."""
        self._method("api_key")
        if nonce is None:
            raise AuthFailed(
                "no_challenge",
                "No open challenge on this connection (each is used once): wait for the "
                "next auth_challenge and sign its challenge.",
            )
        entry = self._keys.get(key_id)
        expected = _proof(bytes.fromhex(entry.sha256), nonce, connection_id) if entry else ""
        # Compare even for an unknown key_id: the timing must not tell which ids exist.
        ok = hmac.compare_digest(expected or "0" * 64, proof.lower()[:64].ljust(64, "0"))
        if entry is None or not ok or len(proof) != 64:
            raise AuthFailed(
                "bad_key",
                "Unknown key_id or wrong proof: send key_id and "
                "hex(HMAC-SHA256(sha256(key), '<challenge>:<connection_id>')).",
            )
        return Principal(
            user_id=entry.user_id,
            permissions=frozenset(entry.permissions),
            method="api_key",
            workflow_types=frozenset(entry.workflow_types) if entry.workflow_types else None,
            own_runs_only=entry.own_runs_only,
        )

    # -- token (service-signed) ------------------------------------------

    def issue(self, principal: Principal, now: float, ttl_s: float | None = None) -> str:
        """A service token for ``principal``, signed with the current key."""
        if not self.config.token_keys:
            return ""
        key = self.config.token_keys[0]
        exp = now + (ttl_s if ttl_s is not None else self.config.token_ttl_s)
        if principal.expires_at is not None:
            exp = min(exp, principal.expires_at)  # never outlive the credential it replaces
        claims: dict[str, Any] = {
            "iss": SERVICE_ISSUER,
            "aud": SERVICE_ISSUER,
            "sub": principal.user_id,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(exp),
            "perms": sorted(principal.permissions),
            "jti": secrets.token_hex(8),
        }
        if principal.workflow_types is not None:
            claims["wft"] = sorted(principal.workflow_types)
        if principal.own_runs_only:
            claims["own"] = True
        return jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.kid})

    def verify_token(self, token: str, now: float) -> Principal:
        """The principal of a service token (HS256, a known kid, within its key's validity)."""
        self._method("token")
        kid = self._header(token).get("kid")
        key = next((k for k in self.config.token_keys if k.kid == kid), None)
        if key is None:
            raise AuthFailed(
                "unknown_key",
                "Token signed with an unknown key: get a new one (adwd token create).",
            )
        if key.valid_until and now > _parse_time(key.valid_until):
            raise AuthFailed(
                "retired_key", "Token signed with a retired key: get a new one and retry."
            )
        claims = self._decode(
            token,
            key.secret,
            algorithms=["HS256"],
            audience=SERVICE_ISSUER,
            issuer=SERVICE_ISSUER,
            now=now,
            leeway=0,
        )
        wft = claims.get("wft")
        return Principal(
            user_id=str(claims["sub"]),
            permissions=_known(claims.get("perms", [])),
            method="token",
            workflow_types=frozenset(wft) if isinstance(wft, list) else None,
            own_runs_only=claims.get("own") is True,
            expires_at=float(claims["exp"]),
        )

    # -- oauth ------------------------------------------------------------

    def verify_oauth(self, token: str, now: float) -> Principal:
        """The principal of an identity provider's access token."""
        self._method("oauth")
        oauth = self.config.oauth
        assert oauth is not None  # problems() requires it with the method
        kid = self._header(token).get("kid")
        jwk = self._oauth_keys.get(kid) or (
            next(iter(self._oauth_keys.values())) if len(self._oauth_keys) == 1 else None
        )
        if jwk is None:
            raise AuthFailed(
                "unknown_key",
                "Token signed with a key not in the configured JWKS: refresh the JWKS file.",
            )
        claims = self._decode(
            token,
            jwk,
            algorithms=list(oauth.algorithms),
            audience=oauth.audience,
            issuer=oauth.issuer,
            now=now,
            leeway=oauth.leeway_s,
        )
        user = claims.get(oauth.user_claim)
        if not isinstance(user, str) or not user:
            raise AuthFailed("bad_claims", f"Token has no {oauth.user_claim!r} claim.")
        return Principal(
            user_id=user,
            permissions=_known(claims.get(oauth.permissions_claim, [])),
            method="oauth",
            expires_at=float(claims["exp"]),
        )

    def verify_bearer(self, token: str, now: float) -> Principal:
        """A token from the handshake or ``authenticate``: a service token if its
        ``kid`` is one of ours, else an OAuth token (each verifier pins its algorithms)."""
        kid = self._header(token).get("kid")
        ours = any(k.kid == kid for k in self.config.token_keys)
        if ours and "token" in self.config.methods:
            return self.verify_token(token, now)
        if "oauth" in self.config.methods:
            return self.verify_oauth(token, now)
        return self.verify_token(token, now)

    # -- helpers ------------------------------------------------------------

    def _method(self, method: str) -> None:
        if method not in self.config.methods:
            raise AuthFailed(
                "method_disabled",
                f"Method {method!r} is not enabled here; use one of: "
                f"{', '.join(self.config.methods)}.",
            )

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        try:
            return dict(jwt.get_unverified_header(token))
        except jwt.PyJWTError:
            raise AuthFailed("malformed", "Not a JWT: send the token as issued.") from None

    @staticmethod
    def _decode(token: str, key: Any, **kwargs: Any) -> dict[str, Any]:
        # PyJWT checks exp, nbf and iat against the real clock; ``now`` is only
        # for what PyJWT does not check (a retired key's valid_until).
        kwargs.pop("now")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, options={"require": ["exp", "iat", "sub"]}, **kwargs
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailed("expired", "Token expired: get a new one and retry.") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailed(
                "not_yet_valid", "Token not valid yet (nbf or iat ahead): check clocks."
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthFailed("wrong_audience", "Token is for another audience.") from None
        except jwt.InvalidIssuerError:
            raise AuthFailed("wrong_issuer", "Token is from an issuer not trusted here.") from None
        except jwt.InvalidAlgorithmError:
            raise AuthFailed(
                "wrong_algorithm", "Token uses an algorithm not allowed here."
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailed("bad_claims", f"Token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidSignatureError:
            raise AuthFailed("bad_signature", "Token signature does not verify.") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthFailed("invalid", "Token is not valid here: get a new one.") from None
        return claims


def decode_jwks(text: bytes) -> dict[str, Any]:
    """A JWKS document (``{"keys": [...]}``) as a dict; raises AdwdError if it is not one."""
    try:
        doc = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise AdwdError(f"The JWKS file is not JSON: {exc}.") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise AdwdError('The JWKS file must be an object with a "keys" list.')
    return doc
