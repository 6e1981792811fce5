"""The HTTP answer to each outcome of routing a workflow's own report."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from adwd.actors.messages import RouteOutcome
from adwd.transport.http_api import route_reply


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        (RouteOutcome.ACCEPTED, HTTPStatus.ACCEPTED, None),
        (RouteOutcome.FORBIDDEN, HTTPStatus.FORBIDDEN, "forbidden"),
        (RouteOutcome.NOT_FOUND, HTTPStatus.NOT_FOUND, "not_found"),
    ],
)
def test_each_outcome_has_its_status_and_error_code(
    outcome: RouteOutcome, status: HTTPStatus, code: str | None
) -> None:
    got, body = route_reply(outcome, "a1")
    assert got == status
    assert body.get("error") == code
    if code is None:
        assert body == {"status": "accepted", "adw_id": "a1"}


def test_every_outcome_is_answered() -> None:
    assert {route_reply(o, "a")[0] for o in RouteOutcome} == {
        HTTPStatus.ACCEPTED,
        HTTPStatus.FORBIDDEN,
        HTTPStatus.NOT_FOUND,
    }
