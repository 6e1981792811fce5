"""Who gets health_status and performance_metrics, when: intervals, changes, the cap."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from adwd.actors.monitor import Report
from adwd.events.wire import HealthStatusData
from adwd.transport import monitoring
from adwd.transport.monitoring import Followers, interval_params


class _Router:
    """The two ways the router sends, recorded (the real one filters on monitor:read)."""

    def __init__(self, unmonitored: frozenset[str] = frozenset()) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.unmonitored = unmonitored

    def send_each(self, frames: Sequence[tuple[str, bytes]]) -> None:
        self.sent.extend(frames)

    def send_monitor(self, frames: Sequence[tuple[str, bytes]]) -> None:
        self.sent.extend((cid, f) for cid, f in frames if cid not in self.unmonitored)


def _report(changed: bool = False) -> Report:
    health = HealthStatusData(
        status="healthy", load=0, memory_usage=0, active_connections=0, uptime=0
    )
    return Report(
        health=health, health_frame=b"H", performance_frame=b"P", firing=[], changed=changed
    )


def _followers(clock: list[float], **defaults: float) -> tuple[Followers, _Router]:
    router = _Router()
    options: dict[str, Any] = {"health_s": 30.0, "performance_s": 0.0, "quality_s": 0.0}
    options.update(defaults)
    followers = Followers(
        router,  # type: ignore[arg-type]
        ping_timeout_s=20,
        max_outbound_bytes=1 << 20,
        clock=lambda: clock[0],
        **options,
    )
    return followers, router


def _ws() -> Any:
    return SimpleNamespace(remote_address=("127.0.0.1", 5000))


def test_each_connection_at_its_own_interval_and_everyone_on_a_change() -> None:
    clock = [100.0]
    followers, router = _followers(clock)
    followers.add("default", _ws(), (None, None, None))
    followers.add("fast", _ws(), (5.0, 10.0, None))
    followers.add("quiet", _ws(), (0.0, None, None))
    followers.update(_report())  # the first report after connecting: health to both
    assert router.sent == [("default", b"H"), ("fast", b"H"), ("fast", b"P")]
    router.sent.clear()
    clock[0] = 105.0
    followers.update(_report())
    assert router.sent == [("fast", b"H")]
    router.sent.clear()
    clock[0] = 106.0
    followers.update(_report(changed=True))  # the status changed: every health follower
    assert router.sent == [("default", b"H"), ("fast", b"H")]
    router.sent.clear()
    followers.choose("quiet", (1.0, None, None))
    followers.remove("fast")
    clock[0] = 107.0
    followers.update(_report())
    assert router.sent == [("quiet", b"H")]


def test_a_report_sends_at_most_its_cap_and_the_next_goes_on_from_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(monitoring, "MAX_PER_REPORT", 3)
    clock = [0.0]
    followers, router = _followers(clock)
    for i in range(7):
        followers.add(f"c{i}", _ws(), (None, None, None))
    for _ in range(3):
        followers.update(_report())
    assert [cid for cid, _ in router.sent] == [f"c{i}" for i in range(7)]


def test_intervals_from_the_url() -> None:
    assert interval_params("/ws/trigger?health=0&performance=2.5&quality=x") == (0.0, 2.5, None)
    assert interval_params("/ws?health=-1&performance=nan&quality=1e9") == (None, None, None)
    assert interval_params("/ws") == (None, None, None)


def test_news_of_the_service_only_to_connections_with_monitor_read() -> None:
    clock = [100.0]
    followers, router = _followers(clock)
    router.unmonitored = frozenset({"anonymous"})  # not authenticated, or no monitor:read
    followers.add("monitor", _ws(), (None, 10.0, None))
    followers.add("anonymous", _ws(), (None, 10.0, None))
    followers.update(_report())
    assert sorted(router.sent) == [("monitor", b"H"), ("monitor", b"P")]
