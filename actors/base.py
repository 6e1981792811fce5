"""The base of every adwd actor: a pykka ThreadingActor with a lighter inbox.

pykka's ThreadingActor queues messages in a ``queue.Queue`` (a lock and two
conditions per ``put`` and ``get``). ``queue.SimpleQueue`` is implemented in
C and does the same job for one consumer, which is all an actor has: with
one event per ``Append`` the EventLogActor spent ~60% of its time in
``queue.Queue`` (docs/performance.md). pykka makes the inbox a hook for
actor types (``_create_actor_inbox``); nothing else changes.
"""

from __future__ import annotations

import queue
from typing import Any

import pykka


class Actor(pykka.ThreadingActor):
    """A ThreadingActor whose inbox is a ``queue.SimpleQueue``."""

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:  # type: ignore[override]
        return queue.SimpleQueue()
