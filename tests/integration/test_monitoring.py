"""Monitoring against the real server: health by the rules, alerts once, /metrics, followers."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.health import MonitorSettings, RuleSettings
from adwd.events.domain import AlertFired, AlertResolved
from tests.integration.conftest import TIMEOUT, Running


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _health(port: int) -> dict[str, Any]:
    status, body = _get(port, "/health")
    assert status == 200
    result: dict[str, Any] = json.loads(body)
    return result


def _status(want: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "health_status" and m["data"]["status"] == want


def test_health_turns_degraded_and_back_with_one_alert_fired_and_one_resolved(
    start_service: Callable[..., Running],
) -> None:
    # The connections rule set low: a second connection degrades the service.
    rule = RuleSettings(raise_at=2, clear_at=2, for_s=0.3, keep_firing_for_s=0.3)
    monitor = MonitorSettings(interval_s=0.05, health_interval_s=60, rules={"connections": rule})
    server = start_service(monitor=monitor)
    port = server.service.port
    watcher = server.client()
    first = watcher.wait_for(lambda m: m["type"] == "health_status")  # due at once, then 60 s
    assert first["data"]["status"] == "healthy"
    assert first["data"]["active_connections"] == 1
    assert _health(port)["status"] == "healthy"

    other = server.client()
    fired = watcher.wait_for(lambda m: m["type"] == "alert")
    assert fired["data"]["state"] == "firing"
    assert fired["data"]["component"] == "transport"
    assert fired["data"]["actions_required"]
    degraded = watcher.wait_for(_status("degraded"))  # at once: the status changed
    assert degraded["data"]["active_connections"] == 2
    health = _health(port)
    assert health["status"] == "degraded"
    assert [a["rule"] for a in health["alerts"]] == ["connections"]

    other.close()
    resolved = watcher.wait_for(lambda m: m["type"] == "alert")
    assert resolved["data"]["state"] == "resolved"
    assert resolved["data"]["alert_id"] == fired["data"]["alert_id"]
    watcher.wait_for(_status("healthy"))
    assert _health(port)["status"] == "healthy"

    # Sent once each, however many samples saw the condition: in the log and on the wire.
    events = [s.event for s in server.events()]
    assert [type(e) for e in events if isinstance(e, AlertFired | AlertResolved)] == [
        AlertFired,
        AlertResolved,
    ]
    watcher.send({"type": "ping"})
    watcher.wait_for(lambda m: m["type"] == "pong")
    assert [m["data"]["state"] for m in watcher.seen if m["type"] == "alert"] == [
        "firing",
        "resolved",
    ]


def test_performance_metrics_to_the_clients_that_ask(start_service: Callable[..., Running]) -> None:
    server = start_service(monitor=MonitorSettings(interval_s=0.05, health_interval_s=0))
    asks = server.client("/ws/trigger?performance=0.05")
    quiet = server.client()
    perf = asks.wait_for(lambda m: m["type"] == "performance_metrics")
    assert perf["data"]["cpu_usage"] >= 0
    assert perf["data"]["memory_usage"] > 0
    assert perf["data"]["disk_io"]["event_log_bytes"] > 0
    # A subscribe changes the choice: health every sample, performance off.
    asks.send(
        {"type": "subscribe", "data": {"health_interval_s": 0.05, "performance_interval_s": 0}}
    )
    asks.wait_for(lambda m: m["type"] == "subscribed")
    asks.wait_for(lambda m: m["type"] == "health_status")
    quiet.send({"type": "ping"})
    quiet.wait_for(lambda m: m["type"] == "pong")
    assert not [m for m in quiet.seen if m["type"] in ("health_status", "performance_metrics")]


def test_metrics_count_the_runs_this_test_made(
    start_service: Callable[..., Running], tmp_path: Path
) -> None:
    failing = WorkflowSpec(argv=("{python}", "-c", "raise SystemExit(3)"))
    server = start_service(
        monitor=MonitorSettings(interval_s=0.05), workflows={"adw_fail": failing}
    )
    client = server.client()
    for workflow_type in ("adw_plan_iso", "adw_plan_iso", "adw_fail"):
        adw_id = client.trigger(workflow_type, issue_number=1)["data"]["adw_id"]
        client.wait_terminal(adw_id)
    status, text = _get(server.service.port, "/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("adwd_runs_started_total", (("workflow_type", "adw_plan_iso"),))] == 2
    assert samples[("adwd_runs_started_total", (("workflow_type", "adw_fail"),))] == 1
    finished = (("outcome", "completed"), ("workflow_type", "adw_plan_iso"))
    assert samples[("adwd_runs_finished_total", finished)] == 2
    failed = (("outcome", "failed"), ("workflow_type", "adw_fail"))
    assert samples[("adwd_runs_finished_total", failed)] == 1
    assert samples[("adwd_run_duration_seconds_count", (("workflow_type", "adw_plan_iso"),))] == 2
    assert samples[("adwd_messages_received_total", (("type", "trigger_workflow"),))] == 3
    assert samples[("adwd_messages_sent_total", (("type", "trigger_response"),))] == 3
    assert samples[("adwd_connections", ())] == 1
    assert samples[("adwd_connections_unsent_bytes", ())] >= 0
    assert samples[("adwd_event_log_commit_duration_seconds_count", ())] >= 1
    assert samples[("adwd_build_info", (("version", __import__("adwd").__version__),))] == 1
    # No label names a run, a connection or a user.
    for name, labels in samples:
        assert {k for k, _ in labels} <= {
            "type",
            "workflow_type",
            "outcome",
            "rule",
            "status",
            "le",
            "version",
        }, name


def test_the_http_endpoints_answer_beside_websocket_traffic(
    start_service: Callable[..., Running], tmp_path: Path
) -> None:
    release = tmp_path / "go"
    spec = WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})
    server = start_service(monitor=MonitorSettings(interval_s=0.05), workflows={"adw_sleep": spec})
    port = server.service.port
    client = server.client("/ws/trigger?health=0.05")
    adw_id = client.trigger("adw_sleep")["data"]["adw_id"]
    client.wait_for(lambda m: m["type"] == "status_update" and m["data"]["status"] == "started")
    for _ in range(2):  # the second is from a sample after the monitor folded the start
        client.wait_for(lambda m: m["type"] == "health_status")
    assert _get(port, "/livez") == (200, '{"status":"ok","checks":{"process":true}}')
    status, ready = _get(port, "/readyz")
    assert status == 200
    assert json.loads(ready)["checks"]["event_log"] is True
    health = _health(port)
    assert (health["status"], health["active_connections"], health["alerts"]) == ("healthy", 1, [])
    status, text = _get(port, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["adwd_runs_running"].samples[0].value == 1
    assert families["adwd_queue_length"].samples[0].value == 0
    assert "adwd_process_resident_memory_bytes" in families
    client.send({"type": "ping"})
    client.wait_for(lambda m: m["type"] == "pong")  # the WebSocket carried on meanwhile
    release.touch()
    assert client.wait_terminal(adw_id)["data"]["status"] == "completed"


class _Deaf:
    """A WebSocket client that reads the server's frames and never answers a ping."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._read()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self) -> bytes:
        data = self.sock.recv(65536)
        assert data, "the server closed the TCP connection without a close frame"
        return data

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            self.buf += self._read()

    def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (server frames are never masked)."""
        self._need(2)
        opcode, length = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        offset = 2
        if length == 126:
            self._need(4)
            length, offset = struct.unpack("!H", self.buf[2:4])[0], 4
        elif length == 127:
            self._need(10)
            length, offset = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(offset + length)
        payload = self.buf[offset : offset + length]
        self.buf = self.buf[offset + length :]
        return opcode, payload


def test_a_client_that_stops_answering_pings_loses_quality_and_is_dropped_with_1011(
    start_service: Callable[..., Running],
) -> None:
    monitor = MonitorSettings(
        interval_s=0.05, health_interval_s=0, ping_interval_s=0.2, ping_timeout_s=1.5
    )
    server = start_service(monitor=monitor)
    deaf = _Deaf(server.service.port, "/ws/trigger?quality=0.05")
    scores: list[float] = []
    suggestions: list[str] = []
    pings = 0
    while True:
        try:
            opcode, payload = deaf.frame()
        except BaseException:
            deaf.sock.close()
            raise
        if opcode == 0x9:
            pings += 1  # not answered
        elif opcode == 0x1:
            message = json.loads(payload)
            if message["type"] == "connection_quality":
                scores.append(message["data"]["reliability_score"])
                suggestions += message["data"]["suggestions"]
        elif opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0]
            deaf.sock.close()
            break
    assert code == 1011
    assert pings == 1  # the one ping it never answered: dropped after the timeout
    assert scores[0] > 0.9  # before the ping, or just after it
    assert min(scores) < 0.5  # falling while the pong is overdue
    assert scores == sorted(scores, reverse=True)
    assert any("Answer WebSocket pings" in s for s in suggestions)


def test_a_client_that_answers_pings_keeps_its_quality(
    start_service: Callable[..., Running],
) -> None:
    monitor = MonitorSettings(interval_s=0.05, ping_interval_s=0.1, ping_timeout_s=1.0)
    server = start_service(monitor=monitor)
    client = server.client("/ws/trigger?quality=0.3&health=0")
    for _ in range(5):  # 1.5 s: past the timeout the deaf client was dropped after
        quality = client.wait_for(lambda m: m["type"] == "connection_quality")
    assert quality["data"]["reliability_score"] > 0.8
    assert 0 < quality["data"]["latency"] < 500
    assert quality["data"]["bandwidth"] > 0


def test_a_queue_that_waits_too_long_degrades_health_until_it_moves(
    start_service: Callable[..., Running], tmp_path: Path
) -> None:
    release = tmp_path / "go"
    spec = WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})
    rule = RuleSettings(raise_at=0.3, clear_at=0.1, keep_firing_for_s=0)
    server = start_service(
        max_concurrent=1,
        workflows={"adw_sleep": spec},
        monitor=MonitorSettings(interval_s=0.05, rules={"queue_age_s": rule}),
    )
    client = server.client()
    first = client.trigger("adw_sleep")["data"]["adw_id"]
    client.wait_for(lambda m: m["type"] == "status_update" and m["data"]["status"] == "started")
    client.trigger("adw_sleep")  # waits behind the first
    fired = client.wait_for(lambda m: m["type"] == "alert")
    assert (fired["data"]["component"], fired["data"]["state"]) == ("scheduler", "firing")
    assert "waited" in fired["data"]["message"]
    assert _health(server.service.port)["status"] == "degraded"
    release.touch()  # both runs go: the queue empties
    client.wait_terminal(first)
    resolved = client.wait_for(lambda m: m["type"] == "alert")
    assert resolved["data"]["state"] == "resolved"
    fired_event = next(s.event for s in server.events() if isinstance(s.event, AlertFired))
    assert fired_event.rule == "queue_age_s"
    assert fired_event.value is not None
    assert fired_event.value >= 0.3  # the value that fired it is on record


def test_an_alert_left_firing_by_a_stop_is_resolved_at_the_next_start(
    start_service: Callable[..., Running],
) -> None:
    rule = RuleSettings(raise_at=1, clear_at=1, for_s=0)
    monitor = MonitorSettings(interval_s=0.05, rules={"connections": rule})
    first = start_service(monitor=monitor)
    client = first.client()
    fired = client.wait_for(lambda m: m["type"] == "alert")
    first.service.stop()
    second = start_service(monitor=MonitorSettings(interval_s=0.05))
    resolved = [s.event for s in second.events() if isinstance(s.event, AlertResolved)]
    assert [e.alert_id for e in resolved] == [fired["data"]["alert_id"]]
    assert "restarted" in resolved[0].message
