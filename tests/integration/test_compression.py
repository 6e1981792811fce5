"""permessage-deflate is negotiated with clients that offer it, and only when enabled."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from websockets.sync.client import connect

from tests.integration.conftest import TIMEOUT, Running


@pytest.mark.parametrize(
    ("compression", "negotiated"), [("deflate", True), ("off", False)]
)  # fmt: skip
def test_negotiated_with_clients_that_offer_it(
    start_service: Callable[..., Running], compression: str, negotiated: bool
) -> None:
    server = start_service(compression=compression, compression_min_bytes=64)
    with connect(server.url, open_timeout=TIMEOUT) as ws:  # offers permessage-deflate
        assert ws.response is not None
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert agreed.startswith("permessage-deflate") == negotiated
        # A short message and one over the threshold both arrive intact.
        for request_id in ("p", "p" * 64):
            ws.send(json.dumps({"type": "ping", "request_id": request_id}))
            pong = json.loads(ws.recv(timeout=TIMEOUT))
            assert (pong["type"], pong["request_id"]) == ("pong", request_id)
