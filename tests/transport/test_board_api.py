"""The board's REST calls routed (pure): served, 501 with a reason, or not the board's."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from adwd.transport.board_api import BoardCall, route


def test_what_is_served() -> None:
    assert route("GET", "/api/adws/list", "") == BoardCall("list")
    assert route("GET", "/api/adws", "status=completed&stage=build") == BoardCall(
        "filtered", "", (("status", "completed"), ("stage", "build"))
    )
    assert route("DELETE", "/api/adws/a1b2c3d4", "") == BoardCall("delete", "a1b2c3d4")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/adws/a1b2c3d4/plan"),
        ("GET", "/api/adws/a1b2c3d4/activity"),
        ("PATCH", "/api/adws/a1b2c3d4"),
        ("POST", "/api/adws"),
        ("POST", "/api/merge/trigger"),
        ("GET", "/api/issues/3"),
        ("POST", "/api/codebase/open/a1b2c3d4"),
    ],
)
def test_the_rest_is_501_with_a_reason(method: str, path: str) -> None:
    answer = route(method, path, "")
    assert isinstance(answer, tuple)
    status, body = answer
    assert status == HTTPStatus.NOT_IMPLEMENTED
    assert body["error"] == "not_implemented"
    assert path in body["message"]
    assert body["detail"].startswith("Not served by adwd: ")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/adws/a1b2c3d4"),  # the read API answers it
        ("DELETE", "/api/adws/../etc"),  # not an adw_id: 404 from the other endpoints
        ("GET", "/health"),
        ("POST", "/api/workflow-updates"),
    ],
)
def test_other_requests_are_not_the_boards(method: str, path: str) -> None:
    assert route(method, path, "") is None
