"""permessage-deflate that compresses only messages worth compressing.

RFC 7692 lets an endpoint send any message uncompressed once the extension
is negotiated (the RSV1 bit says which are compressed). Most of adwd's
messages are a few hundred bytes of JSON going to a board on the same
machine: compressing each, per connection, cost ~35% of the event loop in
the fan-out benchmark and saved nothing that matters. Messages of at least
``min_size`` bytes (a large snapshot, a long log line) are still
compressed, and a connection's compressor (~32 KiB) is only allocated when
its first such message is sent, so idle boards do not pay for it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.typing import ExtensionParameter

DEFAULT_MIN_SIZE = 1024


class ThresholdDeflate(PerMessageDeflate):
    """Compress whole messages of at least ``min_size`` bytes; send the others as they are."""

    def __init__(self, *args: Any, min_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_size = min_size
        if not self.local_no_context_takeover:
            del self.encoder  # allocated by the first message compressed

    def encode(self, frame: Frame) -> Frame:
        """Leave control frames and small whole messages uncompressed."""
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            # Ping, pong, close: never compressed, and must not allocate the
            # compressor (~32 KiB): every keepalive ping and every close did.
            return frame
        whole = frame.opcode in (Opcode.TEXT, Opcode.BINARY) and frame.fin
        if whole and len(frame.data) < self.min_size:
            return frame
        if not self.local_no_context_takeover and not hasattr(self, "encoder"):
            self.encoder = zlib.compressobj(
                wbits=-self.local_max_window_bits, **self.compress_settings
            )
        return super().encode(frame)


class ThresholdDeflateFactory(ServerPerMessageDeflateFactory):
    """Negotiates permessage-deflate as websockets' default does, with a size threshold."""

    def __init__(self, min_size: int = DEFAULT_MIN_SIZE) -> None:
        # The window and memory settings websockets enables by default.
        super().__init__(
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5},
        )
        self.min_size = min_size

    def process_request_params(
        self,
        params: Sequence[ExtensionParameter],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        """Agree on the parameters as the stock factory does; use the threshold encoder."""
        response, stock = super().process_request_params(params, accepted_extensions)
        return response, ThresholdDeflate(
            stock.remote_no_context_takeover,
            stock.local_no_context_takeover,
            stock.remote_max_window_bits,
            stock.local_max_window_bits,
            stock.compress_settings,
            min_size=self.min_size,
        )


def server_extensions(compression: str, min_size: int) -> list[ServerPerMessageDeflateFactory]:
    """The ``extensions`` for ``serve()`` (pass ``compression=None`` with them)."""
    return [] if compression == "off" else [ThresholdDeflateFactory(min_size)]
