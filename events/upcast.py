"""Upcasters: functions that lift a stored payload from one version to the next.

Keyed by ``(type, version)``; each takes the payload dict of that version and
returns the payload of ``version + 1``. Applied step by step on read, so an
event written by any release decodes with today's Structs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function lifting ``event_type`` from ``version`` to ``version + 1``."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, version)] = fn
        return fn

    return register


def upcast(event_type: str, version: int, target: int, payload: Payload) -> Payload:
    """Lift a payload from ``version`` to ``target``, one registered step at a time."""
    while version < target:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise LookupError(f"no upcaster for {event_type} v{version} -> v{version + 1}")
        payload = step(payload)
        version += 1
    return payload
