"""The protocol's promises as a state machine against the real server: real
sockets on 127.0.0.1, real child processes, a real SQLite log.

Rules: trigger a run, trigger again with the same request_id, cancel,
connect, drop a connection, resume one from its last seq. Invariants, at
every step and at the end: a request_id never runs twice; every accepted
run reaches exactly one terminal status; a resumed client receives every
later event it follows exactly once, in order.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from adwd.actors.catalogue import WorkflowSpec
from adwd.service.app import Service
from tests.integration.conftest import Client
from tests.integration.conftest import test_config as make_config

_ids = itertools.count()
TERMINAL = ("completed", "failed")


def _key(message: dict[str, Any]) -> tuple[int, str, str]:
    return (message["seq"], message["type"], message["data"].get("adw_id", ""))


class ProtocolMachine(RuleBasedStateMachine):
    """Commands from a few clients against one live service."""

    clients = Bundle("clients")

    @initialize()
    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)
        self.release = tmp / "release"
        config = make_config(
            tmp / "data",
            max_concurrent=2,
            shutdown_grace_s=1.0,
            workflows={"adw_sleep": WorkflowSpec(env={"ADW_RELEASE_FILE": str(self.release)})},
        )
        self.service = Service(config)
        self.service.start()
        self.url = f"ws://127.0.0.1:{self.service.port}/ws/trigger"
        self.accepted: dict[str, str] = {}  # request_id -> adw_id
        self.open: list[Client] = []

    def teardown(self) -> None:
        try:
            self._check_the_end()
        finally:
            for client in self.open:
                client.close()
            self.service.stop()
            self._tmp.cleanup()

    # -- rules ----------------------------------------------------------------

    @rule(target=clients)
    def connect(self) -> Client:
        client = Client(self.url)
        self.open.append(client)
        return client

    @rule(client=clients, kind=st.sampled_from(["adw_plan_iso", "adw_sleep"]))
    def trigger(self, client: Client, kind: str) -> None:
        if client not in self.open:
            return
        n = next(_ids)
        rid, adw_id = f"req{n}", f"sm{n:06d}"
        reply = self._trigger(client, kind, adw_id, rid)
        assert reply["data"]["status"] == "accepted"
        self.accepted[rid] = adw_id

    @precondition(lambda self: bool(self.accepted))
    @rule(client=clients, data=st.data())
    def trigger_again(self, client: Client, data: st.DataObject) -> None:
        """A re-sent request (the client lost the answer): answered, never run twice."""
        if client not in self.open:
            return
        rid = data.draw(st.sampled_from(sorted(self.accepted)))
        reply = self._trigger(client, "adw_plan_iso", self.accepted[rid], rid)
        assert reply["data"]["adw_id"] == self.accepted[rid]
        assert reply["data"]["outcome"] in ("queued", "deduplicated")

    @precondition(lambda self: bool(self.accepted))
    @rule(client=clients, data=st.data())
    def cancel(self, client: Client, data: st.DataObject) -> None:
        if client not in self.open:
            return
        adw_id = data.draw(st.sampled_from(sorted(self.accepted.values())))
        client.send({"type": "cancel_workflow", "data": {"adw_id": adw_id, "reason": "machine"}})
        reply = client.wait_for(
            lambda m: m["type"] == "cancel_response" and m["data"]["adw_id"] == adw_id
        )
        assert reply["data"]["status"] in ("cancelled", "cancelling", "not_found")

    @rule(client=consumes(clients))
    def drop(self, client: Client) -> None:
        if client in self.open:
            self.open.remove(client)
            client.close()

    @rule(client=consumes(clients), target=clients)
    def resume(self, client: Client) -> Client:
        """Reconnect from the last seq seen: the rest of the stream, once each."""
        if client not in self.open:
            return client
        seen = [m for m in client.seen if "seq" in m and m.get("seq") is not None]
        last = max((m["seq"] for m in seen), default=0)
        epoch = next(
            (m["data"]["epoch"] for m in reversed(client.seen) if m["type"] == "subscribed"), None
        )
        self.open.remove(client)
        client.close()
        query = f"?since={last}" + (f"&epoch={epoch}" if epoch else "")
        again = Client(self.url + query)
        self.open.append(again)
        again.send({"type": "ping"})
        again.wait_for(lambda m: m["type"] == "pong")
        replayed = [_key(m) for m in again.seen if m.get("seq") is not None]
        assert all(seq > last for seq, _, _ in replayed), (last, replayed[:5])
        return again

    # -- invariants -----------------------------------------------------------

    @invariant()
    def every_connection_gets_each_event_once_and_in_order(self) -> None:
        for client in getattr(self, "open", []):
            keys = [_key(m) for m in client.seen if m.get("seq") is not None and "data" in m]
            live = [k for k in keys if k[1] != "subscribed"]
            assert len(live) == len(set(live)), Counter(live).most_common(3)
            seqs = [k[0] for k in live]
            assert seqs == sorted(seqs)

    def _check_the_end(self) -> None:
        self.release.touch()
        watcher = Client(self.url + "?since=0")
        try:
            for adw_id in set(self.accepted.values()):
                watcher.wait_for(
                    lambda m, a=adw_id: (
                        m["type"] == "status_update"
                        and m["data"]["adw_id"] == a
                        and m["data"]["status"] in TERMINAL
                    )
                )
        finally:
            watcher.close()
        events = list(_events(self.service))
        queued = Counter(e.event.request_id for e in events if e.type == "run_queued")  # type: ignore[attr-defined]
        assert all(n == 1 for rid, n in queued.items() if rid in self.accepted), queued
        ends = Counter(
            (e.event.adw_id, e.event.workflow_type)  # type: ignore[attr-defined]
            for e in events
            if e.type in ("run_completed", "run_failed")
        )
        starts = Counter(
            (e.event.adw_id, e.event.workflow_type)  # type: ignore[attr-defined]
            for e in events
            if e.type == "run_queued"
        )
        assert ends == starts, (ends, starts)

    def _trigger(self, client: Client, kind: str, adw_id: str, rid: str) -> dict[str, Any]:
        client.send(
            {
                "type": "trigger_workflow",
                "request_id": rid,
                "data": {"workflow_type": kind, "adw_id": adw_id},
            }
        )
        return client.wait_for(
            lambda m: m["type"] == "trigger_response" and m.get("request_id") == rid
        )


def _events(service: Service) -> list[Any]:
    from adwd.events.store import EventStore

    store = EventStore(Path(service.events_path), readonly=True)
    with contextlib.closing(store):
        return list(store.read())


ProtocolMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_protocol_against_the_real_server = ProtocolMachine.TestCase
