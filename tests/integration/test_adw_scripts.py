"""The real ADW scripts' contract: the state they load and the notifier they post with.

The child here is a stand-in for an ADW script, in a project directory of its
own: it loads ``agents/<adw_id>/adw_state.json`` the way ``ADWState.load``
does (relative to its own file, only when ``ADW_DB_ONLY=false``), and posts
the way ``WebSocketNotifier`` does (``{WEBSOCKET_URL}/api/workflow-updates``,
null fields included), recording the status codes it got.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import Running

Start = Callable[..., Running]

PROBE = r"""
import json, os, sys, urllib.error, urllib.request
issue_number, adw_id = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # as adw_modules/state.py
state = None
path = os.path.join(root, "agents", adw_id, "adw_state.json")
if os.getenv("ADW_DB_ONLY", "true").lower() != "true" and os.path.exists(path):
    state = json.load(open(path))
base = os.environ["WEBSOCKET_URL"].rstrip("/")  # as caddy_utils.detect_server_url
codes = []
for body in (
    {"type": "workflow_log", "data": {"adw_id": adw_id, "workflow_name": "probe",
     "message": "loaded " + str((state or {}).get("data_source")), "level": "INFO",
     "timestamp": "2025-01-01T00:00:00Z"}},
    {"type": "status_update", "data": {"adw_id": adw_id, "workflow_name": "probe",
     "status": "in_progress", "message": "working", "timestamp": "2025-01-01T00:00:00Z",
     "progress_percent": None, "current_step": None}},
):
    request = urllib.request.Request(base + "/api/workflow-updates", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            codes.append(reply.status)
    except urllib.error.HTTPError as error:
        codes.append(error.code)
json.dump({"state": state, "codes": codes, "url": base},
          open(os.path.join(root, "out-" + adw_id + ".json"), "w"))
"""


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "adws" / "adw_modules").mkdir(parents=True)  # where their state loader lives
    (project / "adws" / "adw_probe.py").write_text(PROBE)
    return project


def _start(start_service: Start, project: Path) -> Running:
    spec = WorkflowSpec(argv=("{python}", "adws/adw_probe.py", "{issue_number}", "{adw_id}"))
    return start_service(project_dir=str(project), workflows={"adw_probe": spec})


def _out(project: Path, adw_id: str) -> dict[str, object]:
    return json.loads((project / f"out-{adw_id}.json").read_text())


def test_a_board_card_is_loaded_in_kanban_mode_and_its_notifier_gets_200(
    start_service: Start, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    server = _start(start_service, project)
    board = server.client()
    card = {"title": "Dark mode", "description": "a toggle", "stage": "backlog"}
    board.trigger("adw_probe", adw_id="card1", issue_json=card, issue_type="feature")
    log = board.wait_for(lambda m: m["type"] == "workflow_log" and "loaded" in m["data"]["message"])
    assert log["data"]["message"] == "loaded kanban"
    assert board.wait_terminal("card1")["data"]["status"] == "completed"
    out = _out(project, "card1")
    assert out["codes"] == [200, 200]  # the notifier counts anything else as a failure
    assert out["url"] == f"http://127.0.0.1:{server.service.port}"
    state = out["state"]
    assert isinstance(state, dict)
    assert {k: state[k] for k in ("adw_id", "issue_number", "issue_class", "data_source")} == {
        "adw_id": "card1",
        "issue_number": None,
        "issue_class": "/feature",
        "data_source": "kanban",
    }
    assert state["issue_json"] == card
    written = [e.event for e in server.events() if type(e.event).__name__ == "AdwStateWritten"]
    assert len(written) == 1
    assert (written[0].created, written[0].data_source) == (True, "kanban")


def test_a_github_issue_and_a_dependent_workflow_that_updates_it(
    start_service: Start, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    server = _start(start_service, project)
    board = server.client()
    board.trigger("adw_probe", adw_id="gh1", issue_number="42")
    board.wait_terminal("gh1")
    first = _out(project, "gh1")["state"]
    assert isinstance(first, dict)
    assert (first["data_source"], first["issue_number"]) == ("github", "42")

    # What the plan stage stored (as the scripts' save() would) must survive the next trigger.
    path = project / "agents" / "gh1" / "adw_state.json"
    path.write_text(json.dumps({**first, "branch_name": "feat-42", "plan_file": "specs/p.md"}))
    board.trigger("adw_probe", adw_id="gh1", model_set="heavy")
    board.wait_for(
        lambda m: (
            m["type"] == "status_update"
            and m["data"]["adw_id"] == "gh1"
            and m["data"]["status"] == "completed"
        )
    )
    second = _out(project, "gh1")["state"]
    assert second == {**first, "branch_name": "feat-42", "plan_file": "specs/p.md",
                      "model_set": "heavy"}  # fmt: skip
    written = [e.event for e in server.events() if type(e.event).__name__ == "AdwStateWritten"]
    assert [(w.created, w.changed) for w in written][1] == (False, ["model_set"])


def test_no_state_where_no_adw_scripts_would_read_it(start_service: Start, tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "adws" / "adw_modules").rmdir()
    server = _start(start_service, project)
    board = server.client()
    board.trigger("adw_probe", adw_id="plain1", issue_type="bug")
    board.wait_terminal("plain1")
    assert _out(project, "plain1")["state"] is None
    assert not (project / "agents").exists()
