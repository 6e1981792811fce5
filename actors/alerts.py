"""Alert rules with hysteresis, as a pure state machine (no clock, no I/O).

The manner of Prometheus' alerting rules: a rule's condition must hold for
``for_s`` before the alert fires (inactive -> pending -> firing); once
firing it stays firing until the condition has been clear for
``keep_firing_for_s``; and the thresholds that raise and clear it differ
(``raise_at`` and ``clear_at``), so a value hovering around one threshold
does not make an alert flap. Each fire and each resolve is reported once,
as a :class:`Fired` or :class:`Resolved` transition, never once per sample.

Time is whatever the caller passes as ``now`` (the MonitorActor passes
``time.monotonic()``; tests pass their own clock).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Annotated, Literal

from msgspec import Meta, Struct

AlertLevel = Literal["warning", "error", "critical"]
HealthImpact = Literal["degraded", "unhealthy"]


class AlertRule(Struct, frozen=True, kw_only=True):
    """One rule: which sampled value, the thresholds, the timings, what to tell people.

    ``above`` true: the condition is ``value >= raise_at`` and, once firing, it
    still holds until the value drops below ``clear_at`` (``clear_at <= raise_at``).
    ``above`` false (for values that are bad when low, such as free disk):
    ``value <= raise_at``, holding until the value rises above ``clear_at``.
    ``clear_at`` None: the same as ``raise_at``. A value of None (not
    measured) never meets the condition.
    """

    name: str
    component: str
    raise_at: float
    clear_at: float | None = None
    above: bool = True
    for_s: Annotated[float, Meta(ge=0)] = 0.0
    keep_firing_for_s: Annotated[float, Meta(ge=0)] = 0.0
    level: AlertLevel = "warning"
    health: HealthImpact = "degraded"
    message: str = ""
    actions_required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        clear = self.clear_level
        if (self.above and clear > self.raise_at) or (not self.above and clear < self.raise_at):
            side = "at or below" if self.above else "at or above"
            raise ValueError(
                f"Alert rule {self.name!r}: clear_at {clear} must be {side} raise_at "
                f"{self.raise_at}, or the alert could never resolve. Fix the thresholds."
            )

    @property
    def clear_level(self) -> float:
        """The threshold that clears a firing alert."""
        return self.raise_at if self.clear_at is None else self.clear_at

    def breaches(self, value: float | None) -> bool:
        """The raising condition: is ``value`` past ``raise_at``?"""
        if value is None:
            return False
        return value >= self.raise_at if self.above else value <= self.raise_at

    def holds(self, value: float | None) -> bool:
        """The condition of a firing alert: is ``value`` still short of ``clear_at``?"""
        if value is None:
            return False
        # Every value that breaches also holds (clear_at is on the safe side of raise_at).
        return value >= self.clear_level if self.above else value <= self.clear_level


class Phase(enum.Enum):
    """Where an alert stands."""

    INACTIVE = "inactive"
    PENDING = "pending"  # the condition holds, not yet for for_s
    FIRING = "firing"


class Fired(Struct, frozen=True, kw_only=True):
    """An alert started firing (the condition held for ``for_s``)."""

    rule: AlertRule
    alert_id: str
    value: float | None
    at: float


class Resolved(Struct, frozen=True, kw_only=True):
    """A firing alert ended (its condition was clear for ``keep_firing_for_s``)."""

    rule: AlertRule
    alert_id: str
    value: float | None
    at: float
    fired_at: float


Transition = Fired | Resolved


class AlertMachine:
    """The state of one rule's alert. Feed it samples in time order with :meth:`observe`."""

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self.phase = Phase.INACTIVE
        self.alert_id = ""  # of the alert firing now
        self._since = 0.0  # pending since, or firing since
        self._clear_since: float | None = None  # firing, condition clear since

    def observe(
        self, now: float, value: float | None, new_id: Callable[[], str]
    ) -> Transition | None:
        """Take a sample; the transition it causes, if any (at most one)."""
        rule = self.rule
        if self.phase is Phase.INACTIVE:
            if not rule.breaches(value):
                return None
            self.phase, self._since = Phase.PENDING, now
        if self.phase is Phase.PENDING:
            if not rule.breaches(value):
                self.phase = Phase.INACTIVE
                return None
            if now - self._since < rule.for_s:
                return None
            self.phase, self._since, self._clear_since = Phase.FIRING, now, None
            self.alert_id = new_id()
            return Fired(rule=rule, alert_id=self.alert_id, value=value, at=now)
        # Firing: only a condition clear for keep_firing_for_s resolves it.
        if rule.holds(value):
            self._clear_since = None
            return None
        if self._clear_since is None:
            self._clear_since = now
        if now - self._clear_since < rule.keep_firing_for_s:
            return None
        resolved = Resolved(
            rule=rule, alert_id=self.alert_id, value=value, at=now, fired_at=self._since
        )
        self.phase, self.alert_id, self._clear_since = Phase.INACTIVE, "", None
        return resolved


class AlertBook:
    """Every rule's machine; one sample of all the values at a time."""

    def __init__(self, rules: Mapping[str, AlertRule], new_id: Callable[[str], str]) -> None:
        self._machines = {name: AlertMachine(rule) for name, rule in rules.items()}
        self._new_id = new_id

    def observe(self, now: float, values: Mapping[str, float | None]) -> list[Transition]:
        """Feed each rule its value (by rule name); the fires and resolves, in rule order."""
        out: list[Transition] = []
        for name, machine in self._machines.items():
            done = machine.observe(now, values.get(name), functools.partial(self._new_id, name))
            if done is not None:
                out.append(done)
        return out

    def firing(self) -> list[AlertRule]:
        """The rules whose alert fires now."""
        return [m.rule for m in self._machines.values() if m.phase is Phase.FIRING]

    def phases(self) -> dict[str, Phase]:
        """Each rule's phase, by name."""
        return {name: m.phase for name, m in self._machines.items()}
