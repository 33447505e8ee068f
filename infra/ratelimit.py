"""Client-side rate limiting: throttle before the exchange does, obey it when it objects.

Each budget is a token bucket: `capacity` units of weight, refilled continuously at
`capacity / per_seconds` per second. A request names the budget key(s) it spends ("weight",
"orders", "GET /api/v3/depth", ...) and its weight. Measured as the share of a budget in use
*after* the request would be counted:

- below 80% (SLOW_AT): go at once;
- from 80% up to 90% (PAUSE_AT): go after a delay that grows linearly from zero at 80% to
  the time the bucket needs to refill the request's weight at 90%; near 90% every request pays
  for itself, so the request rate converges to the refill rate instead of hitting the wall;
- at or above 90%: pause until the request fits back under 80%.

The exchange's own view wins when it is stricter: `observe_headers` takes Binance's
X-MBX-USED-WEIGHT-1M as the truth for the "weight" budget when it is above our count, and
`penalize` records a 429's Retry-After or a 418 ban, during which no request on any key goes
out. Bans back off hard: at least the Retry-After, else `ban_min_s`, doubled for every earlier
ban within `ban_memory_s`.

Time comes only from the injected Clock (and its sleep), so tests run on SimClock.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.clock import Clock

SLOW_AT = 0.8
PAUSE_AT = 0.9

# Binance reports the weight used in the current minute under this header (any letter case).
DEFAULT_HEADER_BUDGETS: Mapping[str, str] = MappingProxyType(
    {"x-mbx-used-weight-1m": "weight", "x-mbx-used-weight": "weight"}
)


@dataclass(frozen=True, slots=True)
class Budget:
    """`capacity` units of weight per `per_seconds` seconds."""

    capacity: float
    per_seconds: float

    def __post_init__(self) -> None:
        for name in ("capacity", "per_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"Budget.{name} must be a positive number (got {value!r}); "
                    "e.g. Budget(capacity=1200, per_seconds=60) for Binance's weight per minute"
                )

    @property
    def rate(self) -> float:
        """Units refilled per second."""
        return self.capacity / self.per_seconds


class TokenBucket:
    """One budget's state. Pure bookkeeping: callers pass the time in, nothing sleeps here."""

    __slots__ = ("_last_ms", "_used", "budget")

    def __init__(self, budget: Budget, *, now_ms: int) -> None:
        self.budget = budget
        self._used = 0.0
        self._last_ms = now_ms

    def refill(self, now_ms: int) -> None:
        elapsed_s = max(0, now_ms - self._last_ms) / 1000
        self._used = max(0.0, self._used - elapsed_s * self.budget.rate)
        self._last_ms = max(self._last_ms, now_ms)

    @property
    def used(self) -> float:
        """Units in use as of the last refill."""
        return self._used

    def used_fraction(self, now_ms: int) -> float:
        self.refill(now_ms)
        return self._used / self.budget.capacity

    def take(self, weight: float, now_ms: int) -> None:
        self.refill(now_ms)
        self._used += weight

    def sync_used(self, used: float, now_ms: int) -> None:
        """Raise our count to the venue's figure; never lower it (our count may be ahead)."""
        self.refill(now_ms)
        self._used = max(self._used, min(used, self.budget.capacity))

    def delay_s(self, weight: float, now_ms: int, *, slowed: bool) -> float:
        """Seconds to wait before spending `weight`.

        `slowed` says the caller already paid its slow-down delay: it then only has to wait
        if the bucket has reached the pause threshold meanwhile.
        """
        self.refill(now_ms)
        cap = self.budget.capacity
        after = (self._used + weight) / cap
        if after >= PAUSE_AT:
            # Wait until the request lands under the slow-down line (or, for a request heavier
            # than that line, until the bucket is empty).
            target = max(SLOW_AT * cap - weight, 0.0)
            return (self._used - target) / self.budget.rate
        if after >= SLOW_AT and not slowed:
            share = (after - SLOW_AT) / (PAUSE_AT - SLOW_AT)
            return share * weight / self.budget.rate
        return 0.0


@dataclass(frozen=True, slots=True)
class RateLimiterState:
    """A snapshot for metrics and /health."""

    used: Mapping[str, float]  # key -> used fraction of its budget, 0..1
    paused_until_ms: int  # no request goes out before this (Retry-After or ban); 0 if none
    bans_in_memory: int  # 418 bans within the last ban_memory_s
    throttled_ms: Mapping[str, int]  # key -> total time requests waited on this budget


Weights = str | Iterable[str] | Mapping[str, float]


