"""Security against the real server, as an attacker would try it (docs/security.md).

Each method's success and each kind of failure; the handshake forms; the
deadline; permissions per message type and on reads; limits; TLS; and at
the end of the module, no secret in the event log or the service log.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed, InvalidStatus

from adwd.actors.auth import (
    ApiKey,
    Limits,
    OAuthConfig,
    SecurityConfig,
    SigningKey,
    api_key_hash,
    api_key_proof,
    bearer_subprotocol,
)
from adwd.actors.health import MonitorSettings, RuleSettings
from adwd.events.domain import AccessDenied, AuthAttempted
from adwd.events.errors import ConfigError
from adwd.service.app import Service
from tests.integration.conftest import TIMEOUT, Client, Running
from tests.integration.conftest import test_config as make_config

ADMIN_KEY = "k-admin-" + "a" * 40
READER_KEY = "k-reader-" + "b" * 40
SECRET = "s" * 48
OLD_SECRET = "o" * 48
ISSUER, AUDIENCE = "https://idp.example", "adwd-api"
# Every credential of this module: none may appear in a log, an event or an error.
SECRETS: list[str] = [ADMIN_KEY, READER_KEY, SECRET, OLD_SECRET]

_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = _rsa.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _jwks(tmp_path: Path) -> Path:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_rsa.public_key()))
    jwk.update(kid="idp-1", alg="RS256", use="sig")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path


def security(tmp_path: Path, **overrides: Any) -> SecurityConfig:
    """Every method on: two keys, two signing keys (one retiring), an IdP."""
    options: dict[str, Any] = {
        "methods": ["api_key", "token", "oauth"],
        "api_keys": [
            ApiKey(
                key_id="admin",
                sha256=api_key_hash(ADMIN_KEY),
                user_id="ops",
                permissions=["admin"],
            ),
            ApiKey(
                key_id="reader",
                sha256=api_key_hash(READER_KEY),
                user_id="viewer",
                permissions=["workflow:read", "monitor:read"],
            ),
        ],
        "token_keys": [
            SigningKey(kid="k2", secret=SECRET),
            SigningKey(kid="k1", secret=OLD_SECRET, valid_until="2999-01-01T00:00:00Z"),
        ],
        "oauth": OAuthConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(_jwks(tmp_path))),
        "auth_timeout_s": 5.0,
    }
    options.update(overrides)
    return SecurityConfig(**options)


@pytest.fixture
def secure(start_service: Callable[..., Running], tmp_path: Path) -> Callable[..., Running]:
    def start(**overrides: Any) -> Running:
        sec = overrides.pop("security", None) or security(tmp_path)
        return start_service(security=sec, **overrides)

    return start


def service_token(perms: list[str], *, secret: str = SECRET, kid: str = "k2", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": "adwd",
        "aud": "adwd",
        "sub": "tok-user",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "perms": perms,
    }
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256", headers={"kid": kid})


def idp_token(key: Any = _rsa, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@idp",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "scope": "workflow:read workflow:trigger",
    }
    body.update(claims)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": "idp-1"})


def unsigned(**claims: Any) -> str:
    """An ``alg: none`` token (no signature at all)."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    now = int(time.time())
    body = {"iss": "adwd", "aud": "adwd", "sub": "x", "iat": now, "exp": now + 600}
    body.update(claims)
    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k2'})}.{b64(body)}."


def hs256_raw(key: bytes, **claims: Any) -> str:
    """An HS256 token keyed with ``key`` made by hand (PyJWT refuses a PEM as HMAC key)."""
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    now = int(time.time())
    body = {"sub": "x", "iat": now, "exp": now + 600, **claims}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "idp-1"}).encode())
    signing_input = f"{head}.{b64(json.dumps(body).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def challenge(client: Client) -> dict[str, Any]:
    return client.wait_for(lambda m: m["type"] == "auth_challenge")["data"]


