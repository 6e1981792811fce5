"""Graceful shutdown of the real ``adwd serve`` process, and slow clients."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.uri import parse_uri

from adwd.actors.catalogue import WorkflowSpec
from adwd.events.store import EventStore
from adwd.service.app import SWITCH_INTERVAL_S
from tests.integration.conftest import TIMEOUT, Client, Running, services


@pytest.fixture
def serve_process(
    tmp_path: Path, serve: Callable[[Path], tuple[subprocess.Popen[str], int]]
) -> Callable[[], tuple[subprocess.Popen[str], int]]:
    """Start ``adwd serve`` as a real process; returns it and its port."""
    config = tmp_path / "adwd.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "port = 0\nmax_concurrent = 1\nshutdown_grace_s = 5\n"
        "[workflows.adw_sleep]\n"
        f'env = {{ ADW_RELEASE_FILE = "{tmp_path / "release"}" }}\n'
    )
    return lambda: serve(config)


def test_sigterm_closes_with_1001_ends_runs_and_keeps_the_queue(
    serve_process: Callable[[], tuple[subprocess.Popen[str], int]],
    tmp_path: Path,
    start_service: Callable[..., Running],
) -> None:
    proc, port = serve_process()
    client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
    client.trigger("adw_sleep", adw_id="inflight")
    client.trigger("adw_sleep", adw_id="waiting")  # max_concurrent 1: this one queues
    started = client.wait_for(lambda m: m["data"].get("status") == "started")
    pid = int(re.search(r"pid (\d+)", started["data"]["message"]).group(1))  # type: ignore[union-attr]
    client.wait_for(lambda m: m["data"].get("status") == "running")

    proc.send_signal(signal.SIGTERM)
    final = client.wait_terminal("inflight")
    assert final["data"]["status"] == "failed"
    assert "interrupted" in final["data"]["message"]
    with pytest.raises(ConnectionClosed) as closed:
        client.wait_for(lambda m: False)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert proc.wait(timeout=TIMEOUT) == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the run's whole process group is gone

    store = EventStore(tmp_path / "data/events.db", readonly=True)
    types = [e.type for e in store.read()]
    store.close()
    assert types[-1] == "service_stopped"
    assert types.count("run_started") == 1

    # The queued run was kept: it runs when the service starts again.
    restarted = start_service(
        data_dir=tmp_path / "data",
        max_concurrent=1,
        workflows={"adw_sleep": WorkflowSpec(env={"ADW_RELEASE_FILE": str(tmp_path / "release")})},
    )
    watcher = restarted.client()
    (tmp_path / "release").touch()
    assert watcher.wait_terminal("waiting")["data"]["status"] == "completed"


def test_a_client_that_does_not_read_is_dropped_and_others_keep_up(
    start_service: Callable[..., Running], tmp_path: Path
) -> None:
    # ~8 MB of progress messages: more than the kernel's socket buffers (up to 4 MiB
    # here) absorb, so the server's own outbound buffer passes the 16 KiB limit below.
    # (Braces are doubled: argv strings are templates.)
    code = (
        "import json\n"
        "for i in range(4000):\n"
        "    print('ADW-PROGRESS ' + json.dumps({{'progress_percent': i % 100, "
        "'message': 'x' * 1900}}), flush=True)\n"
    )
    server = start_service(
        max_outbound_bytes=16384,
        workflows={"adw_chatty": WorkflowSpec(argv=("{python}", "-c", code))},
    )
    # A peer that completes the handshake and then stops reading: a frozen browser tab.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect(("127.0.0.1", server.service.port))
    sock.settimeout(TIMEOUT)
    slow = ClientProtocol(parse_uri(server.url))
    slow.send_request(slow.connect())
    sock.sendall(b"".join(slow.data_to_send()))
    while slow.state is not State.OPEN:
        slow.receive_data(sock.recv(4096))

    good = server.client()
    adw_id = good.trigger("adw_chatty")["data"]["adw_id"]
    final = good.wait_terminal(adw_id, timeout=60)
    assert final["data"]["status"] == "completed"
    running = [m for m in good.seen if m["data"].get("status") == "running"]
    assert len(running) == 4000  # the good client missed nothing

    # Now read what the server buffered for the slow peer: it ends in a close frame.
    while slow.close_rcvd is None:
        data = sock.recv(65536)
        if not data:
            break
        slow.receive_data(data)
    sock.close()
    assert slow.close_rcvd is not None
    assert slow.close_rcvd.code == 1013


def test_the_switch_interval_is_short_while_services_run(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    with services(tmp_path / "one") as start:
        start()
        assert sys.getswitchinterval() == min(before, SWITCH_INTERVAL_S)
        with services(tmp_path / "two") as start_another:
            start_another()
        assert sys.getswitchinterval() == min(before, SWITCH_INTERVAL_S)  # one still runs
    assert sys.getswitchinterval() == before
