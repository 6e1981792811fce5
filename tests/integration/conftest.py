"""Fixtures that start the real service on 127.0.0.1 with a real SQLite file."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from websockets.sync.client import ClientConnection, connect

from adwd.actors.catalogue import WorkflowSpec
from adwd.events.store import EventStore, StoredEvent
from adwd.service.app import Service
from adwd.service.config import Config

TIMEOUT = 20.0


class Client:
    """A real WebSocket client with helpers that wait on messages, never sleep."""

    def __init__(self, url: str, **connect_options: Any) -> None:
        self._stack = contextlib.ExitStack()
        # No receive limit: a test client often leaves messages unread, and with
        # websockets' flow control it then cannot see the closing handshake
        # (every such close used to wait out the 10 s close timeout).
        self.ws: ClientConnection = self._stack.enter_context(
            connect(url, open_timeout=TIMEOUT, max_queue=None, **connect_options)
        )
        self.seen: list[dict[str, Any]] = []  # everything received, in order
        self.unclaimed: list[dict[str, Any]] = []  # received, not yet returned by wait_for

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        message = json.loads(self.ws.recv(timeout=timeout))
        self.seen.append(message)
        return message

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """The oldest unclaimed message matching, waiting for it if need be."""
        for i, message in enumerate(self.unclaimed):
            if predicate(message):
                return self.unclaimed.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError as timed_out:
                # Say what did arrive: a failure in CI must be diagnosable from its log.
                seen = "\n".join(json.dumps(m)[:300] for m in self.seen[-30:])
                raise TimeoutError(f"{timed_out}; the last messages received:\n{seen}") from None
            if predicate(message):
                return message
            self.unclaimed.append(message)

    def trigger(self, workflow_type: str, **data: Any) -> dict[str, Any]:
        self.send({"type": "trigger_workflow", "data": {"workflow_type": workflow_type, **data}})
        return self.wait_for(lambda m: m["type"] == "trigger_response")

    def planned(self, adw_id: str | None = None) -> str:
        """Run adw_plan_iso to completion (what build, test... depend on); its adw_id."""
        response = self.trigger("adw_plan_iso", **({"adw_id": adw_id} if adw_id else {}))
        assert response["data"]["status"] == "accepted", response
        adw_id = str(response["data"]["adw_id"])
        final = self.wait_terminal(adw_id)
        assert final["data"]["status"] == "completed", final
        return adw_id

    def wait_terminal(self, adw_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        return self.wait_for(
            lambda m: (
                m["type"] == "status_update"
                and m["data"]["adw_id"] == adw_id
                and m["data"]["status"] in ("completed", "failed")
            ),
            timeout,
        )

    def close(self) -> None:
        self._stack.close()


class Running:
    """A started in-process service and its data directory."""

    def __init__(self, service: Service, data_dir: Path) -> None:
        self.service = service
        self.data_dir = data_dir
        self.url = f"ws://127.0.0.1:{service.port}/ws/trigger"
        self.clients: list[Client] = []

    def client(self, path: str = "/ws/trigger", **connect_options: Any) -> Client:
        c = Client(f"ws://127.0.0.1:{self.service.port}{path}", **connect_options)
        self.clients.append(c)
        return c

    def events(self) -> list[StoredEvent]:
        store = EventStore(self.data_dir / "events.db", readonly=True)
        try:
            return list(store.read())
        finally:
            store.close()


def test_config(data_dir: Path, **overrides: Any) -> Config:
    """A config for tests: ephemeral port, the given data dir, the test workflow added."""
    workflows = {"adw_sleep": WorkflowSpec(timeout_s=60)}
    workflows.update(overrides.pop("workflows", {}))
    return Config(
        host=overrides.pop("host", "127.0.0.1"),
        port=overrides.pop("port", 0),
        data_dir=str(data_dir),
        shutdown_grace_s=overrides.pop("shutdown_grace_s", 2.0),
        workflows=workflows,
        **overrides,
    )


@contextlib.contextmanager
def services(base: Path) -> Iterator[Callable[..., Running]]:
    """A starter of services under ``base``; everything it started stops on exit."""
    started: list[Running] = []

    def start(**overrides: Any) -> Running:
        data_dir = overrides.pop("data_dir", base / "data")
        service = Service(test_config(data_dir, **overrides))
        service.start()
        running = Running(service, data_dir)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            for client in running.clients:
                client.close()
            running.service.stop()


@pytest.fixture
def serve() -> Iterator[Callable[[Path], tuple[subprocess.Popen[str], int]]]:
    """A starter of ``adwd serve --config PATH`` as a real process; returns it and its port.

    The service's stderr is echoed to the test's (pytest shows it on failure) and
    kept drained, so a full pipe never blocks the service's logging.
    """
    procs: list[tuple[subprocess.Popen[str], threading.Thread]] = []

    def start(config: Path) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "adwd", "serve", "--config", str(config)],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        drain = threading.Thread(target=_echo, args=(proc.stderr,), daemon=True)
        procs.append((proc, drain))
        for line in proc.stderr:
            sys.stderr.write(line)
            found = re.search(r"serving wss?://127\.0\.0\.1:(\d+)/ws/trigger", line)
            if found:
                drain.start()
                return proc, int(found.group(1))
        pytest.fail(f"adwd serve exited with {proc.wait()} before listening")

    yield start
    for proc, drain in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if drain.is_alive():
            drain.join(timeout=TIMEOUT)  # EOF now that the process is gone
        assert proc.stderr is not None
        proc.stderr.close()


def _echo(stream: IO[str]) -> None:
    for line in stream:
        sys.stderr.write(line)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start the service with config overrides; everything is stopped at teardown."""
    with services(tmp_path) as start:
        yield start


@pytest.fixture
def server(start_service: Callable[..., Running]) -> Running:
    """The service with default settings."""
    return start_service()


def release_env(tmp_path: Path, name: str = "release") -> tuple[Path, dict[str, str]]:
    """A release file for adw_sleep runs, and the env that points them at it."""
    release = tmp_path / name
    return release, {"ADW_RELEASE_FILE": str(release)}
