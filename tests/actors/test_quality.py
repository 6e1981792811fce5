"""A connection's quality: reliability falls as a pong is overdue; suggestions by rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adwd.actors.quality import Measured, assess


def _measured(**changes: object) -> Measured:
    fields: dict[str, object] = {
        "latency_s": 0.01,
        "overdue_s": 0.0,
        "ping_timeout_s": 20.0,
        "bytes_moved": 10_000,
        "seconds": 10.0,
        "messages_out": 50,
        "unsent_bytes": 0,
        "max_outbound_bytes": 4 << 20,
        "compressed": False,
        "reconnects": 0,
    }
    fields.update(changes)
    return Measured(**fields)  # type: ignore[arg-type]


def test_a_healthy_connection() -> None:
    q = assess(_measured())
    assert (q.latency, q.bandwidth, q.reliability_score, q.suggestions) == (10.0, 1000.0, 1.0, [])


@given(st.floats(0, 40), st.floats(0, 40), st.integers(0, 30))
def test_reliability_stays_in_range_and_falls_as_the_pong_is_overdue(
    a: float, b: float, reconnects: int
) -> None:
    low, high = sorted((a, b))
    early = assess(_measured(overdue_s=low, reconnects=reconnects))
    late = assess(_measured(overdue_s=high, reconnects=reconnects))
    assert 0.0 <= late.reliability_score <= early.reliability_score <= 1.0
    assert late.latency >= high * 1000 - 1e-3  # ms, to 3 decimals
    if high >= 20.0:
        assert late.reliability_score == 0.0  # at the timeout: about to be dropped


def test_suggestions_name_what_would_help() -> None:
    slow_big = assess(_measured(latency_s=0.5, bytes_moved=500_000, messages_out=100))
    assert any("permessage-deflate" in s for s in slow_big.suggestions)
    compressed = assess(
        _measured(latency_s=0.5, bytes_moved=500_000, messages_out=100, compressed=True)
    )
    assert compressed.suggestions == []
    behind = assess(_measured(unsent_bytes=3 << 20))
    assert any("read faster" in s for s in behind.suggestions)
    flapping = assess(_measured(reconnects=4))
    assert any("reconnected 4 times" in s for s in flapping.suggestions)
    assert flapping.reliability_score == 0.8
