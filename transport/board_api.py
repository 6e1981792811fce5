"""The Kanban board's REST calls (``src/services/api/`` of AgenticKanban), routed.

What adwd answers from its log and projections is served by the transport
(``TransportActor._board``): the ADW list, the filtered list, one ADW, and
DELETE. Every other call the board makes gets ``501 not_implemented`` with
the reason, instead of a bare 404, so a person reading the board's console
knows it is a choice and what to use instead. Pure: a request in, a route
or a reply out.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus

from adwd.events.errors import ErrorCode

ADW = r"(?P<adw_id>[A-Za-z0-9_-]{1,64})"


@dataclass(frozen=True, slots=True)
class BoardCall:
    """A board call adwd serves: ``name`` and its ``adw_id`` and query, if any."""

    name: str  # list | filtered | delete
    adw_id: str = ""
    query: tuple[tuple[str, str], ...] = ()


SERVED: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/api/adws/list"), "list"),
    ("GET", re.compile(r"/api/adws"), "filtered"),
    ("DELETE", re.compile(rf"/api/adws/{ADW}"), "delete"),
)

# (method, path, reason): what the board calls that adwd does not serve, and why.
UNSERVED: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(rf"/api/adws/{ADW}/plan"),
     "adwd does not serve project files; the plan is the spec file of the run's "
     "project (specs/), announced by spec_created"),
    ("GET", re.compile(rf"/api/adws/{ADW}/activity"),
     "the run's history is its events: GET /api/adws/<adw_id>, or `adwd events --adw-id`"),
    ("POST", re.compile(rf"/api/adws/{ADW}/activity"),
     "adwd records facts itself; a board cannot write to the log"),
    ("POST", re.compile(r"/api/adws"),
     "an ADW exists once triggered: send trigger_workflow"),
    ("PATCH", re.compile(rf"/api/adws/{ADW}"),
     "a run's state is folded from its events; a board cannot set it"),
    ("POST", re.compile(rf"/api/adws/(?:{ADW}/)?detect-stuck"),
     "adwd ends stuck runs itself (timeouts, the process group's exit)"),
    ("GET", re.compile(rf"/api/(?:execution-logs|stage-logs|logs)/{ADW}(?:/.*)?"),
     "the run's log is streamed as workflow_log and agent messages; its file is the "
     "logs_path of trigger_response"),
    ("GET", re.compile(r"/api/issues(?:/.*)?"), "adwd keeps no issue tracker"),
    ("POST", re.compile(r"/api/issues/allocate"), "adwd keeps no issue tracker"),
    ("POST", re.compile(r"/api/merge/trigger"),
     "merging is a workflow: trigger adw_ship_iso (or your merge workflow)"),
    ("GET", re.compile(rf"/api/merge/status/{ADW}"),
     "merging is a workflow: follow its status_update messages"),
    ("POST", re.compile(rf"/api/(?:codebase|worktree)/open/{ADW}"),
     "adwd does not open terminals or editors on the machine it runs on"),
    ("POST", re.compile(r"/api/clarify"), "adwd runs no model itself"),
)  # fmt: skip


def route(
    method: str, path: str, query: str
) -> BoardCall | tuple[HTTPStatus, dict[str, str]] | None:
    """What a board request is: a call adwd serves, a 501 (status and body), or
    None (not the board's: the other endpoints answer it)."""
    for verb, pattern, name in SERVED:
        found = pattern.fullmatch(path)
        if found and method in (verb, "HEAD" if verb == "GET" else verb):
            pairs = tuple(urllib.parse.parse_qsl(query, keep_blank_values=False))
            return BoardCall(name, found.groupdict().get("adw_id") or "", pairs)
    for verb, pattern, reason in UNSERVED:
        if method == verb and pattern.fullmatch(path):
            body = {
                "error": ErrorCode.NOT_IMPLEMENTED.value,
                "message": f"{method} {path} is not served by adwd: {reason}.",
                "detail": f"Not served by adwd: {reason}.",  # the board reads `detail`
            }
            return HTTPStatus.NOT_IMPLEMENTED, body
    return None
