"""The monitor's fold: queue, running runs, recent failures."""

from __future__ import annotations

from adwd.events.domain import (
    AlertFired,
    AlertResolved,
    DomainEvent,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    event_type,
)
from adwd.events.store import StoredEvent
from adwd.projections.health import Finished, RunHealth, resolve_at_start, unresolved


def _stored(seq: int, event: DomainEvent, ts: float) -> StoredEvent:
    return StoredEvent(seq, ts, "s", event_type(event), 1, "system", "", event)


def test_queue_age_running_and_failure_rate() -> None:
    runs = RunHealth(window=5)
    seq = 0

    def apply(event: DomainEvent, ts: float) -> object:
        nonlocal seq
        seq += 1
        return runs.apply(_stored(seq, event, ts))

    apply(RunQueued(adw_id="a", workflow_type="t", logs_path=""), 100.0)
    apply(RunQueued(adw_id="b", workflow_type="t", logs_path=""), 105.0)
    assert runs.queue_age(110.0) == 10.0
    assert apply(RunStarted(adw_id="a", workflow_type="t", pid=1, argv=[], cwd=""), 111) == (
        "started",
        "t",
    )
    assert runs.queue_age(110.0) == 5.0
    assert runs.running == {("a", "t")}
    assert runs.failure_rate() is None  # too few ended runs to say
    done = apply(RunCompleted(adw_id="a", workflow_type="t", duration_s=2.0), 113)
    assert done == Finished("t", "completed", 2.0)
    cancelled = apply(RunFailed(adw_id="b", workflow_type="t", reason="x", cancelled=True), 114)
    assert cancelled == Finished("t", "cancelled", None)
    assert runs.queued == {}
    for i in range(5):
        apply(RunFailed(adw_id=f"f{i}", workflow_type="t", reason="exit 1"), 120 + i)
    assert runs.failure_rate() == 1.0  # the window holds the last 5; the cancel never counted


def test_alerts_left_firing_are_found_and_resolved_at_start() -> None:
    def fired(alert_id: str) -> AlertFired:
        return AlertFired(
            alert_id=alert_id, rule="r", component="c", level="warning", health="degraded",
            message="m", value=1.0, threshold=1.0,
        )  # fmt: skip

    resolved = AlertResolved(alert_id="a", rule="r", component="c", message="m", value=0.0,
                             threshold=1.0)  # fmt: skip
    log = [_stored(1, fired("a"), 1.0), _stored(2, fired("b"), 2.0), _stored(3, resolved, 3.0)]
    left = unresolved(log)
    assert [f.alert_id for f in left] == ["b"]
    assert resolve_at_start(left[0]).alert_id == "b"
