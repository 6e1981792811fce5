"""What was decided for each request_id: a deterministic fold of the log.

A client that re-sends a command with a request_id after a reconnect, or
after the service restarted, is answered with the first decision and nothing
runs twice. The scheduler's RequestMemory is rebuilt from this fold at start;
before it, a re-run of the same ``(adw_id, workflow_type)`` replaced the run
view that held the earlier request_id, and a rejection was not kept at all,
so after a restart such a request ran again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adwd.events.domain import RunQueued, TriggerDeduplicated, TriggerRejected
from adwd.events.store import StoredEvent

KEEP = 10_000  # the request_ids remembered (the newest): a client re-sends within a reconnect
Decision = RunQueued | TriggerDeduplicated | TriggerRejected


@dataclass
class RequestsProjection:
    """The first decision for each of the newest ``KEEP`` request_ids."""

    decisions: OrderedDict[str, tuple[int, Decision]] = field(default_factory=OrderedDict)
    dirty: set[str] = field(default_factory=set, compare=False, repr=False)

    def handlers(self) -> dict[type, Callable[[StoredEvent, Any], None]]:
        """The events this projection folds, and how."""
        return {RunQueued: self._decided, TriggerDeduplicated: self._decided,
                TriggerRejected: self._decided}  # fmt: skip

    def _decided(self, stored: StoredEvent, e: Decision) -> None:
        rid = e.request_id
        if rid is None or rid in self.decisions:
            return  # a repeat's answer is not a new decision
        self.decisions[rid] = (stored.seq, e)
        self.dirty.add(rid)
        while len(self.decisions) > KEEP:
            old, _ = self.decisions.popitem(last=False)
            self.dirty.discard(old)

    def in_order(self) -> list[Decision]:
        """The remembered decisions, oldest first (for RequestMemory)."""
        return [decision for _seq, decision in self.decisions.values()]