class RateLimiter:
    def __init__(
        self,
        *,
        clock: Clock,
        budgets: Mapping[str, Budget],
        sleep: Callable[[float], Awaitable[None]] | None = None,
        ban_min_s: float = 120.0,
        ban_max_s: float = 86_400.0,
        ban_memory_s: float = 3_600.0,
        default_retry_after_s: float = 1.0,
        header_budgets: Mapping[str, str] = DEFAULT_HEADER_BUDGETS,
    ) -> None:
        if not budgets:
            raise ValueError("RateLimiter needs at least one budget, e.g. {'weight': Budget(...)}")
        if not 0 < ban_min_s <= ban_max_s:
            raise ValueError(f"need 0 < ban_min_s <= ban_max_s (got {ban_min_s}, {ban_max_s})")
        if default_retry_after_s < 0 or ban_memory_s < 0:
            raise ValueError("default_retry_after_s and ban_memory_s must not be negative")
        self._clock = clock
        self._sleep = sleep if sleep is not None else clock.sleep
        now = clock.now_ms()
        self._buckets = {key: TokenBucket(b, now_ms=now) for key, b in budgets.items()}
        self._locks: dict[str, asyncio.Lock] = {}
        self._throttled_ms = dict.fromkeys(budgets, 0)
        self._paused_until_ms = 0
        self._ban_times_ms: list[int] = []
        self._ban_min_s = ban_min_s
        self._ban_max_s = ban_max_s
        self._ban_memory_ms = round(ban_memory_s * 1000)
        self._default_retry_after_s = default_retry_after_s
        self._header_budgets = {h.casefold(): k for h, k in header_budgets.items()}

    @property
    def paused_until_ms(self) -> int:
        return self._paused_until_ms

    async def acquire(self, key: Weights, weight: float = 1) -> None:
        """Wait until a request spending `weight` on `key` may go out, then count it.

        `key` is one budget name, several (each is charged `weight`), or a mapping of budget
        name to its own weight, e.g. {"weight": 4, "orders": 1}.
        """
        for name, w in self._charges(key, weight):
            async with self._lock(name):
                await self._acquire_one(name, w)
        # A penalty may have arrived while we queued on a lock.
        await self._wait_penalty()

    def observe_headers(self, headers: Mapping[str, str] | None) -> None:
        """Adopt the venue's used-weight figures when they exceed our own count."""
        if not headers:
            return
        now = self._clock.now_ms()
        for name, value in headers.items():
            key = self._header_budgets.get(str(name).casefold())
            bucket = self._buckets.get(key) if key is not None else None
            if bucket is None:
                continue
            try:
                used = float(value)
            except (TypeError, ValueError):
                continue  # a garbled header must not break the request that carried it
            if math.isfinite(used) and used >= 0:
                bucket.sync_used(used, now)

    def penalize(self, retry_after_s: float | None, *, ban: bool) -> float:
        """Stop all requests for a while; returns the pause in seconds.

        A 429 pauses for its Retry-After (or `default_retry_after_s`). A 418 ban pauses for at
        least the Retry-After and at least `ban_min_s * 2**n`, n being the bans already seen
        within `ban_memory_s` (capped at `ban_max_s`, though a longer Retry-After still wins).
        Every budget is also marked 90% used, since the venue just told us our count was low:
        after the pause, requests first wait for the budgets to drain back under 80%.
        """
        now = self._clock.now_ms()
        given = retry_after_s if _usable_seconds(retry_after_s) else None
        if ban:
            self._ban_times_ms = [t for t in self._ban_times_ms if now - t < self._ban_memory_ms]
            doublings = min(len(self._ban_times_ms), 32)
            hard = min(self._ban_min_s * 2.0**doublings, self._ban_max_s)
            self._ban_times_ms.append(now)
            pause_s = max(given or 0.0, hard)
        else:
            pause_s = given if given is not None else self._default_retry_after_s
        self._paused_until_ms = max(self._paused_until_ms, now + math.ceil(pause_s * 1000))
        # Whatever we believed, the venue says we are over: treat the budgets as full.
        for bucket in self._buckets.values():
            bucket.sync_used(bucket.budget.capacity * PAUSE_AT, now)
        return pause_s

    def state(self) -> RateLimiterState:
        now = self._clock.now_ms()
        recent = sum(1 for t in self._ban_times_ms if now - t < self._ban_memory_ms)
        return RateLimiterState(
            used={k: b.used_fraction(now) for k, b in self._buckets.items()},
            paused_until_ms=self._paused_until_ms if self._paused_until_ms > now else 0,
            bans_in_memory=recent,
            throttled_ms=dict(self._throttled_ms),
        )

    # -- internals -------------------------------------------------------------------------

    def _charges(self, key: Weights, weight: float) -> list[tuple[str, float]]:
        if isinstance(key, str):
            pairs = [(key, weight)]
        elif isinstance(key, Mapping):
            pairs = [(str(k), float(v)) for k, v in key.items()]
        else:
            pairs = [(k, weight) for k in key]
        if not pairs:
            raise ValueError("acquire() needs at least one budget key")
        for name, w in pairs:
            bucket = self._buckets.get(name)
            if bucket is None:
                known = ", ".join(sorted(self._buckets))
                raise ValueError(f"unknown rate-limit budget {name!r}; configured: {known}")
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"request weight for {name!r} must be >= 0 (got {w!r})")
            if w > bucket.budget.capacity:
                raise ValueError(
                    f"request weight {w} exceeds the whole {name!r} budget "
                    f"({bucket.budget.capacity}); it could never be sent"
                )
        # A fixed order keeps two multi-key requests from waiting on each other in turn.
        return sorted(pairs)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _acquire_one(self, name: str, weight: float) -> None:
        bucket = self._buckets[name]
        slowed = False
        while True:
            await self._wait_penalty()
            now = self._clock.now_ms()
            delay = bucket.delay_s(weight, now, slowed=slowed)
            if delay <= 0:
                bucket.take(weight, now)
                return
            slowed = True
            # Time is kept in whole milliseconds: a shorter sleep might not move the clock.
            delay = max(delay, 0.001)
            self._throttled_ms[name] += math.ceil(delay * 1000)
            await self._sleep(delay)

    async def _wait_penalty(self) -> None:
        while (wait_ms := self._paused_until_ms - self._clock.now_ms()) > 0:
            await self._sleep(wait_ms / 1000)


def _usable_seconds(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0
