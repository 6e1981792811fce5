"""permessage-deflate with a size threshold: small messages go uncompressed, large ones
compressed, and a stock client decodes any mix of them. (Negotiation with real clients:
tests/integration/test_compression.py.)"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from adwd.transport.deflate import ThresholdDeflate

WINDOW_BITS = 12


def _pair(min_size: int) -> tuple[ThresholdDeflate, PerMessageDeflate]:
    """The server's encoder and a stock client's decoder, with context takeover."""
    server = ThresholdDeflate(False, False, WINDOW_BITS, WINDOW_BITS, {"memLevel": 5},
                              min_size=min_size)  # fmt: skip
    client = PerMessageDeflate(False, False, WINDOW_BITS, WINDOW_BITS)
    return server, client


def test_small_messages_are_sent_as_they_are_and_large_ones_compressed() -> None:
    server, client = _pair(min_size=1024)
    assert not hasattr(server, "encoder")  # nothing allocated until it is needed
    small = json.dumps({"type": "pong", "data": {"timestamp": 1}}).encode()
    sent = server.encode(Frame(Opcode.TEXT, small))
    assert (sent.rsv1, sent.data) == (False, small)
    assert not hasattr(server, "encoder")
    large = json.dumps({"type": "workflow_log", "data": {"message": "build ok " * 200}}).encode()
    sent = server.encode(Frame(Opcode.TEXT, large))
    assert sent.rsv1
    assert len(sent.data) < len(large) / 10
    assert client.decode(sent).data == large


@given(st.lists(st.binary(max_size=3000), max_size=30), st.sampled_from([0, 64, 1024]))
def test_a_stock_client_decodes_any_mix(messages: list[bytes], min_size: int) -> None:
    server, client = _pair(min_size)
    for message in messages:
        sent = server.encode(Frame(Opcode.TEXT, message))
        assert sent.rsv1 == (len(message) >= min_size)
        assert client.decode(sent).data == message
