"""All the pure cores together as one state machine (issue 10): admission and
request memory, each run's RunLifecycle, the projections, the wire view and
each connection's Delivery, driven through triggers, re-sent triggers,
cancels, progress, exits, crashes with a restart, and clients that connect,
resume from a seq and leave. No threads, no sockets: the actors are thin
adapters over exactly these calls.

Invariants: every accepted run ends at most once, and exactly once when the
scheduler no longer holds it; a request_id is never executed twice; the live
projections equal a rebuild from the log; a resumed client gets every later
broadcast exactly once and in order.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import astuple
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from adwd.actors.admission import (
    RequestMemory,
    SchedulerState,
    decide_cancel,
    decide_trigger,
    repeat_answer,
    runs_to_start,
)
from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.delivery import Delivery
from adwd.actors.lifecycle import Ended, RunLifecycle
from adwd.actors.resume import replay_frames
from adwd.actors.wireview import wire_messages
from adwd.events.domain import (
    DomainEvent,
    RunCompleted,
    RunFailed,
    RunQueued,
    event_type,
)
from adwd.events.store import StoredEvent
from adwd.events.wire import TriggerWorkflowData
from adwd.projections.bundle import Projections
from adwd.service.recovery import interrupted_report

CATALOGUE = {
    "adw_plan_iso": WorkflowSpec(stages=("plan",)),
    "adw_sleep": WorkflowSpec(max_concurrent=1),
}
ADW_IDS = ("a1", "a2", "a3", None)
RIDS = ("r1", "r2", "r3", None)


SLOW_LIMIT = 600  # bytes a stalled client may have held before it is dropped (1013)


class Client:
    """One connection: its Delivery and the frames it received."""

    def __init__(self, since: int) -> None:
        self.delivery = Delivery()
        self.since = since
        self.received: list[bytes] = []
        self.stalled_upto: int | None = None  # a catch-up under way that covers this seq

    def last_seq(self) -> int:
        """The seq a client resumes from: that of the last frame it received."""
        return json.loads(self.received[-1])["seq"] if self.received else self.since


class System(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[StoredEvent] = []
        self.live = Projections()
        self.clients: dict[int, Client] = {}
        self.dropped: list[Client] = []  # too slow: closed with 1013, to resume later
        self.next_client = 0
        self.ids = 0
        self._boot()

    def _boot(self) -> None:
        """A (re)start: the scheduler's state from the projections, as the service does."""
        self.state = SchedulerState()
        self.requests = RequestMemory(100)
        for decision in self.live.requests.in_order():  # as service/app.py does
            self.requests.remember(decision.request_id, decision)
        for view in self.live.runs.waiting():
            self.state.enqueue(view.request)
        self.runs: dict[tuple[str, str], RunLifecycle] = {}
        self.now = 1000.0 * (len(self.log) + 1)
        self._start_runs()

    # -- the adapters' work, without threads ----------------------------------

    def _commit(self, events: list[DomainEvent]) -> None:
        for event in events:
            seq = len(self.log) + 1
            stored = StoredEvent(seq, self.now, "s", event_type(event), 1, "p", "", event)
            self.log.append(stored)
            self.live.apply(stored)
            for target, adw_id, frame in wire_messages(stored):
                for cid, client in list(self.clients.items()):
                    wanted = target is None and client.delivery.wants(adw_id)
                    if not wanted:
                        continue
                    if client.delivery.offer(seq, frame, adw_id, addressed=False):
                        client.received.append(frame)
                    elif client.delivery.over(0, SLOW_LIMIT):  # as the router does
                        client.delivery.drop()
                        self.dropped.append(self.clients.pop(cid))

    def _apply(self, key: tuple[str, str], outputs: list[Any]) -> None:
        self._commit([o for o in outputs if isinstance(o, DomainEvent)])
        if any(isinstance(o, Ended) for o in outputs):
            self.runs.pop(key, None)
            self.state.finish(key)
            self._start_runs()

    def _start_runs(self) -> None:
        for key in runs_to_start(self.state, catalogue=CATALOGUE, max_concurrent=2):
            self.state.start(key)
            run = RunLifecycle(adw_id=key[0], workflow_type=key[1], stages=("plan",))
            self.runs[key] = run
            self.now += 1
            self._apply(key, run.spawned(pid=1, argv=["x"], cwd="/", proc_start=1, now=self.now))

    def _new_id(self) -> str:
        self.ids += 1
        return f"g{self.ids}"

    # -- what can happen ------------------------------------------------------

    @rule(
        kind=st.sampled_from(sorted(CATALOGUE)),
        adw_id=st.sampled_from(ADW_IDS),
        rid=st.sampled_from(RIDS),
    )
    def trigger(self, kind: str, adw_id: str | None, rid: str | None) -> None:
        earlier = self.requests.earlier(rid)
        if earlier is not None and rid is not None:
            self._commit([repeat_answer(earlier, connection_id="c", request_id=rid)])
            return
        data = TriggerWorkflowData(workflow_type=kind, adw_id=adw_id)
        decision = decide_trigger(
            self.state, data, catalogue=CATALOGUE, data_dir=__import__("pathlib").Path("/d"),
            max_queue=4, connection_id="c", new_adw_id=self._new_id(), request_id=rid,
        )  # fmt: skip
        self.requests.remember(rid, decision)
        self._commit([decision])
        if isinstance(decision, RunQueued):
            self.state.enqueue(decision)
            self._start_runs()

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), percent=st.integers(0, 100))
    def progress(self, data: st.DataObject, percent: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.runs)))
        self._apply(key, self.runs[key].progress(percent, "Stage: plan", "m", self.now))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), code=st.sampled_from([0, 0, 1, -9]))
    def exit(self, data: st.DataObject, code: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.runs)))
        self.now += 5
        self._apply(key, self.runs[key].exited(code, None, self.now))

    @rule(adw_id=st.sampled_from(ADW_IDS[:-1]))
    def cancel(self, adw_id: str) -> None:
        decision = decide_cancel(self.state, adw_id)
        for key in decision.running:
            self._apply(key, self.runs[key].stop_requested("cancelled: x", cancelled=True))
        for key in decision.waiting:
            self.state.finish(key)
            self._commit(
                [RunFailed(adw_id=key[0], workflow_type=key[1], reason="c", cancelled=True)]
            )

    @rule()
    def crash_and_restart(self) -> None:
        """The process dies: in-flight runs are recorded as interrupted at the next
        start (recover_in_flight), every client is gone, the scheduler is rebuilt."""
        self.clients.clear()
        for view in self.live.runs.in_flight():
            adw_id, kind = view.key
            self._commit(
                [RunFailed(adw_id=adw_id, workflow_type=kind, reason="interrupted"),
                 interrupted_report(view)]
            )  # fmt: skip
        self._boot()

    @rule(since=st.integers(0, 40))
    def connect(self, since: int) -> None:
        """A client resumes after ``since``: its catch-up replays the log, then live."""
        since = min(since, len(self.log))
        client = Client(since)
        self.clients[self.next_client] = client
        self.next_client += 1
        head = len(self.log)
        client.received += replay_frames(self.log[since:head], None)
        client.received += client.delivery.resume(head) or []

    @precondition(lambda self: any(c.stalled_upto is None for c in self.clients.values()))
    @rule(data=st.data())
    def stall(self, data: st.DataObject) -> None:
        """A client re-subscribes (from where it is) and its catch-up is slow:
        what is committed meanwhile is held for it, up to its limit."""
        live = sorted(k for k, c in self.clients.items() if c.stalled_upto is None)
        client = self.clients[data.draw(st.sampled_from(live))]
        client.delivery.pause()
        client.stalled_upto = len(self.log)
        client.received += replay_frames(self.log[client.last_seq() : len(self.log)], None)

    @precondition(lambda self: any(c.stalled_upto is not None for c in self.clients.values()))
    @rule(data=st.data())
    def catch_up_ends(self, data: st.DataObject) -> None:
        stalled = sorted(k for k, c in self.clients.items() if c.stalled_upto is not None)
        client = self.clients[data.draw(st.sampled_from(stalled))]
        upto, client.stalled_upto = client.stalled_upto or 0, None
        client.received += client.delivery.resume(upto) or []

    @precondition(lambda self: self.dropped)
    @rule()
    def dropped_client_resumes(self) -> None:
        """A client closed for being slow reconnects from the last seq it got."""
        client = self.dropped.pop(0)
        self.connect(client.last_seq())
        again = self.clients[self.next_client - 1]
        again.since, again.received = client.since, client.received + again.received

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        del self.clients[data.draw(st.sampled_from(sorted(self.clients)))]

    # -- what must always hold --------------------------------------------------

    @invariant()
    def every_accepted_run_ends_once(self) -> None:
        ends: Counter[int] = Counter()
        queued: dict[tuple[str, str], int] = {}
        for stored in self.log:
            e = stored.event
            if isinstance(e, RunQueued):
                queued[(e.adw_id, e.workflow_type)] = stored.seq
            elif isinstance(e, RunCompleted | RunFailed):
                ends[queued[(e.adw_id, e.workflow_type)]] += 1
        assert all(n == 1 for n in ends.values()), ends
        for key, seq in queued.items():
            assert ends[seq] == (0 if key in self.state.active else 1), (key, seq)

    @invariant()
    def a_request_id_is_executed_once(self) -> None:
        runs = Counter(
            s.event.request_id
            for s in self.log
            if isinstance(s.event, RunQueued) and s.event.request_id is not None
        )
        assert all(n == 1 for n in runs.values()), runs

    @invariant()
    def projections_equal_a_rebuild(self) -> None:
        rebuilt = Projections()
        rebuilt.apply_all(self.log)
        assert _state(self.live) == _state(rebuilt)

    @invariant()
    def clients_get_every_later_broadcast_once_in_order(self) -> None:
        for client in self.clients.values():
            if client.stalled_upto is not None:
                continue  # its catch-up has not ended: it has what it has so far
            expected = replay_frames(self.log[client.since :], None)
            assert client.received == expected
        for client in self.dropped:  # what it got before it was dropped: a prefix, in order
            assert (
                client.received
                == replay_frames(self.log[client.since :], None)[: len(client.received)]
            )


def _state(p: Projections) -> Any:
    return (
        p.seq,
        {k: astuple(v) for k, v in sorted(p.runs.runs.items())},
        {k: (m.completed, m.failed, list(m.durations)) for k, m in sorted(p.metrics.types.items())},
        list(p.queue.waiting.items()),
        sorted(p.queue.running.items()),
        p.runs.card_stages(),
        (p.lineage.completed, p.lineage.failures, p.lineage.active, p.lineage.ended),
        list(p.requests.decisions.items()),
    )


System.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_system = System.TestCase
