"""Rate and connection limits as pure decisions over token buckets.

The caller passes the time; nothing here reads a clock, sleeps or closes a
socket. :class:`ConnectionLimits` is one connection's (owned by its
ConnectionActor), :class:`PrincipalLimits` is shared by every connection of
a principal (a lock: connection actors run on several threads), and
:class:`AddressLimits` is the handshake's (the loop thread only). Defaults
and their reasons are in docs/security.md.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from adwd.actors.auth import Limits
from adwd.actors.ratelimit import TokenBucket

TRIGGER = "trigger_workflow"
SWEEP_AT = 10_000  # addresses remembered before idle ones are swept


@dataclass(frozen=True, slots=True)
class Refused:
    """Over a limit: which one, and when to try again."""

    limit: str
    retry_after: float


def _take(buckets: list[tuple[str, TokenBucket]], now: float) -> Refused | None:
    """Take one token from each bucket, or none if any is empty (all-or-nothing)."""
    for name, bucket in buckets:
        wait = bucket.wait(now)
        if wait > 0:
            return Refused(name, round(wait, 3))
    for _, bucket in buckets:
        bucket.allow(now)
    return None


@dataclass
class ConnectionLimits:
    """One connection's command buckets, its strikes and its error budget."""

    limits: Limits
    total: TokenBucket = field(init=False)
    triggers: TokenBucket = field(init=False)
    by_type: dict[str, TokenBucket] = field(init=False, default_factory=dict)
    errors: TokenBucket = field(init=False)
    # Refusals: a client may be refused now and then (1/s forgiven), but `strikes`
    # more than that means it ignores retry_after. A counter reset by each admitted
    # command would never catch a client that sends at twice its limit.
    refusals: TokenBucket = field(init=False)
    abusive: bool = False

    def __post_init__(self) -> None:
        lim = self.limits
        self.total = TokenBucket(lim.commands_per_s, lim.commands_burst)
        self.triggers = TokenBucket(lim.triggers_per_minute / 60.0, lim.triggers_per_minute)
        self.by_type = {
            t: TokenBucket(rate, max(1.0, 2 * rate)) for t, rate in lim.per_type_per_s.items()
        }
        self.errors = TokenBucket(1.0, lim.error_budget)
        self.refusals = TokenBucket(1.0, lim.strikes)

    def command(self, message_type: str, now: float) -> Refused | None:
        """Admit a command of ``message_type`` now, or say which limit refused it."""
        buckets = [("commands_per_s", self.total)]
        if message_type in self.by_type:
            buckets.append((f"{message_type}_per_s", self.by_type[message_type]))
        if message_type == TRIGGER:
            buckets.append(("triggers_per_minute", self.triggers))
        refused = _take(buckets, now)
        if refused is not None:
            self.refused(now)
        return refused

    def refused(self, now: float) -> None:
        """Count a refusal; past the strikes, the client is ``abusive`` (disconnect it)."""
        if not self.refusals.allow(now):
            self.abusive = True

    def invalid(self, now: float) -> bool:
        """Count an invalid (or refused) frame; True when the error budget is spent."""
        return not self.errors.allow(now)


class PrincipalLimits:
    """Buckets per principal, across its connections. Thread-safe."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}

    def command(self, user_id: str, message_type: str, now: float) -> Refused | None:
        """Admit one command of this principal now, or say which limit refused it."""
        lim = self._limits
        with self._lock:
            pair = self._buckets.get(user_id)
            if pair is None:
                pair = self._buckets[user_id] = (
                    TokenBucket(lim.principal_commands_per_s, 2 * lim.principal_commands_per_s),
                    TokenBucket(
                        lim.principal_triggers_per_minute / 60.0, lim.principal_triggers_per_minute
                    ),
                )
            buckets = [("principal_commands_per_s", pair[0])]
            if message_type == TRIGGER:
                buckets.append(("principal_triggers_per_minute", pair[1]))
            return _take(buckets, now)


@dataclass
class _Address:
    opens: TokenBucket
    open_now: int = 0
    failures: int = 0
    locked_until: float = 0.0


class AddressLimits:
    """New and concurrent connections per address, failed authentications, a total cap.

    Loop thread only. Entries of addresses with nothing open and no lockout
    are dropped, so the table is bounded by the open connections.
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._addresses: dict[str, _Address] = {}
        self.total = 0

    def _entry(self, address: str) -> _Address:
        entry = self._addresses.get(address)
        if entry is None:
            lim = self._limits
            bucket = TokenBucket(
                lim.connections_per_address_per_s, lim.connections_per_address_burst
            )
            entry = self._addresses[address] = _Address(bucket)
        return entry

    def admit(self, address: str, now: float) -> Refused | None:
        """May ``address`` open a connection now? (If so, it counts as open.)"""
        lim = self._limits
        if len(self._addresses) > SWEEP_AT:
            self._sweep(now)
        if self.total >= lim.max_connections:
            return Refused("max_connections", 5.0)
        entry = self._entry(address)
        if entry.locked_until > now:
            return Refused("auth_failures", round(entry.locked_until - now, 3))
        if entry.open_now >= lim.concurrent_per_address:
            return Refused("concurrent_per_address", 5.0)
        if not entry.opens.allow(now):
            return Refused("connections_per_address_per_s", round(entry.opens.wait(now), 3))
        entry.open_now += 1
        self.total += 1
        return None

    def closed(self, address: str, now: float) -> None:
        """A connection admitted for ``address`` closed."""
        entry = self._addresses.get(address)
        if entry is None:
            return
        entry.open_now = max(0, entry.open_now - 1)
        self.total = max(0, self.total - 1)
        self._forget(address, entry, now)

    def auth_failed(self, address: str, now: float) -> None:
        """A failed authentication from ``address``: past the limit, refuse it a while."""
        entry = self._entry(address)
        entry.failures += 1
        if entry.failures >= self._limits.auth_failures_per_address:
            entry.locked_until = now + self._limits.auth_lockout_s
            entry.failures = 0

    def locked(self, address: str, now: float) -> float:
        """Seconds ``address`` is still locked out for failed authentications (0: not)."""
        entry = self._addresses.get(address)
        return round(entry.locked_until - now, 3) if entry and entry.locked_until > now else 0.0

    def auth_succeeded(self, address: str) -> None:
        """A success from ``address`` clears its count of failures."""
        entry = self._addresses.get(address)
        if entry is not None:
            entry.failures = 0

    def _forget(self, address: str, entry: _Address, now: float) -> None:
        """Drop an address with nothing open, no lockout and a full bucket again
        (dropping it earlier would hand a fast reconnector a fresh burst)."""
        bucket = entry.opens
        full = min(bucket.burst, bucket.tokens + (now - bucket.at) * bucket.rate) >= bucket.burst
        if entry.open_now == 0 and entry.locked_until <= now and entry.failures == 0 and full:
            del self._addresses[address]

    def _sweep(self, now: float) -> None:
        """Forget every address with nothing open and no lockout (a scan of many
        addresses must not grow the table without bound)."""
        for address, entry in list(self._addresses.items()):
            if entry.open_now == 0 and entry.locked_until <= now:
                del self._addresses[address]