def is_error(code: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "error" and m["data"].get("code") == code


def login_key(client: Client, key_id: str, key: str) -> dict[str, Any]:
    data = challenge(client)
    proof = api_key_proof(key, data["challenge"], data["connection_id"])
    client.send(
        {
            "type": "authenticate",
            "data": {"method": "api_key", "key_id": key_id, "signature": proof},
        }
    )
    return client.wait_for(lambda m: m["type"] in ("auth_response", "error"))


def authenticate(client: Client, method: str, token: str) -> dict[str, Any]:
    challenge(client)
    client.send({"type": "authenticate", "data": {"method": method, "token": token}})
    return client.wait_for(lambda m: m["type"] in ("auth_response", "error"))


def closed_with(client: Client) -> int | None:
    """The close code the server ends this connection with (waiting for it)."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            client.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    pytest.fail("the server did not close the connection")


# -- 1. safe by default -------------------------------------------------------


def test_no_auth_beyond_loopback_refuses_to_start(tmp_path: Path) -> None:
    config = make_config(tmp_path / "d", host="0.0.0.0")
    with pytest.raises(ConfigError, match="--insecure"):
        Service(config).start()


def test_insecure_starts_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = Service(make_config(tmp_path / "d", host="0.0.0.0", insecure=True))
    with caplog.at_level(logging.WARNING):
        service.start()
    try:
        assert any("INSECURE" in r.getMessage() for r in caplog.records)
    finally:
        service.stop()


def test_origins_on_loopback(server: Running) -> None:
    for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "http://board.localhost:8080"):
        server.client(origin=origin).send({"type": "ping"})
    with pytest.raises(InvalidStatus) as refused:
        server.client(origin="https://evil.example")
    assert refused.value.response.status_code == 403


# -- 2. authentication -------------------------------------------------------


def test_api_key_success_then_commands(secure: Callable[..., Running]) -> None:
    server = secure()
    client = server.client()
    reply = login_key(client, "admin", ADMIN_KEY)
    assert reply["type"] == "auth_response", reply
    assert reply["data"]["user_id"] == "ops"
    assert reply["data"]["permissions"] == ["admin"]
    assert reply["data"]["token"].count(".") == 2
    assert client.trigger("adw_plan_iso", issue_number="1")["data"]["status"] == "accepted"


def test_challenge_names_methods_and_expiry(secure: Callable[..., Running]) -> None:
    data = challenge(secure().client())
    assert data["methods"] == ["api_key", "token", "oauth"]
    assert data["method"] == "api_key"
    assert 0 < data["expires_in"] <= 5
    assert len(data["challenge"]) >= 40


def test_api_key_wrong_key_and_replayed_nonce(secure: Callable[..., Running]) -> None:
    server = secure()
    client = server.client()
    data = challenge(client)
    wrong = api_key_proof("not-the-key", data["challenge"], data["connection_id"])
    client.send(
        {
            "type": "authenticate",
            "data": {"method": "api_key", "key_id": "admin", "signature": wrong},
        }
    )
    assert client.wait_for(is_error("unauthorized"))["data"]["details"]["reason"] == "bad_key"
    # Replay: the right proof for the first (now spent) nonce is refused.
    right_old = api_key_proof(ADMIN_KEY, data["challenge"], data["connection_id"])
    client.send(
        {
            "type": "authenticate",
            "data": {"method": "api_key", "key_id": "admin", "signature": right_old},
        }
    )
    assert client.wait_for(is_error("unauthorized"))
    # A proof made for another connection is refused here.
    other = server.client()
    other_data = challenge(other)
    stolen = api_key_proof(ADMIN_KEY, other_data["challenge"], data["connection_id"])
    other.send(
        {
            "type": "authenticate",
            "data": {"method": "api_key", "key_id": "admin", "signature": stolen},
        }
    )
    assert other.wait_for(is_error("unauthorized"))


def test_client_sent_auth_challenge_form(secure: Callable[..., Running]) -> None:
    client = secure().client()
    data = challenge(client)
    proof = api_key_proof(ADMIN_KEY, data["challenge"], data["connection_id"])
    client.send(
        {"type": "auth_challenge", "data": {"method": "api_key", "challenge": f"admin:{proof}"}}
    )
    assert client.wait_for(lambda m: m["type"] == "auth_response")["data"]["user_id"] == "ops"


def test_token_success_and_previous_key(secure: Callable[..., Running]) -> None:
    server = secure()
    for secret, kid in ((SECRET, "k2"), (OLD_SECRET, "k1")):
        reply = authenticate(
            server.client(), "token", service_token(["workflow:read"], secret=secret, kid=kid)
        )
        assert reply["type"] == "auth_response", reply
        assert reply["data"]["permissions"] == ["workflow:read"]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: service_token(["admin"], exp=int(time.time()) - 60), "expired"),
        (lambda: service_token(["admin"], nbf=int(time.time()) + 600), "not_yet_valid"),
        (lambda: service_token(["admin"], aud="other"), "wrong_audience"),
        (lambda: service_token(["admin"], iss="other"), "wrong_issuer"),
        (lambda: service_token(["admin"])[:-4] + "AAAA", "bad_signature"),
        (lambda: unsigned(perms=["admin"]), "wrong_algorithm"),
        (
            lambda: jwt.encode(
                {
                    "sub": "x",
                    "aud": "adwd",
                    "iss": "adwd",
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 60,
                },
                SECRET,
                algorithm="HS384",
                headers={"kid": "k2"},
            ),
            "wrong_algorithm",
        ),
        (lambda: service_token(["admin"], secret="x" * 48, kid="k9"), "unknown_key"),
        (lambda: service_token(["admin"], secret=SECRET + "!"), "bad_signature"),
    ],
    ids=[
        "expired",
        "nbf",
        "audience",
        "issuer",
        "tampered",
        "alg-none",
        "wrong-alg",
        "unknown-kid",
        "wrong-secret",
    ],
)
def test_token_failures(
    secure: Callable[..., Running], token: Callable[[], str], reason: str
) -> None:
    client = secure().client()
    reply = authenticate(client, "token", token())
    assert reply["type"] == "error", reply
    assert reply["data"]["code"] == "unauthorized"
    assert reply["data"]["details"]["reason"] == reason


def test_retired_signing_key(secure: Callable[..., Running], tmp_path: Path) -> None:
    sec = security(
        tmp_path,
        token_keys=[
            SigningKey(kid="k2", secret=SECRET),
            SigningKey(kid="k1", secret=OLD_SECRET, valid_until="2001-01-01"),
        ],
    )
    reply = authenticate(
        secure(security=sec).client(),
        "token",
        service_token(["admin"], secret=OLD_SECRET, kid="k1"),
    )
    assert reply["data"]["details"]["reason"] == "retired_key"


def test_oauth_success(secure: Callable[..., Running]) -> None:
    reply = authenticate(secure().client(), "oauth", idp_token())
    assert reply["type"] == "auth_response", reply
    assert reply["data"]["user_id"] == "alice@idp"
    assert reply["data"]["permissions"] == ["workflow:read", "workflow:trigger"]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: idp_token(exp=int(time.time()) - 600), "expired"),
        (lambda: idp_token(nbf=int(time.time()) + 600), "not_yet_valid"),
        (lambda: idp_token(aud="someone-else"), "wrong_audience"),
        (lambda: idp_token(iss="https://evil.example"), "wrong_issuer"),
        (lambda: idp_token(key=_other_rsa), "bad_signature"),
        (lambda: idp_token()[:-6] + "AAAAAA", "bad_signature"),
        # Algorithm confusion: HS256 keyed with the IdP's public key.
        (lambda: hs256_raw(PUBLIC_PEM, iss=ISSUER, aud=AUDIENCE), "wrong_algorithm"),
        (lambda: unsigned(iss=ISSUER, aud=AUDIENCE), "wrong_algorithm"),
    ],
    ids=[
        "expired",
        "nbf",
        "audience",
        "issuer",
        "other-key",
        "tampered",
        "hs256-confusion",
        "alg-none",
    ],
)
def test_oauth_failures(
    secure: Callable[..., Running], token: Callable[[], str], reason: str
) -> None:
    reply = authenticate(secure().client(), "oauth", token())
    assert reply["type"] == "error", reply
    assert reply["data"]["details"]["reason"] == reason


def test_handshake_bearer_header_and_subprotocol(secure: Callable[..., Running]) -> None:
    server = secure()
    token = service_token(["admin"])
    by_header = server.client(additional_headers={"Authorization": f"Bearer {token}"})
    by_header.send({"type": "ping", "request_id": "p"})
    assert by_header.wait_for(lambda m: m["type"] == "pong")
    assert not [m for m in by_header.seen if m["type"] == "auth_challenge"]
    assert by_header.trigger("adw_plan_iso", issue_number="2")["data"]["status"] == "accepted"
    by_protocol = server.client(subprotocols=["adwd.v1", bearer_subprotocol(token)])
    assert by_protocol.ws.subprotocol == "adwd.v1"
    assert by_protocol.trigger("adw_plan_iso", issue_number="3")["data"]["status"] == "accepted"


@pytest.mark.parametrize("form", ["header", "subprotocol"])
def test_handshake_bad_token_gets_401(secure: Callable[..., Running], form: str) -> None:
    server = secure()
    bad = service_token(["admin"], exp=int(time.time()) - 5)
    options: dict[str, Any] = (
        {"additional_headers": {"Authorization": f"Bearer {bad}"}}
        if form == "header"
        else {"subprotocols": ["adwd.v1", bearer_subprotocol(bad)]}
    )
    with pytest.raises(InvalidStatus) as refused:
        server.client(**options)
    assert refused.value.response.status_code == 401


def test_query_token_refused(secure: Callable[..., Running]) -> None:
    server = secure()
    with pytest.raises(InvalidStatus) as refused:
        server.client(f"/ws/trigger?token={service_token(['admin'])}")
    assert refused.value.response.status_code == 400


def test_no_authentication_in_time_closes_4401(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    client = secure(security=security(tmp_path, auth_timeout_s=0.3)).client()
    challenge(client)
    assert closed_with(client) == 4401


def test_before_authentication_only_ping(secure: Callable[..., Running]) -> None:
    client = secure().client()
    challenge(client)
    client.send({"type": "ping", "request_id": "p1"})
    assert client.wait_for(lambda m: m["type"] == "pong")
    client.send(
        {"type": "trigger_workflow", "request_id": "t1", "data": {"workflow_type": "adw_plan_iso"}}
    )
    denied = client.wait_for(is_error("unauthorized"))
    assert denied["request_id"] == "t1"
    assert not [m for m in client.seen if m["type"] == "trigger_response"]


def test_repeated_failures_close_4401(secure: Callable[..., Running]) -> None:
    client = secure().client()
    for _ in range(3):
        client.send({"type": "authenticate", "data": {"method": "token", "token": "nonsense"}})
    assert closed_with(client) == 4401


def test_expiring_token_is_warned_then_cut(secure: Callable[..., Running], tmp_path: Path) -> None:
    sec = security(tmp_path, expiry_warning_s=0.5, expiry_grace_s=0.3)
    client = secure(security=sec).client()
    token = service_token(["admin"], exp=int(time.time()) + 2)
    assert authenticate(client, "token", token)["type"] == "auth_response"
    warning = client.wait_for(
        lambda m: m["type"] == "auth_challenge" and m["data"]["reason"] == "expiring"
    )
    assert warning["data"]["expires_in"] > 0
    assert closed_with(client) == 4401


def test_refresh_on_the_open_connection_keeps_it(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    sec = security(tmp_path, expiry_warning_s=0.5, expiry_grace_s=0.2)
    client = secure(security=sec).client()
    assert (
        authenticate(client, "token", service_token(["admin"], exp=int(time.time()) + 2))["type"]
        == "auth_response"
    )
    client.wait_for(lambda m: m["type"] == "auth_challenge" and m["data"]["reason"] == "expiring")
    client.send(
        {"type": "authenticate", "data": {"method": "token", "token": service_token(["admin"])}}
    )
    client.wait_for(lambda m: m["type"] == "auth_response")
    # Past the old token's expiry plus grace: nothing arrives, nothing closes.
    with pytest.raises(TimeoutError):
        client.recv(timeout=3.0)
    client.send({"type": "ping"})
    client.wait_for(lambda m: m["type"] == "pong")


# -- 3. permissions ------------------------------------------------------------


def test_reader_cannot_trigger_or_cancel_but_reads(secure: Callable[..., Running]) -> None:
    server = secure()
    reader = server.client()
    assert login_key(reader, "reader", READER_KEY)["type"] == "auth_response"
    reader.send(
        {"type": "trigger_workflow", "request_id": "t", "data": {"workflow_type": "adw_plan_iso"}}
    )
    assert (
        reader.wait_for(is_error("forbidden"))["data"]["details"]["permission"]
        == "workflow:trigger"
    )
    reader.send({"type": "cancel_workflow", "request_id": "c", "data": {"adw_id": "abc"}})
    assert (
        reader.wait_for(is_error("forbidden"))["data"]["details"]["permission"] == "workflow:cancel"
    )
    admin = server.client()
    login_key(admin, "admin", ADMIN_KEY)
    adw_id = admin.trigger("adw_plan_iso", issue_number="4")["data"]["adw_id"]
    reader.wait_terminal(adw_id)  # live delivery of what it may read
    reader.send({"type": "subscribe", "data": {"since": 0}})
    reader.wait_for(lambda m: m["type"] == "subscribed")


def test_reader_cannot_recover_or_terminate(secure: Callable[..., Running]) -> None:
    """The commands added since (issue 11) are closed to a reader too: a recovery
    starts a run, a terminate kills one."""
    server = secure()
    admin = server.client()
    login_key(admin, "admin", ADMIN_KEY)
    adw_id = admin.trigger("adw_sleep", adw_id="keepalive")["data"]["adw_id"]
    reader = server.client()
    assert login_key(reader, "reader", READER_KEY)["type"] == "auth_response"
    commands = {
        "recover": ({"option": "retry", "adw_id": adw_id}, "workflow:trigger"),
        "terminate_workflow": ({"adw_id": adw_id}, "workflow:cancel"),
    }
    for kind, (data, permission) in commands.items():
        reader.send({"type": kind, "request_id": kind, "data": data})
        refused = reader.wait_for(lambda m, kind=kind: m.get("request_id") == kind)
        assert refused["type"] == "error"
        assert refused["data"]["code"] == "forbidden"
        assert refused["data"]["details"]["permission"] == permission
    admin.send({"type": "ping", "request_id": "alive"})
    admin.wait_for(lambda m: m.get("request_id") == "alive")
    assert not [
        m
        for m in admin.seen
        if m["type"] == "status_update"
        and m["data"]["adw_id"] == adw_id
        and m["data"]["status"] in ("failed", "cancelled", "completed")
    ]  # still running: neither command reached it
    admin.send({"type": "cancel_workflow", "data": {"adw_id": adw_id}})
    admin.wait_terminal(adw_id)


def test_trigger_only_principal_sees_no_runs(secure: Callable[..., Running]) -> None:
    server = secure()
    client = server.client()
    assert (
        authenticate(client, "token", service_token(["workflow:trigger"]))["type"]
        == "auth_response"
    )
    client.send({"type": "subscribe", "data": {"since": 0}})
    assert (
        client.wait_for(is_error("forbidden"))["data"]["details"]["permission"] == "workflow:read"
    )
    client.send({"type": "get_queue_status"})
    assert client.wait_for(is_error("forbidden"))
    response = client.trigger("adw_plan_iso", issue_number="5")
    assert response["data"]["status"] == "accepted"  # its own reply, nothing more
    admin = server.client()
    login_key(admin, "admin", ADMIN_KEY)
    admin.wait_terminal(response["data"]["adw_id"])
    client.send({"type": "ping"})
    client.wait_for(lambda m: m["type"] == "pong")
    assert not [
        m for m in client.seen if m["type"] in ("status_update", "workflow_log", "queue_status")
    ]


def test_workflow_type_limited_principal(secure: Callable[..., Running]) -> None:
    client = secure().client()
    token = service_token(["workflow:trigger"], wft=["adw_plan_iso"])
    authenticate(client, "token", token)
    assert client.trigger("adw_plan_iso", issue_number="6")["data"]["status"] == "accepted"
    client.send({"type": "trigger_workflow", "data": {"workflow_type": "adw_build_iso"}})
    assert client.wait_for(is_error("forbidden"))


def test_http_reads_need_a_reader_token(secure: Callable[..., Running]) -> None:
    import http.client

    server = secure()

    def get(path: str, token: str | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.service.port, timeout=TIMEOUT)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        status = conn.getresponse().status
        conn.close()
        return status

    assert get("/api/runs") == 401
    assert get("/api/runs", "garbage") == 401
    assert get("/api/runs", service_token(["workflow:trigger"])) == 403
    assert get("/api/runs", service_token(["workflow:read"])) == 200
    assert get("/livez") == 200


def http(
    server: Running, path: str, token: str | None = None, method: str = "GET"
) -> tuple[int, Any]:
    """(status, JSON body or None) of a plain HTTP request, with a bearer token if given."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.service.port, timeout=TIMEOUT)
    conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, json.loads(raw) if raw and raw.startswith(b"{") else None


def test_http_reads_show_scoped_principals_only_their_runs(
    secure: Callable[..., Running],
) -> None:
    """The read API answers a scoped principal with its runs only; another run
    looks as if it did not exist (the same 404 as an unknown adw_id)."""
    server = secure()
    admin = server.client()
    login_key(admin, "admin", ADMIN_KEY)
    own = server.client()
    perms = ["workflow:read", "workflow:trigger", "workflow:cancel"]
    own_token = service_token(perms, sub="own", own=True)
    authenticate(own, "token", own_token)
    mine = own.trigger("adw_plan_iso", adw_id="httpmine", issue_number="21")["data"]["adw_id"]
    plan = admin.trigger("adw_plan_iso", adw_id="httpplan", issue_number="22")["data"]["adw_id"]
    patch = admin.trigger("adw_patch_iso", adw_id="httppatch", issue_number="23")["data"]["adw_id"]
    for adw_id in (mine, plan, patch):
        admin.wait_terminal(adw_id)
    planner = service_token(["workflow:read"], sub="planner", wft=["adw_plan_iso"])
    reader = service_token(["workflow:read"], sub="reader")
    scopes = {own_token: {mine}, planner: {mine, plan}, reader: {mine, plan, patch}}
    for token, expected in scopes.items():
        status, body = http(server, "/api/runs", token)
        assert status == 200
        assert {r["adw_id"] for r in body["runs"]} == expected
        for path, count in (("/api/adws/list", "count"), ("/api/adws", "total_count")):
            status, body = http(server, path, token)
            assert status == 200
            assert {a["adw_id"] for a in body["adws"]} == expected
            assert body[count] == len(expected)
        for adw_id in (mine, plan, patch):
            status, body = http(server, f"/api/adws/{adw_id}", token)
            assert status == (200 if adw_id in expected else 404)
    # The scoped principal's figures of every run are not shown; the reader's are.
    assert http(server, "/api/runs", own_token)[1]["metrics"] is None
    assert http(server, "/api/runs", reader)[1]["metrics"] is not None
    # A 404 for another's run reads exactly like one for an adw_id that never was.
    hidden = http(server, f"/api/adws/{plan}", own_token)[1]
    unknown = http(server, "/api/adws/neverwas", own_token)[1]
    assert hidden["message"] == unknown["message"].replace("neverwas", plan)
    # DELETE: another's run does not exist for it; without a token, 401; its own, done.
    assert http(server, f"/api/adws/{plan}", own_token, "DELETE")[0] == 404
    assert http(server, f"/api/adws/{plan}", None, "DELETE")[0] == 401
    assert http(server, f"/api/adws/{plan}", reader, "DELETE")[0] == 403
    assert http(server, f"/api/adws/{mine}", own_token, "DELETE")[0] == 200
    assert http(server, f"/api/adws/{plan}", reader)[0] == 200  # never deleted


def test_scoped_principals_see_their_runs_after_a_restart(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    """Who owns each run is read from the log at start, not only learnt live."""
    first = secure()
    admin = first.client()
    login_key(admin, "admin", ADMIN_KEY)
    own_token = service_token(["workflow:read", "workflow:trigger"], sub="own", own=True)
    own = first.client()
    authenticate(own, "token", own_token)
    mine = own.trigger("adw_plan_iso", adw_id="beforemine", issue_number="31")["data"]["adw_id"]
    theirs = admin.trigger("adw_plan_iso", adw_id="beforetheirs")["data"]["adw_id"]
    admin.wait_terminal(mine)
    admin.wait_terminal(theirs)
    first.service.stop()

    second = secure(data_dir=first.data_dir)
    again = second.client()
    authenticate(again, "token", own_token)
    again.send({"type": "subscribe", "request_id": "s", "data": {"since": 0}})
    again.wait_for(lambda m: m["type"] == "subscribed")
    again.send({"type": "ping", "request_id": "end"})
    again.wait_for(lambda m: m.get("request_id") == "end" and m["type"] == "pong")
    seen = {m["data"]["adw_id"] for m in again.seen if m["type"] == "status_update"}
    assert seen == {mine}
    status, body = http(second, "/api/adws/list", own_token)
    assert status == 200
    assert [a["adw_id"] for a in body["adws"]] == [mine]
    assert http(second, f"/api/adws/{theirs}", own_token)[0] == 404


def test_news_of_the_service_needs_monitor_read(secure: Callable[..., Running]) -> None:
    """health_status, performance_metrics and alerts go to principals with monitor:read
    only, live and on resume; a reader of runs alone gets none of them."""
    rule = RuleSettings(raise_at=2, clear_at=2, for_s=0.1, keep_firing_for_s=60)
    monitor = MonitorSettings(interval_s=0.05, health_interval_s=0.05, rules={"connections": rule})
    server = secure(monitor=monitor)
    plain = server.client("/ws/trigger?performance=0.05")
    authenticate(plain, "token", service_token(["workflow:read"], sub="plain"))
    watcher = server.client("/ws/trigger?performance=0.05")
    assert login_key(watcher, "reader", READER_KEY)["type"] == "auth_response"  # monitor:read
    watcher.wait_for(lambda m: m["type"] == "alert")  # two connections: the rule fires
    for kind in ("health_status", "performance_metrics"):
        watcher.wait_for(lambda m, kind=kind: m["type"] == kind)
    plain.send({"type": "subscribe", "request_id": "s", "data": {"since": 0}})  # a replay too
    plain.wait_for(lambda m: m["type"] == "subscribed")
    plain.send({"type": "ping", "request_id": "end"})
    plain.wait_for(lambda m: m.get("request_id") == "end" and m["type"] == "pong")
    service_news = {"health_status", "performance_metrics", "alert"}
    assert not [m for m in plain.seen if m["type"] in service_news]


def _outward_address() -> str | None:
    """An address of this host other than loopback, if it has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # no packet is sent: it picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_health_and_metrics_need_monitor_read_beyond_loopback(
    secure: Callable[..., Running],
) -> None:
    import http.client

    address = _outward_address()
    if address is None:
        pytest.skip("this host has no address but loopback")
    server = secure(host="0.0.0.0")

    def get(host: str, path: str, token: str | None = None) -> int:
        conn = http.client.HTTPConnection(host, server.service.port, timeout=TIMEOUT)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        status = conn.getresponse().status
        conn.close()
        return status

    for path in ("/health", "/metrics"):
        assert get("127.0.0.1", path) == 200  # the host's own monitoring
        assert get(address, path) == 401
        assert get(address, path, service_token(["workflow:read"])) == 403
        assert get(address, path, service_token(["monitor:read"])) == 200
    assert get(address, "/livez") == 200  # probes stay open


# -- 4. limits -----------------------------------------------------------------


def test_trigger_limit_then_rate_limited(secure: Callable[..., Running], tmp_path: Path) -> None:
    sec = security(tmp_path, limits=Limits(triggers_per_minute=2))
    client = secure(security=sec).client()
    login_key(client, "admin", ADMIN_KEY)
    for n in range(2):
        assert client.trigger("adw_plan_iso", issue_number=str(n))["data"]["status"] == "accepted"
    client.send(
        {
            "type": "trigger_workflow",
            "request_id": "over",
            "data": {"workflow_type": "adw_plan_iso"},
        }
    )
    limited = client.wait_for(is_error("rate_limited"))
    assert limited["request_id"] == "over"
    assert limited["data"]["details"]["limit"] == "triggers_per_minute"
    assert 0 < limited["data"]["details"]["retry_after"] <= 30


def _ping_rtt(client: Client, n: int = 20) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        client.send({"type": "ping", "request_id": f"r{i}"})
        client.wait_for(lambda m, i=i: m["type"] == "pong" and m.get("request_id") == f"r{i}")
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def test_flood_is_limited_then_cut_and_others_unharmed(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    sec = security(tmp_path, limits=Limits(commands_per_s=50, commands_burst=50, strikes=200))
    server = secure(security=sec)
    calm = server.client()
    login_key(calm, "admin", ADMIN_KEY)
    idle = _ping_rtt(calm)
    flooder = server.client()
    login_key(flooder, "reader", READER_KEY)
    for _ in range(1000):
        try:
            flooder.send({"type": "ping"})
        except ConnectionClosed:
            break
    during = _ping_rtt(calm)
    assert closed_with(flooder) == 4429
    assert [m for m in flooder.seen if m["type"] == "error" and m["data"]["code"] == "rate_limited"]
    # Loosely (the figure is measured in make bench): the calm client is not held up.
    assert during < max(10 * idle, 0.05), (idle, during)


def test_invalid_frames_spend_the_error_budget(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    client = secure(security=security(tmp_path, limits=Limits(error_budget=3))).client()
    login_key(client, "admin", ADMIN_KEY)
    for _ in range(10):
        try:
            client.send("{not json")
        except ConnectionClosed:
            break
    assert closed_with(client) == 4429


def test_too_many_connections_from_one_address_get_429(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    server = secure(security=security(tmp_path, limits=Limits(concurrent_per_address=2)))
    server.client()
    server.client()
    with pytest.raises(InvalidStatus) as refused:
        server.client()
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"]


def test_failed_authentications_lock_the_address_out(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    sec = security(tmp_path, limits=Limits(auth_failures_per_address=2, auth_lockout_s=30))
    server = secure(security=sec)
    bad = service_token(["admin"], exp=int(time.time()) - 5)
    for _ in range(2):
        with pytest.raises(InvalidStatus):
            server.client(additional_headers={"Authorization": f"Bearer {bad}"})
    with pytest.raises(InvalidStatus) as refused:
        server.client()
    assert refused.value.response.status_code == 429


def test_http_authentication_failures_are_audited_and_lock_out(
    secure: Callable[..., Running], tmp_path: Path
) -> None:
    """The read API's refusals are recorded as the WebSocket ones are (with the
    address, never the token), and its failed tokens count toward the lockout."""
    sec = security(tmp_path, limits=Limits(auth_failures_per_address=3, auth_lockout_s=30))
    server = secure(security=sec)
    expired = service_token(["workflow:read"], exp=int(time.time()) - 5)
    assert http(server, "/api/runs")[0] == 401
    assert http(server, "/api/adws/list", service_token(["workflow:trigger"], sub="trig"))[0] == 403
    for _ in range(3):
        assert http(server, "/api/runs", expired)[0] == 401
    status, body = http(server, "/api/runs", service_token(["workflow:read"]))
    assert status == 429  # locked out, a good token or not
    assert body["error"] == "rate_limited"
    server.service.stop()
    events = server.events()
    attempts = [e.event for e in events if isinstance(e.event, AuthAttempted)]
    assert [(a.address, a.method, a.outcome, a.reason) for a in attempts] == [
        ("127.0.0.1", "bearer", "failure", "expired")
    ] * 3
    denied = {
        (e.event.outcome, e.event.address, e.event.message_type, e.event.permission, e.principal)
        for e in events
        if isinstance(e.event, AccessDenied)
    }
    assert denied == {
        ("unauthenticated", "127.0.0.1", "GET /api/runs", "workflow:read", "anonymous"),
        ("forbidden", "127.0.0.1", "GET /api/adws/list", "workflow:read", "trig"),
    }
    raw = (server.data_dir / "events.db").read_bytes()
    assert expired.encode()[-24:] not in raw


def test_oversized_frame_closes_1009(secure: Callable[..., Running]) -> None:
    client = secure().client()
    client.send("x" * (1024 * 1024 + 1))
    assert closed_with(client) == 1009


# -- 6. TLS -----------------------------------------------------------------------


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls(start_service: Callable[..., Running], tmp_path: Path) -> None:
    import ssl

    cert, key = _certificate(tmp_path)
    server = start_service(security=SecurityConfig(tls_cert=str(cert), tls_key=str(key)))
    context = ssl.create_default_context(cafile=str(cert))
    client = Client(f"wss://127.0.0.1:{server.service.port}/ws/trigger", ssl=context)
    server.clients.append(client)
    client.send({"type": "ping", "request_id": "tls"})
    assert client.wait_for(lambda m: m["type"] == "pong")
    # A plain client against the TLS port fails, cleanly and soon.
    start = time.monotonic()
    with pytest.raises((InvalidStatus, ConnectionError, OSError, EOFError, Exception)):
        Client(f"ws://127.0.0.1:{server.service.port}/ws/trigger", open_timeout=3)
    assert time.monotonic() - start < 5


# -- 5. audit, and no secret anywhere ----------------------------------------------


def test_audit_events_and_no_secret_anywhere(
    secure: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    server = secure()
    tokens = [service_token(["admin"]), idp_token()]
    SECRETS.extend(tokens)
    good = server.client()
    login_key(good, "admin", ADMIN_KEY)
    adw_id = good.trigger("adw_plan_iso", issue_number="7")["data"]["adw_id"]
    good.wait_terminal(adw_id)
    bad = server.client()
    data = challenge(bad)
    bad.send(
        {
            "type": "authenticate",
            "data": {
                "method": "api_key",
                "key_id": "admin",
                "signature": api_key_proof(READER_KEY, data["challenge"], data["connection_id"]),
            },
        }
    )
    bad.wait_for(is_error("unauthorized"))
    authenticate(server.client(), "token", tokens[0])
    authenticate(server.client(), "oauth", tokens[1] + "x")
    reader = server.client()
    login_key(reader, "reader", READER_KEY)
    reader.send({"type": "cancel_workflow", "data": {"adw_id": adw_id}})
    reader.wait_for(is_error("forbidden"))
    for client in server.clients:
        client.close()
    server.clients.clear()
    server.service.stop()
    events = server.events()
    types = {e.type for e in events}
    assert {"connection_opened", "connection_closed", "auth_attempted", "access_denied"} <= types
    outcomes = {(e.event.outcome, e.principal) for e in events if e.type == "auth_attempted"}  # type: ignore[attr-defined]
    assert ("success", "ops") in outcomes
    assert any(o == "failure" for o, _ in outcomes)
    denied = [e for e in events if e.type == "access_denied"]
    assert any(e.principal == "viewer" and e.event.permission == "workflow:cancel" for e in denied)  # type: ignore[attr-defined]
    raw = (server.data_dir / "events.db").read_bytes()
    log_text = "\n".join(r.getMessage() for r in caplog.records) + capsys.readouterr().err
    frames = json.dumps([m for c in (good, bad, reader) for m in c.seen])
    for secret in SECRETS:
        for haystack, where in (
            (raw, "event log"),
            (log_text.encode(), "service log"),
            (frames.encode(), "errors"),
        ):
            fragment = secret.encode()[-24:]  # a signature's or a key's tail, never a prefix alone
            assert fragment not in haystack, f"a secret is in the {where}"
        assert api_key_hash(secret).encode() not in raw


# -- the CLI: adwd token create, adwd audit --security --------------------------------


def test_token_create_and_audit_cli(start_service: Callable[..., Running], tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "adwd.toml"
    config.write_text(
        '[security]\nmethods = ["token"]\n\n[[security.token_keys]]\n'
        f'kid = "k2"\nsecret = "{SECRET}"\n'
    )
    made = subprocess.run(
        [sys.executable, "-m", "adwd", "token", "create", "--config", str(config),
         "--user", "ci", "--permission", "workflow:trigger", "--json"],
        capture_output=True, text=True, check=True, timeout=TIMEOUT,
    )  # fmt: skip
    token = json.loads(made.stdout)["token"]
    SECRETS.append(token)
    sec = SecurityConfig(methods=["token"], token_keys=[SigningKey(kid="k2", secret=SECRET)])
    server = start_service(security=sec)
    client = server.client(additional_headers={"Authorization": f"Bearer {token}"})
    assert client.trigger("adw_plan_iso", issue_number="8")["data"]["status"] == "accepted"
    with pytest.raises(InvalidStatus):
        server.client(additional_headers={"Authorization": "Bearer " + token[:-3] + "abc"})
    client.close()
    server.service.stop()
    audit = subprocess.run(
        [sys.executable, "-m", "adwd", "audit", "--data-dir", str(server.data_dir),
         "--address", "127.0.0.1", "--json"],
        capture_output=True, text=True, check=True, timeout=TIMEOUT,
    )  # fmt: skip
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    actions = {(e["action"], e["outcome"], e["principal"]) for e in entries}
    assert ("authenticate:token", "success", "ci") in actions
    assert ("authenticate:bearer", "failure", "anonymous") in actions
    assert ("trigger_workflow", "accepted", "ci") in actions
    assert all(e["address"] == "127.0.0.1" for e in entries)
    assert token not in audit.stdout


def test_resume_from_the_url_after_authenticating(secure: Callable[..., Running]) -> None:
    server = secure()
    admin = server.client()
    login_key(admin, "admin", ADMIN_KEY)
    first = admin.trigger("adw_plan_iso", issue_number="9")
    admin.wait_terminal(first["data"]["adw_id"])
    admin.send({"type": "subscribe", "data": {"since": 0}})
    epoch = admin.wait_for(lambda m: m["type"] == "subscribed")["data"]["epoch"]
    since = first["seq"]
    late = server.client(f"/ws/trigger?since={since}&epoch={epoch}")
    assert login_key(late, "reader", READER_KEY)["type"] == "auth_response"
    assert [m["type"] for m in late.seen[:2]] == ["auth_challenge", "auth_response"]
    subscribed = late.wait_for(lambda m: m["type"] == "subscribed")
    assert subscribed["data"]["recovered"] is True
    assert subscribed["data"]["resume_from"] == since
    done = late.wait_for(
        lambda m: m["type"] == "status_update" and m["data"]["status"] == "completed"
    )
    assert done["seq"] > since


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "adwd.toml"
    config.write_text(f'host = "0.0.0.0"\nport = 0\ndata_dir = "{tmp_path / "d"}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "adwd", "serve", "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 2
    assert "without authentication" in done.stderr
    assert "--insecure" in done.stderr


# -- hypothesis: random sequences of authentication and commands -----------------------

ATTACKER_TOKENS = {
    "reader": lambda: service_token(["workflow:read"], sub="h-reader"),
    "trigger": lambda: service_token(["workflow:trigger"], sub="h-trigger"),
    "nobody": lambda: service_token([], sub="h-nobody"),
    "expired": lambda: service_token(["admin"], sub="h-expired", exp=int(time.time()) - 60),
    "alg-none": lambda: unsigned(perms=["admin"], sub="h-none"),
    "forged": lambda: service_token(["admin"], sub="h-forged", secret="f" * 48),
}
ATTACKER_FRAMES: dict[str, Any] = {
    "trigger": {"type": "trigger_workflow", "data": {"workflow_type": "adw_plan_iso"}},
    "cancel": {"type": "cancel_workflow", "data": {"adw_id": "victim01"}},
    "subscribe": {"type": "subscribe", "data": {"since": 0}},
    "queue": {"type": "get_queue_status"},
    "ping": {"type": "ping"},
    "garbage": "{not json",
    "unknown": {"type": "admin_shutdown", "data": {}},
}


def test_random_auth_and_command_sequences(secure: Callable[..., Running], tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    limits = Limits(
        connections_per_address_per_s=1000,
        connections_per_address_burst=1000,
        auth_failures_per_address=100_000,
        commands_per_s=200,  # the calm client pings once an example
        commands_burst=10,  # an attacker's burst of 15 goes over
        principal_commands_per_s=1000,
        error_budget=5,
    )
    server = secure(security=security(tmp_path, limits=limits, max_auth_failures=3))
    calm = server.client()
    login_key(calm, "admin", ADMIN_KEY)
    victim = calm.trigger("adw_sleep", adw_id="victim01")  # runs until cancelled

    step = st.one_of(
        st.tuples(st.just("auth"), st.sampled_from(sorted(ATTACKER_TOKENS))),
        st.tuples(st.just("send"), st.sampled_from(sorted(ATTACKER_FRAMES))),
    )

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(step, min_size=1, max_size=15))
    def attack(steps: list[tuple[str, str]]) -> None:
        attacker = Client(f"ws://127.0.0.1:{server.service.port}/ws/trigger")
        try:
            for kind, name in steps:
                if kind == "auth":
                    msg: Any = {
                        "type": "authenticate",
                        "data": {"method": "token", "token": ATTACKER_TOKENS[name]()},
                    }
                else:
                    msg = ATTACKER_FRAMES[name]
                attacker.send(msg)
            attacker.send({"type": "ping", "request_id": "end"})
            # Its answer (a pong, or rate_limited): everything before it was handled.
            attacker.wait_for(lambda m: m.get("request_id") == "end")
        except ConnectionClosed:
            pass  # the server cut it: its own connection, nothing else
        finally:
            attacker.close()
        calm.send({"type": "ping", "request_id": "calm"})
        answer = calm.wait_for(lambda m: m.get("request_id") == "calm")
        assert answer["type"] == "pong", answer

    attack()
    calm.send({"type": "cancel_workflow", "data": {"adw_id": victim["data"]["adw_id"]}})
    calm.wait_terminal(victim["data"]["adw_id"])
    for client in server.clients:
        client.close()
    server.clients.clear()
    server.service.stop()
    events = server.events()
    queued_by = {e.principal for e in events if e.type == "run_queued"}
    assert queued_by <= {"ops", "h-trigger"}, queued_by
    cancelled_by = {e.principal for e in events if e.type == "cancel_requested"}
    assert cancelled_by <= {"ops"}, cancelled_by
    # The victim ran until the operator cancelled it: no attacker ended it.
    ended = [
        e
        for e in events
        if e.type in ("run_completed", "run_failed")
        and getattr(e.event, "adw_id", "") == "victim01"
    ]
    assert len(ended) == 1


def test_client_library_and_cli_with_a_token(secure: Callable[..., Running]) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    from adwd.transport.client import AdwdClient

    server = secure()
    url = f"ws://127.0.0.1:{server.service.port}/ws/trigger"
    token = service_token(["workflow:trigger", "workflow:read"])

    async def trigger() -> str:
        async with AdwdClient(url, token=token) as client:
            response = await client.trigger("adw_plan_iso", issue_number="10")
            return response.status

    assert asyncio.run(trigger()) == "accepted"
    env = {**os.environ, "ADWD_URL": f"127.0.0.1:{server.service.port}", "ADWD_TOKEN": token}
    status = subprocess.run(
        [sys.executable, "-m", "adwd", "status", "--json"],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=True,
    )  # fmt: skip
    assert "runs" in status.stdout or "adw" in status.stdout
    env.pop("ADWD_TOKEN")
    refused = subprocess.run(
        [sys.executable, "-m", "adwd", "trigger", "adw_plan_iso", "--json"],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False,
    )  # fmt: skip
    assert refused.returncode != 0


def test_tls_certificate_reloads_on_sighup(
    serve: Callable[[Path], tuple[Any, int]], tmp_path: Path
) -> None:
    import os
    import shutil
    import signal
    import ssl

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    cert_a, key_a = _certificate(first)
    cert_b, key_b = _certificate(second)
    live_cert, live_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(cert_a, live_cert)
    shutil.copy(key_a, live_key)
    config = tmp_path / "adwd.toml"
    config.write_text(
        f'port = 0\ndata_dir = "{tmp_path / "d"}"\n\n[security]\n'
        f'tls_cert = "{live_cert}"\ntls_key = "{live_key}"\n'
    )
    proc, port = serve(config)
    url = f"wss://127.0.0.1:{port}/ws/trigger"

    def accepted_by(cafile: Path) -> bool:
        try:
            Client(url, ssl=ssl.create_default_context(cafile=str(cafile))).close()
        except ssl.SSLCertVerificationError:
            return False
        return True

    assert accepted_by(cert_a)
    assert not accepted_by(cert_b)
    shutil.copy(cert_b, live_cert)
    shutil.copy(key_b, live_key)
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while not accepted_by(cert_b):  # the service reloads within its 0.5 s signal poll
        assert time.monotonic() < deadline, "the certificate was not reloaded"
    assert proc.poll() is None


def test_scoped_principals_read_only_their_runs(secure: Callable[..., Running]) -> None:
    server = secure()
    admin = server.client()
    login_key(admin, "admin", ADMIN_KEY)
    # Limited to one workflow type, and to its own runs: each sees only those.
    planner = server.client()
    authenticate(
        planner, "token", service_token(["workflow:read"], sub="planner", wft=["adw_plan_iso"])
    )
    own = server.client()
    authenticate(
        own, "token", service_token(["workflow:read", "workflow:trigger"], sub="own", own=True)
    )
    mine = own.trigger("adw_plan_iso", issue_number="11")["data"]["adw_id"]
    plan = admin.trigger("adw_plan_iso", issue_number="12")["data"]["adw_id"]
    build = admin.trigger("adw_patch_iso", issue_number="13")["data"]["adw_id"]
    for adw_id in (mine, plan, build):
        admin.wait_terminal(adw_id)
    planner.wait_terminal(plan)
    planner.wait_terminal(mine)
    own.wait_terminal(mine)
    # The same again from the log, on a subscribe: still only what each may see.
    for client in (planner, own):
        client.send({"type": "subscribe", "request_id": "s", "data": {"since": 0}})
        client.wait_for(lambda m: m["type"] == "subscribed")
        client.send({"type": "ping", "request_id": "end"})
        client.wait_for(lambda m: m.get("request_id") == "end" and m["type"] == "pong")

    def runs_seen(client: Client) -> set[str]:
        return {m["data"]["adw_id"] for m in client.seen if m["type"] == "status_update"}

    assert runs_seen(planner) == {plan, mine}
    assert runs_seen(own) == {mine}
    assert runs_seen(admin) >= {mine, plan, build}


def test_scoped_principals_cancel_only_their_runs(secure: Callable[..., Running]) -> None:
    server = secure()
    admin = server.client()
    login_key(admin, "admin", ADMIN_KEY)
    own = server.client()
    perms = ["workflow:trigger", "workflow:cancel", "workflow:read"]
    authenticate(own, "token", service_token(perms, sub="own", own=True))
    theirs = admin.trigger("adw_sleep", adw_id="theirs01")["data"]["adw_id"]
    mine = own.trigger("adw_sleep", adw_id="mine0001")["data"]["adw_id"]
    own.send({"type": "cancel_workflow", "request_id": "c1", "data": {"adw_id": theirs}})
    refused = own.wait_for(lambda m: m.get("request_id") == "c1")
    assert refused["type"] == "error"
    assert refused["data"]["code"] == "forbidden"
    own.send({"type": "cancel_workflow", "request_id": "c2", "data": {"adw_id": mine}})
    assert own.wait_for(lambda m: m.get("request_id") == "c2")["type"] == "cancel_response"
    assert own.wait_terminal(mine)["data"]["cancelled"] is True
    admin.send({"type": "cancel_workflow", "data": {"adw_id": theirs}})
    admin.wait_terminal(theirs)


def test_a_scoped_principal_may_not_write_into_run_logs(secure: Callable[..., Running]) -> None:
    """A board's workflow_log lands in a run's log: one limited to its own runs (or to
    some types) cannot know whose run it names, so it is refused (fail closed)."""
    client = secure().client()
    authenticate(client, "token", service_token(["workflow:trigger"], sub="own", own=True))
    line = {"adw_id": "someone", "workflow_name": "adw_plan_iso", "message": "x", "level": "INFO",
            "timestamp": "2026-11-29T00:00:00Z"}  # fmt: skip
    client.send({"type": "workflow_log", "data": line})
    assert client.wait_for(is_error("forbidden"))
