"""Clocks for the async shell: the real one, and a replay clock for `vigil run --replay`.

Both implement `core.clock.Clock`. Core code only ever sees that protocol, so the same stage code
runs against wall time, replayed time or `core.clock.SimClock`.
"""

from __future__ import annotations

import asyncio
import math
import time

from core.clock import ClockWentBackwards


class LiveClock:
    """Wall time in UTC epoch milliseconds; `sleep` really sleeps."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        # asyncio.sleep treats a negative delay as zero; jitter arithmetic can produce one.
        await asyncio.sleep(seconds)

    @staticmethod
    def monotonic() -> float:
        """Seconds from an arbitrary origin, for measuring durations only (never recorded)."""
        return time.monotonic()


class ReplayClock:
    """Simulated time for replaying recorded data at `speed` times real time.

    The replay feed moves time forward with `advance_to(ts)` as it hands out data. `sleep(s)`
    waits s / speed seconds of wall time, then moves simulated time to the wake-up time
    (call time + s) unless the feed has already moved past it. Even at enormous speeds a
    sleep yields to the event loop, so other tasks keep running.
    """

    __slots__ = ("_now", "_speed")

    def __init__(self, start_ms: int, speed: float) -> None:
        if start_ms < 0:
            raise ValueError(f"replay start_ms must not be negative (got {start_ms})")
        if not isinstance(speed, int | float) or not math.isfinite(speed) or speed <= 0:
            raise ValueError(
                f"replay speed must be a positive finite number (got {speed!r}); "
                "use e.g. --speed 1 for real time or --speed 60 for a minute per second"
            )
        self._now = start_ms
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        return self._speed

    def now_ms(self) -> int:
        return self._now

    def advance_to(self, ts_ms: int) -> None:
        if ts_ms < self._now:
            raise ClockWentBackwards(
                f"replay clock would go backwards: {ts_ms} < {self._now}; "
                "the replay data must be sorted by timestamp"
            )
        self._now = ts_ms

    async def sleep(self, seconds: float) -> None:
        # Negative delays count as zero, as asyncio.sleep does, so replay behaves like live.
        seconds = max(0.0, seconds)
        wake_ms = self._now + round(seconds * 1000)
        wall = seconds / self._speed
        # asyncio.sleep(0) is a bare yield; any positive delay goes through the timer heap.
        await asyncio.sleep(wall if wall >= 1e-6 else 0)
        if wake_ms > self._now:
            self._now = wake_ms
