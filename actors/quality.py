"""A connection's quality from what its socket did: a pure assessment.

Inputs are measured on the loop (transport/monitoring.py): the round trip of
the keepalive pings the server sends anyway, how long the current ping has
waited for its pong, the bytes the connection moved, how much waits unsent
for it, and how often the same client address reconnected lately. The
result is the ``connection_quality`` message's data, with suggestions when
a rule has one.
"""

from __future__ import annotations

from msgspec import Struct

HIGH_LATENCY_S = 0.2  # a round trip above this on a board's local network is worth a word
LARGE_MESSAGE = 1024  # bytes: compression pays for messages this big (performance.md)
NEAR_FULL = 0.5  # of max_outbound_bytes unsent: the client reads too slowly
RECONNECT_PENALTY = 0.05  # of reliability per reconnect of the same address in the window
MANY_RECONNECTS = 3


class Measured(Struct, frozen=True, kw_only=True):
    """What the loop measured for one connection since the previous assessment."""

    latency_s: float  # the last keepalive ping's round trip (0: none answered yet)
    overdue_s: float  # how long the oldest unanswered ping has waited (0: none)
    ping_timeout_s: float  # after this without a pong the connection is closed (1011)
    bytes_moved: int  # in and out since the previous assessment
    seconds: float  # since the previous assessment
    messages_out: int  # messages sent in that time
    unsent_bytes: int  # waiting in the transport and the backlog
    max_outbound_bytes: int
    compressed: bool  # permessage-deflate negotiated
    reconnects: int  # earlier connections of the same address in the recent window


class Quality(Struct, frozen=True, kw_only=True):
    """The assessment: ``connection_quality``'s fields (latency in milliseconds)."""

    latency: float
    bandwidth: float  # bytes per second the connection moved (used, not capacity)
    reliability_score: float  # 0..1
    suggestions: list[str]


def assess(m: Measured) -> Quality:
    """Latency, bandwidth, reliability and suggestions from one measurement."""
    # A pong overdue is a latency of at least that long; reliability falls with it,
    # to 0 at the timeout, when the connection is dropped.
    latency_s = max(m.latency_s, m.overdue_s)
    timeout = m.ping_timeout_s if m.ping_timeout_s > 0 else float("inf")
    reliability = 1.0 - min(1.0, m.overdue_s / timeout)
    reliability *= max(0.0, 1.0 - RECONNECT_PENALTY * m.reconnects)
    suggestions: list[str] = []
    if m.overdue_s > 0 and m.overdue_s >= timeout / 2:
        suggestions.append(
            f"Answer WebSocket pings: no pong for {m.overdue_s:.1f} s, and the connection "
            f"is closed (1011) after {m.ping_timeout_s:g} s without one."
        )
    average = m.bytes_moved / m.messages_out if m.messages_out else 0
    if latency_s > HIGH_LATENCY_S and average >= LARGE_MESSAGE and not m.compressed:
        suggestions.append(
            "High latency and large messages: offer permessage-deflate "
            "(Sec-WebSocket-Extensions) to send fewer bytes."
        )
    if m.max_outbound_bytes and m.unsent_bytes >= NEAR_FULL * m.max_outbound_bytes:
        suggestions.append(
            f"{m.unsent_bytes} bytes wait unsent for this client (closed with 1013 at "
            f"{m.max_outbound_bytes}): read faster, or follow fewer runs (subscribe adw_ids)."
        )
    if m.reconnects >= MANY_RECONNECTS:
        suggestions.append(
            f"This address reconnected {m.reconnects} times lately: check the network, "
            "and resume with since= so that reconnects replay only what was missed."
        )
    return Quality(
        latency=round(latency_s * 1000, 3),
        bandwidth=round(m.bytes_moved / m.seconds, 1) if m.seconds > 0 else 0.0,
        reliability_score=round(reliability, 3),
        suggestions=suggestions,
    )
