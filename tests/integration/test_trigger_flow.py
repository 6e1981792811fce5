"""The whole trigger flow against the real service and real child processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adwd.actors.catalogue import DEFAULT_CATALOGUE, DEFAULT_WORKFLOW_TYPES
from tests.integration.conftest import Running


def test_ping_gets_pong_with_epoch_ms(server: Running) -> None:
    client = server.client()
    client.send({"type": "ping"})
    pong = client.recv()
    assert pong["type"] == "pong"
    assert isinstance(pong["timestamp"], int)
    assert pong["timestamp"] > 1_600_000_000_000


@pytest.mark.parametrize("workflow_type", DEFAULT_WORKFLOW_TYPES)
def test_each_workflow_type_runs_to_completion(server: Running, workflow_type: str) -> None:
    client = server.client()
    # A dependent workflow works on what a completed plan of the same adw_id made.
    needs = {"adw_id": client.planned()} if DEFAULT_CATALOGUE[workflow_type].requires else {}
    response = client.trigger(workflow_type, issue_number=42, trigger_reason="test", **needs)
    data = response["data"]
    assert data["status"] == "accepted", response
    assert data["workflow_name"] == workflow_type
    adw_id = data["adw_id"]
    assert len(adw_id) == 8
    assert all(c in "0123456789abcdef" for c in adw_id)
    assert data["logs_path"].endswith(f"agents/{adw_id}/{workflow_type}/execution.log")
    assert isinstance(response["seq"], int)

    updates: list[dict[str, Any]] = []
    while not updates or updates[-1]["data"]["status"] not in ("completed", "failed"):
        updates.append(client.wait_for(lambda m: m["type"] == "status_update"))
    statuses = [u["data"]["status"] for u in updates]
    assert statuses[0] == "started"
    assert statuses[-1] == "completed", updates[-1]
    running = [u for u in updates if u["data"]["status"] == "running"]
    assert running, "the example workflows report progress"
    assert running[0]["data"]["current_step"].startswith("Stage: ")
    seqs = [u["seq"] for u in updates]
    assert seqs == sorted(seqs)
    assert updates[-1]["data"]["progress_percent"] == 100
    log_text = Path(data["logs_path"]).read_text()
    assert "ADW-PROGRESS" in log_text
    assert "exit code 0" in log_text


def test_failing_workflow_reports_failed_with_reason(server: Running) -> None:
    client = server.client()
    response = client.trigger("adw_plan_iso", trigger_reason="please #fail")
    final = client.wait_terminal(response["data"]["adw_id"])
    assert final["data"]["status"] == "failed"
    assert "exited with code 1" in final["data"]["message"]
    assert "#fail" in final["data"]["message"]


def test_client_supplied_adw_id_is_used(server: Running) -> None:
    client = server.client("/ws")
    response = client.trigger("adw_plan_iso", adw_id="card-17_a")
    assert response["data"]["adw_id"] == "card-17_a"
    assert client.wait_terminal("card-17_a")["data"]["status"] == "completed"
    assert (server.data_dir / "agents/card-17_a/work/plan.md").exists()


def test_unknown_workflow_type_is_rejected_with_error_and_response(server: Running) -> None:
    client = server.client()
    client.send({"type": "trigger_workflow", "data": {"workflow_type": "adw_fly_iso"}})
    error = client.wait_for(lambda m: m["type"] == "error")
    assert error["data"]["code"] == "validation_error"
    assert error["data"]["details"]["field"] == "data.workflow_type"
    response = client.wait_for(lambda m: m["type"] == "trigger_response")
    assert response["data"]["status"] == "rejected"
    assert response["data"]["error"] == "validation_error"
    assert "adw_plan_iso" in response["data"]["message"]


def test_every_connection_follows_every_run(server: Running) -> None:
    board_a, board_b = server.client(), server.client()
    response = board_a.trigger("adw_plan_iso")
    adw_id = response["data"]["adw_id"]
    assert board_b.wait_terminal(adw_id)["data"]["status"] == "completed"
    assert not any(m["type"] == "trigger_response" for m in board_b.seen)


def test_http_health_and_unknown_paths(server: Running) -> None:
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{server.service.port}"
    with urllib.request.urlopen(f"{base}/health", timeout=10) as reply:
        assert reply.status == 200
        assert b'"status":"healthy"' in reply.read()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/nowhere", timeout=10)
    info.value.close()
    assert info.value.code == 404
