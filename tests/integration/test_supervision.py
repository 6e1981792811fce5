"""Supervision: a failure in one actor ends what it concerns and nothing else,
or stops the whole service with a non-zero exit; never a half-alive process.

Faults are injected with the test-only ``fault_injection`` setting: a ping
whose request_id is ``adwd-fault:<actor>`` makes that actor raise.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pykka
import pytest
from websockets.exceptions import ConnectionClosed

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.connection import ConnectionActor
from adwd.actors.processes import group_members
from tests.integration.conftest import TIMEOUT, Client, Running


def _fault(client: Client, target: str) -> None:
    client.send({"type": "ping", "request_id": f"adwd-fault:{target}"})


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_failing_connection_actor_closes_only_its_connection(
    start_service: Callable[..., Running],
) -> None:
    server = start_service(fault_injection=True)
    victim, bystander = server.client(), server.client()
    _fault(victim, "connection")
    error = victim.wait_for(lambda m: m["type"] == "error")
    assert error["data"]["code"] == "internal"
    assert "Reconnect" in error["data"]["message"]
    with pytest.raises(ConnectionClosed) as closed:
        victim.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
    bystander.send({"type": "ping"})
    assert bystander.wait_for(lambda m: m["type"] == "pong")
    again = server.client()  # the client can reconnect at once
    again.send({"type": "ping"})
    assert again.wait_for(lambda m: m["type"] == "pong")
    failed = [e for e in server.events() if e.type == "actor_failed"]
    assert len(failed) == 1
    assert failed[0].event.actor == "connection"  # type: ignore[attr-defined]
    assert failed[0].event.exception == "InjectedFault"  # type: ignore[attr-defined]
    status, ready = _get(server.service.port, "/readyz")
    assert status == 200, ready
    _, health = _get(server.service.port, "/health")
    assert health["actor_failures"] == {"connection": 1}
    assert health["status"] == "healthy"


def test_a_failing_workflow_actor_ends_its_run_and_frees_the_slot(
    tmp_path: Path, start_service: Callable[..., Running]
) -> None:
    release, stubborn = tmp_path / "release", tmp_path / "stubborn.pid"
    server = start_service(
        fault_injection=True,
        max_concurrent=1,
        shutdown_grace_s=0.5,
        workflows={
            "adw_sleep": WorkflowSpec(
                env={"ADW_RELEASE_FILE": str(release), "ADW_STUBBORN_CHILD": str(stubborn)}
            )
        },
    )
    client = server.client()
    client.trigger("adw_sleep", adw_id="faulty01")
    client.trigger("adw_sleep", adw_id="next0001")
    started = client.wait_for(lambda m: m.get("data", {}).get("status") == "started")
    assert started["data"]["adw_id"] == "faulty01"
    leader = int(re.search(r"pid (\d+)", started["data"]["message"]).group(1))  # type: ignore[union-attr]
    # The workflow writes the helper's pid before its first progress line.
    client.wait_for(lambda m: m.get("data", {}).get("status") == "running")
    helper = int(stubborn.read_text())
    assert helper in group_members(leader)
    _fault(client, "workflow:faulty01")
    end = client.wait_terminal("faulty01")
    assert end["data"]["status"] == "failed"
    assert "failed inside adwd" in end["data"]["message"]
    assert "InjectedFault" in end["data"]["message"]
    # Its whole group is gone, the helper that ignores SIGTERM included.
    assert group_members(leader) == []
    # The slot is free: the queued run starts.
    nxt = client.wait_for(
        lambda m: m.get("data", {}).get("status") == "started" and m["data"]["adw_id"] == "next0001"
    )
    assert nxt
    release.touch()
    assert client.wait_terminal("next0001")["data"]["status"] == "completed"
    types = [e.type for e in server.events() if e.stream == "workflow:faulty01"]
    assert types.count("run_failed") == 1
    assert "actor_failed" in types


@pytest.mark.parametrize("actor", ["scheduler", "projector", "event_log", "transport"])
def test_a_failing_core_actor_stops_the_service_non_zero(
    tmp_path: Path,
    actor: str,
    serve: Callable[[Path], tuple[subprocess.Popen[str], int]],
) -> None:
    config = tmp_path / "adwd.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nport = 0\nfault_injection = true\n')
    proc, port = serve(config)
    client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
    try:
        _fault(client, actor)
        assert proc.wait(timeout=TIMEOUT) == 1  # exits non-zero: its supervisor restarts it
        with pytest.raises(ConnectionClosed):
            client.wait_for(lambda _m: False)
    finally:
        client.close()
    # Restarted, it serves again from the same log.
    proc2, port2 = serve(config)
    again = Client(f"ws://127.0.0.1:{port2}/ws/trigger")
    try:
        again.send({"type": "ping"})
        assert again.wait_for(lambda m: m["type"] == "pong")
        status, ready = _get(port2, "/readyz")
        assert status == 200
        assert ready["status"] == "ok"
    finally:
        again.close()
        proc2.terminate()
        assert proc2.wait(timeout=TIMEOUT) == 0


def test_livez_and_readyz_and_not_ready_once_shutdown_begins(
    start_service: Callable[..., Running],
) -> None:
    server = start_service()
    assert _get(server.service.port, "/livez") == (
        200,
        {"status": "ok", "checks": {"process": True}},
    )
    status, ready = _get(server.service.port, "/readyz")
    assert status == 200
    assert ready["checks"] == {
        "event_log": True,
        "scheduler": True,
        "projector": True,
        "transport": True,
        "accepting": True,
    }
    transport = server.service._transport.proxy()  # type: ignore[union-attr]
    transport.stop_accepting().get()
    # The listener is closed from here on; what /readyz would answer:
    assert transport.readiness().get(timeout=TIMEOUT)["accepting"] is False


def test_connections_closed_with_mail_queued_leave_nothing_behind(
    start_service: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    """Clients that send a burst and drop the line at once: their actors handle or
    drop what was queued, stop, and are gone; the router forgets them; no error."""
    server = start_service()
    before = len(pykka.ActorRegistry.get_by_class(ConnectionActor))
    for _ in range(20):
        client = server.client()
        for i in range(200):
            client.send({"type": "ping", "request_id": f"r{i}"})
        client.send({"type": "get_queue_status"})
        client.ws.socket.close()  # no closing handshake: the peer just vanishes
    watcher = server.client()
    transport = server.service._transport.proxy()  # type: ignore[union-attr]

    def settled() -> bool:
        actors = len(pykka.ActorRegistry.get_by_class(ConnectionActor))
        return actors == before + 1 and transport.connection_count().get(timeout=TIMEOUT) == 1

    _eventually(settled)
    watcher.send({"type": "ping"})
    assert watcher.wait_for(lambda m: m["type"] == "pong")
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == [], [r.getMessage() for r in problems]


def _eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    # Actor stops and socket closes have no event to wait on from outside the
    # service: poll the condition briefly, with a deadline.
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "did not settle in time"
        time.sleep(0.02)
