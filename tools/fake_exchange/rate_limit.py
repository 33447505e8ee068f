"""Binance's request-weight limits for the fake exchange: the per-minute weight budget with its
429 and 418 (IP ban) escalation, and the new-order counts. Durations come from an injected
monotonic function.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Admission:
    status: int  # 200 (go on), 429 or 418
    retry_after_s: int = 0


@dataclass(slots=True)
class RateLimiter:
    """Binance's REQUEST_WEIGHT per rolling minute, with its escalation.

    Over the limit: 429 until enough weight has aged out (Retry-After says when). A request that
    arrives while a 429's Retry-After has not passed is refused too, and once `grace_s` has gone
    by since the first 429 it counts as a violation (requests already in flight when the 429 was
    sent are not the client's fault); `ban_after` violations in a row earn an IP ban: 418 to
    everything for `ban_s` seconds. Rejected requests add no weight, so a client that honours
    Retry-After recovers.
    """

    weight_limit: int = 1200
    ban_after: int = 5
    ban_s: float = 120.0
    order_limit_10s: int = 100
    monotonic: Callable[[], float] = time.monotonic
    window_s: float = 60.0
    grace_s: float = 1.0
    _weights: deque[tuple[float, int]] = field(default_factory=deque)
    _used: int = 0
    _limited_until: float = 0.0
    _limited_since: float = 0.0
    _violations: int = 0
    _banned_until: float = 0.0
    _orders_10s: deque[float] = field(default_factory=deque)
    _orders_1d: deque[float] = field(default_factory=deque)

    def used(self) -> int:
        self._expire(self.monotonic())
        return self._used

    def banned_for_s(self) -> float:
        return max(0.0, self._banned_until - self.monotonic())

    def admit(self, weight: int) -> Admission:
        now = self.monotonic()
        self._expire(now)
        if now < self._banned_until:
            return Admission(418, _ceil(self._banned_until - now))
        if now < self._limited_until:
            if now - self._limited_since >= self.grace_s:
                self._violations += 1
                if self._violations >= self.ban_after:
                    self.ban(self.ban_s)
                    return Admission(418, _ceil(self.ban_s))
            return Admission(429, _ceil(self._limited_until - now))
        self._violations = 0
        if self._used + weight > self.weight_limit:
            self._limited_since = now
            self._limited_until = self._room_at(weight, now)
            return Admission(429, _ceil(self._limited_until - now))
        self._weights.append((now, weight))
        self._used += weight
        return Admission(200)

    def limit_for(self, seconds: float) -> None:
        """An injected 429: later requests before Retry-After has passed are violations."""
        now = self.monotonic()
        if now >= self._limited_until:
            self._limited_since = now
        self._limited_until = max(self._limited_until, now + seconds)

    def ban(self, seconds: float) -> None:
        self._banned_until = self.monotonic() + seconds
        self._violations = 0

    def note_order(self) -> tuple[int, int, bool]:
        """Count a new-order request: (count in 10 s, count in 1 day, over the 10 s limit)."""
        now = self.monotonic()
        for q, span in ((self._orders_10s, 10.0), (self._orders_1d, 86_400.0)):
            while q and q[0] <= now - span:
                q.popleft()
            q.append(now)
        n10 = len(self._orders_10s)
        return n10, len(self._orders_1d), n10 > self.order_limit_10s

    def reset(self) -> None:
        self._weights.clear()
        self._used = 0
        self._limited_until = self._limited_since = self._banned_until = 0.0
        self._violations = 0
        self._orders_10s.clear()
        self._orders_1d.clear()

    def _expire(self, now: float) -> None:
        while self._weights and self._weights[0][0] <= now - self.window_s:
            self._used -= self._weights.popleft()[1]

    def _room_at(self, weight: int, now: float) -> float:
        """When enough weight will have aged out for `weight` more to fit."""
        need = self._used + weight - self.weight_limit
        for ts, w in self._weights:
            need -= w
            if need <= 0:
                return ts + self.window_s
        return now + self.window_s  # a single request heavier than the limit


def _ceil(seconds: float) -> int:
    return max(1, int(-(-seconds // 1)))
