"""Security wiring: the safe-default binding rule, the authenticator, TLS, origins, tokens.

The rules themselves are pure (actors/auth.py, actors/limits.py); this
module reads what they need from files (the JWKS, the certificate) and
turns the config into the objects the transport is started with.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
import time
from pathlib import Path

from websockets.typing import Origin

from adwd.actors.auth import (
    Authenticator,
    Permission,
    Principal,
    SecurityConfig,
    decode_jwks,
    iso,
)
from adwd.events.errors import AdwdError, ConfigError

log = logging.getLogger(__name__)

# The Kanban board's own origins: localhost, 127.0.0.1, [::1] and *.localhost, any port.
LOCAL_ORIGINS = re.compile(
    r"https?://(localhost|127\.0\.0\.1|\[::1\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.localhost)(:\d+)?"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (nothing else can reach it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or "" (every interface): not provably loopback


def check_binding(host: str, security: SecurityConfig, insecure: bool) -> str | None:
    """Refuse to listen beyond loopback without authentication, unless ``insecure``.

    Returns the warning to log at every start when the operator chose
    ``--insecure``; raises ConfigError when the binding is refused.
    """
    if security.auth_on or is_loopback(host):
        return None
    if not insecure:
        raise ConfigError(
            f"Refusing to listen on {host!r} without authentication: anyone who can reach "
            "the port could trigger and cancel runs. Configure [security] methods "
            "(docs/security.md), listen on 127.0.0.1, or pass --insecure to accept the risk."
        )
    return (
        f"INSECURE: listening on {host!r} without authentication (--insecure): anyone who "
        "can reach this port can trigger and cancel runs. See docs/security.md."
    )


def origins(host: str, security: SecurityConfig) -> list[Origin | re.Pattern[str] | None]:
    """The WebSocket ``Origin`` allow-list: no Origin (non-browser clients), the
    configured origins, and on loopback the board's local origins."""
    allowed: list[Origin | re.Pattern[str] | None] = [
        None,
        *(Origin(o) for o in security.allowed_origins),
    ]
    if is_loopback(host) or not security.allowed_origins:
        allowed.append(LOCAL_ORIGINS)
    return allowed


def authenticator(security: SecurityConfig) -> Authenticator | None:
    """The authenticator of this config (the JWKS file read now), or None when auth is off."""
    if not security.auth_on:
        return None
    jwks = None
    if security.oauth is not None:
        path = Path(security.oauth.jwks_file).expanduser()
        try:
            jwks = decode_jwks(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"Cannot read the JWKS file {path}: {exc.strerror}.") from exc
        except AdwdError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    try:
        return Authenticator(security, jwks)
    except Exception as exc:  # PyJWT's errors for keys it cannot use
        raise ConfigError(
            f"The JWKS file holds a key adwd cannot use ({type(exc).__name__}: {exc})."
        ) from exc


def tls_context(security: SecurityConfig) -> ssl.SSLContext | None:
    """A server TLS context from the configured certificate and key, or None."""
    if not security.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(security.tls_cert, security.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"Cannot load the TLS certificate {security.tls_cert} and key "
            f"{security.tls_key}: {exc}. Check the paths and that the key matches."
        ) from exc
    return context


def reload_tls(context: ssl.SSLContext, security: SecurityConfig) -> None:
    """Load the configured certificate and key again into the running context: new
    handshakes present the new certificate, open connections keep theirs. On an
    error the context keeps the previous pair (OpenSSL loads both or neither)."""
    try:
        context.load_cert_chain(security.tls_cert, security.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"Cannot reload the TLS certificate {security.tls_cert}: {exc}. The previous "
            "certificate stays in use; fix the files and send SIGHUP again."
        ) from exc


def create_token(
    security: SecurityConfig,
    user_id: str,
    permissions: list[str],
    *,
    ttl_s: float | None = None,
    workflow_types: list[str] | None = None,
    own_runs_only: bool = False,
) -> tuple[str, str]:
    """A service token for an operator (``adwd token create``): the token, its expiry."""
    if not security.token_keys:
        raise ConfigError(
            "No [[security.token_keys]] in the config: add a signing key to create tokens."
        )
    unknown = sorted(set(permissions) - {p.value for p in Permission})
    if unknown:
        raise ConfigError(
            f"Unknown permission(s) {', '.join(unknown)}; use: "
            f"{', '.join(p.value for p in Permission)}."
        )
    now = time.time()
    ttl = ttl_s if ttl_s is not None else security.token_ttl_s
    principal = Principal(
        user_id=user_id,
        permissions=frozenset(permissions),
        method="token",
        workflow_types=frozenset(workflow_types) if workflow_types else None,
        own_runs_only=own_runs_only,
    )
    token = Authenticator(security).issue(principal, now, ttl)
    return token, iso(now + ttl)
