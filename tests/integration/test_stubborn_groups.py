"""Cancel, timeout and shutdown end a run's whole process group, including a
member that ignores SIGTERM: SIGKILL reaches it after the grace period.
Checked in /proc (zombies count as gone)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.processes import group_members
from tests.integration.conftest import Client, Running

GRACE_S = 0.5


def _start(start_service: Callable[..., Running], tmp_path: Path, **spec: Any) -> Running:
    helper = tmp_path / "helper.pid"
    return start_service(
        shutdown_grace_s=GRACE_S,
        workflows={"adw_sleep": WorkflowSpec(env={"ADW_STUBBORN_CHILD": str(helper)}, **spec)},
    )


def _running(client: Client, adw_id: str, helper_file: Path) -> tuple[int, int]:
    """Trigger a run whose workflow leaves a SIGTERM-ignoring helper; (leader, helper)."""
    client.trigger("adw_sleep", adw_id=adw_id)
    started = client.wait_for(
        lambda m: m.get("data", {}).get("status") == "started" and m["data"]["adw_id"] == adw_id
    )
    leader = int(re.search(r"pid (\d+)", started["data"]["message"]).group(1))  # type: ignore[union-attr]
    # The workflow writes the helper's pid before its first progress line.
    client.wait_for(
        lambda m: m.get("data", {}).get("status") == "running" and m["data"]["adw_id"] == adw_id
    )
    helper = int(helper_file.read_text())
    assert helper in group_members(leader)
    return leader, helper


def test_cancel_ends_a_member_that_ignores_sigterm(
    tmp_path: Path, start_service: Callable[..., Running]
) -> None:
    server = _start(start_service, tmp_path)
    client = server.client()
    leader, _ = _running(client, "cancel01", tmp_path / "helper.pid")
    client.send({"type": "cancel_workflow", "data": {"adw_id": "cancel01", "reason": "test"}})
    end = client.wait_terminal("cancel01")
    assert end["data"]["status"] == "failed"
    assert group_members(leader) == []


def test_timeout_ends_a_member_that_ignores_sigterm(
    tmp_path: Path, start_service: Callable[..., Running]
) -> None:
    server = _start(start_service, tmp_path, timeout_s=1.0)
    client = server.client()
    leader, _ = _running(client, "slow0001", tmp_path / "helper.pid")
    end = client.wait_terminal("slow0001")
    assert end["data"]["status"] == "failed"
    assert "timed out" in end["data"]["message"]
    assert group_members(leader) == []


def test_shutdown_ends_a_member_that_ignores_sigterm(
    tmp_path: Path, start_service: Callable[..., Running]
) -> None:
    server = _start(start_service, tmp_path)
    client = server.client()
    leader, _ = _running(client, "shut0001", tmp_path / "helper.pid")
    server.service.stop()
    assert group_members(leader) == []
    ends = [e for e in server.events() if e.type == "run_failed"]
    assert len(ends) == 1
    assert ends[0].event.reason.startswith("interrupted")  # type: ignore[attr-defined]
