"""The connection guard and the authenticator as pure code: no server, no clock."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.actors import guard as sec
from adwd.actors.auth import (
    ApiKey,
    Authenticator,
    AuthFailed,
    Limits,
    Permission,
    Principal,
    SecurityConfig,
    SigningKey,
    api_key_hash,
    api_key_proof,
    required_permission,
)
from adwd.actors.limits import AddressLimits, ConnectionLimits
from adwd.events.codec import decode_server
from adwd.events.errors import CloseCode
from adwd.events.wire import (
    AuthChallenge,
    Authenticate,
    AuthenticateData,
    AuthResponse,
    ClientAuthChallenge,
    ClientAuthChallengeData,
)

SECRET = "q" * 40
KEY = "the-api-key-0123456789"
CONFIG = SecurityConfig(
    methods=["api_key", "token"],
    api_keys=[
        ApiKey(key_id="a", sha256=api_key_hash(KEY), user_id="u", permissions=["workflow:read"])
    ],
    token_keys=[SigningKey(kid="k", secret=SECRET)],
    limits=Limits(enabled=False),
)
AUTH = Authenticator(CONFIG)
TYPES = ["ping", "trigger_workflow", "cancel_workflow", "subscribe", "get_queue_status", "x"]


def token(perms: list[str], **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "adwd", "aud": "adwd", "sub": "t", "iat": now, "exp": now + 600}
    body.update(perms=perms, **claims)
    return jwt.encode(body, SECRET, algorithm="HS256", headers={"kid": "k"})


def new_guard(config: SecurityConfig = CONFIG) -> sec.Guard:
    return sec.Guard(
        config=config,
        authenticator=Authenticator(config),
        connection_id="c1",
        address="10.0.0.1",
        principal=None,
        principal_limits=None,
    )


def sent(effects: list[sec.Effect]) -> list[Any]:
    return [decode_server(e.frame) for e in effects if isinstance(e, sec.Send)]


def test_every_message_type_needs_its_permission() -> None:
    assert required_permission("ping") is None
    assert required_permission("trigger_workflow") is Permission.WORKFLOW_TRIGGER
    assert required_permission("cancel_workflow") is Permission.WORKFLOW_CANCEL
    assert required_permission("subscribe") is Permission.WORKFLOW_READ
    assert required_permission("some_new_type") is Permission.ADMIN  # closed by default


def test_api_key_proof_is_bound_to_nonce_and_connection() -> None:
    proof = api_key_proof(KEY, "n1", "c1")
    assert AUTH.verify_api_key("a", proof, "n1", "c1").user_id == "u"
    for key_id, nonce, cid in (("a", "n2", "c1"), ("a", "n1", "c2"), ("b", "n1", "c1")):
        with pytest.raises(AuthFailed):
            AUTH.verify_api_key(key_id, proof, nonce, cid)
    with pytest.raises(AuthFailed):
        AUTH.verify_api_key("a", proof, None, "c1")  # no open challenge


def test_issued_tokens_verify_and_carry_the_grant() -> None:
    p = Principal(
        user_id="z",
        permissions=frozenset({"workflow:trigger"}),
        workflow_types=frozenset({"adw_plan_iso"}),
    )
    back = AUTH.verify_token(AUTH.issue(p, time.time()), time.time())
    assert back.user_id == "z"
    assert back.may(Permission.WORKFLOW_TRIGGER, "adw_plan_iso")
    assert not back.may(Permission.WORKFLOW_TRIGGER, "adw_build_iso")
    assert not back.may(Permission.WORKFLOW_READ)


def test_nonce_is_spent_by_a_failed_attempt() -> None:
    guard = new_guard()
    challenge = sent(guard.start(0.0))[0]
    assert isinstance(challenge, AuthChallenge)
    nonce = challenge.data.challenge
    bad = Authenticate(AuthenticateData(method="api_key", key_id="a", signature="0" * 64))
    retry = sent(guard.authenticate(bad, 1.0))
    assert retry[-1].data.challenge != nonce  # a fresh challenge after the failure
    replay = api_key_proof(KEY, nonce, "c1")
    again = Authenticate(AuthenticateData(method="api_key", key_id="a", signature=replay))
    assert guard.authenticate(again, 2.0)
    assert guard.principal is None


def test_client_challenge_form_authenticates() -> None:
    guard = new_guard()
    nonce = sent(guard.start(0.0))[0].data.challenge
    msg = ClientAuthChallenge(
        ClientAuthChallengeData(method="api_key", challenge=f"a:{api_key_proof(KEY, nonce, 'c1')}")
    )
    effects = guard.authenticate(msg, 1.0)
    assert isinstance(sent(effects)[0], AuthResponse)
    assert any(isinstance(e, sec.GrantRead) for e in effects)


def test_deadline_closes_4401_only_when_unauthenticated() -> None:
    guard = new_guard()
    guard.start(0.0)
    closes = [e for e in guard.timer("deadline", 0, 10.0) if isinstance(e, sec.Close)]
    assert closes == [sec.Close(CloseCode.UNAUTHENTICATED, "authentication timeout")]


def test_limits_refuse_with_retry_after_then_disconnect() -> None:
    limits = ConnectionLimits(Limits(commands_per_s=1, commands_burst=2, strikes=3))
    assert limits.command("ping", 0.0) is None
    assert limits.command("ping", 0.0) is None
    refused = limits.command("ping", 0.0)
    assert refused is not None
    assert refused.retry_after == pytest.approx(1.0)
    assert limits.command("ping", 5.0) is None  # refilled
    # Sending at twice the limit: admitted now and then, refused more often than
    # refusals are forgiven (1/s): cut, although no run of refusals is long.
    now = 5.0
    while not limits.abusive and now < 60:
        now += 0.25
        limits.command("ping", now)
    assert limits.abusive
    assert now < 60


def test_address_limits() -> None:
    limits = AddressLimits(
        Limits(concurrent_per_address=2, auth_failures_per_address=2, auth_lockout_s=10)
    )
    assert limits.admit("a", 0.0) is None
    assert limits.admit("a", 0.0) is None
    refused = limits.admit("a", 0.0)
    assert refused is not None
    assert refused.limit == "concurrent_per_address"
    assert limits.admit("b", 0.0) is None  # other addresses are not slowed
    limits.closed("a", 0.0)
    limits.auth_failed("a", 0.0)
    limits.auth_failed("a", 0.0)
    locked = limits.admit("a", 1.0)
    assert locked is not None
    assert locked.limit == "auth_failures"
    assert limits.admit("a", 11.0) is None


# -- hypothesis: no effect of a command without its permission ------------------

CREDENTIALS = {
    "admin": (token(["admin"]), frozenset({"admin"})),
    "reader": (token(["workflow:read"]), frozenset({"workflow:read"})),
    "trigger": (token(["workflow:trigger"]), frozenset({"workflow:trigger"})),
    "expired": (token(["admin"], exp=int(time.time()) - 100), None),
    "garbage": ("not.a.token", None),
    "alg-none": ("eyJhbGciOiJub25lIiwia2lkIjoiayJ9.eyJzdWIiOiJ4In0.", None),
}

actions = st.lists(
    st.one_of(
        st.tuples(st.just("auth"), st.sampled_from(sorted(CREDENTIALS))),
        st.tuples(st.just("send"), st.sampled_from(TYPES)),
        st.tuples(st.just("invalid"), st.just("")),
        st.tuples(st.just("timer"), st.sampled_from(["deadline", "warn", "expire"])),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(actions, st.booleans())
def test_no_command_without_its_permission(steps: list[tuple[str, str]], limited: bool) -> None:
    config = SecurityConfig(
        methods=["token"],
        token_keys=[SigningKey(kid="k", secret=SECRET)],
        limits=Limits(enabled=limited, commands_burst=5, strikes=3, error_budget=3),
    )
    guard = new_guard(config)
    granted: frozenset[str] | None = None  # what the model says the connection holds
    now = 0.0
    guard.start(now)
    for kind, arg in steps:
        now += 0.01
        if kind == "auth":
            tok, perms = CREDENTIALS[arg]
            effects = guard.authenticate(
                Authenticate(AuthenticateData(method="token", token=tok)), now
            )
            # A refresh over the limits is refused: the connection keeps its principal.
            limited_out = any(
                isinstance(e, sec.Send) and b'"rate_limited"' in e.frame for e in effects
            )
            if perms is not None and not limited_out:
                granted = perms
        elif kind == "send":
            admitted, effects = guard.admit(arg, None, None, now)
            need = required_permission(arg)
            if admitted and need is not None:
                assert granted is not None, "a command before authentication"
                assert "admin" in granted or need.value in granted, (arg, granted)
        elif kind == "invalid":
            effects = guard.invalid(now)
        else:
            effects = guard.timer(arg, 1, now)  # type: ignore[arg-type]
        assert (guard.principal is None) == (granted is None)
        if any(isinstance(e, sec.Close) for e in effects):
            break  # the actor drops everything after a close


def test_refreshes_count_against_the_limits() -> None:
    config = SecurityConfig(
        methods=["token"],
        token_keys=[SigningKey(kid="k", secret=SECRET)],
        limits=Limits(enabled=True, commands_per_s=1, commands_burst=3),
    )
    guard = new_guard(config)
    guard.start(0.0)
    refresh = Authenticate(AuthenticateData(method="token", token=token(["admin"])))
    guard.authenticate(refresh, 0.0)  # the first: not yet a principal, not limited
    replies = [sent(guard.authenticate(refresh, 0.0))[0] for _ in range(5)]
    assert [type(r).__name__ for r in replies].count("AuthResponse") == 3
    assert replies[-1].data.code == "rate_limited"


@pytest.mark.parametrize(
    ("perms", "monitors"),
    [(["workflow:read"], False), (["monitor:read"], True), (["admin"], True)],
)
def test_news_of_the_service_needs_monitor_read(perms: list[str], monitors: bool) -> None:
    guard = new_guard()
    guard.start(0.0)
    assert not guard.monitoring  # not authenticated: nothing of the service
    message = Authenticate(AuthenticateData(method="token", token=token(perms)))
    effects = guard.authenticate(message, 0.0)
    assert any(isinstance(e, sec.GrantMonitor) for e in effects) is monitors
    assert guard.monitoring is monitors
