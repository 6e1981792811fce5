"""The card's stage has one source, the log: after a restart the read API and
the next run start from the stage clients were last sent."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import TIMEOUT, Running


def _adw(server: Running, adw_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.service.port}/api/adws/{adw_id}"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
        return json.loads(reply.read())


def _moves(client_seen: list[dict[str, Any]], adw_id: str) -> list[tuple[str, str]]:
    return [
        (m["data"]["from_stage"], m["data"]["to_stage"])
        for m in client_seen
        if m["type"] == "stage_transition" and m["data"]["adw_id"] == adw_id
    ]


def test_a_restart_keeps_the_card_where_clients_last_saw_it(
    tmp_path: Path, start_service: Callable[..., Running]
) -> None:
    """A run of a type that owns no stage moves the card in ways no guess from
    its status gets right (adw_sleep, completed: the card went to plan, not
    to completed); after a restart the log's answer is still the one given."""
    (tmp_path / "go").touch()
    workflows = {"adw_sleep": WorkflowSpec(env={"ADW_RELEASE_FILE": str(tmp_path / "go")})}
    first = start_service(workflows=workflows)
    client = first.client()
    client.trigger("adw_plan_iso", adw_id="card0001")
    client.wait_terminal("card0001")
    client.trigger("adw_sleep", adw_id="card0001")
    client.wait_for(
        lambda m: (
            m["type"] == "status_update"
            and m["data"]["workflow_name"] == "adw_sleep"
            and m["data"]["status"] == "completed"
        )
    )
    moves = _moves(client.seen, "card0001")
    last = moves[-1][1]
    assert last not in ("completed", "errored")
    first.service.stop()

    again = start_service(data_dir=first.data_dir, workflows=workflows)
    # The read API says what the clients were told, not a guess from the status.
    assert _adw(again, "card0001")["current_stage"] == moves[-1][1]
    watcher = again.client()
    watcher.trigger("adw_test_iso", adw_id="card0001")
    watcher.wait_for(
        lambda m: (
            m["type"] == "status_update"
            and m["data"]["workflow_name"] == "adw_test_iso"
            and m["data"]["status"] in ("completed", "failed")
        )
    )
    after = _moves(watcher.seen, "card0001")
    assert after[0][0] == last  # the next run moves the card from where it was
