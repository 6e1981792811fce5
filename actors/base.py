"""The base of every adwd actor: a pykka ThreadingActor with a lighter inbox,
a supervisor, and a test-only way to make it fail.

pykka's ThreadingActor queues messages in a ``queue.Queue`` (a lock and two
conditions per ``put`` and ``get``). ``queue.SimpleQueue`` is implemented in
C and does the same job for one consumer, which is all an actor has: with
one event per ``Append`` the EventLogActor spent ~60% of its time in
``queue.Queue`` (docs/performance.md). pykka makes the inbox a hook for
actor types (``_create_actor_inbox``); nothing else changes.

Supervision: an actor started with ``supervisor=`` reports a failure (an
exception out of a handler, after pykka has logged it and stopped the
actor) to that callback, which applies the policy of docs/architecture.md.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pykka

from adwd.events.errors import AdwdError

Supervisor = Callable[["Actor", BaseException], None]


# Test-only (fault_injection): a run triggered with this trigger_reason kills
# the whole service with SIGKILL right after its child is spawned, before
# run_started is committed: the crash that the gated start makes harmless.
CRASH_AFTER_SPAWN = "adwd-fault:crash-after-spawn"


class InjectedFault(AdwdError):
    """Raised on purpose by a ``Fault`` message, to test supervision."""


class Actor(pykka.ThreadingActor):
    """A ThreadingActor whose inbox is a ``queue.SimpleQueue``, with a supervisor."""

    KIND = "actor"  # what actor_failed events and logs call this kind of actor
    _supervisor: Supervisor | None = None

    @classmethod
    def start(cls, *args: Any, supervisor: Supervisor | None = None, **kwargs: Any) -> Any:
        """Start the actor (as pykka does), reporting failures to ``supervisor``."""
        obj = cls(*args, **kwargs)
        obj._supervisor = supervisor  # before its loop runs: no other thread sees it yet
        pykka.ActorRegistry.register(obj.actor_ref)
        obj._start_actor_loop()
        return obj.actor_ref

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        return queue.SimpleQueue()

    def inject_fault(self) -> None:
        """Raise ``InjectedFault`` (tests only, through ``proxy().inject_fault.defer()``:
        a deferred call has no reply, so the exception fails the actor). A
        method, not a message type, so no handler pays for checking it."""
        raise InjectedFault(f"fault injected into the {self.KIND} actor")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Report the failure to the supervisor (pykka already logged the traceback)."""
        if self._supervisor is not None and exception_value is not None:
            self._supervisor(self, exception_value)
