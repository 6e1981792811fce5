"""A token bucket: at most ``rate`` per second on average, bursts up to ``burst``.

Pure: the caller passes the time, so tests need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """Admit or refuse one unit at a time."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def allow(self, now: float) -> bool:
        """Take a token if there is one."""
        if self.tokens < 0:  # first use: full
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now). Takes nothing."""
        if self.tokens < 0:
            return 0.0
        tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
