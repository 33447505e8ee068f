"""The Clock port. Core code never reads the wall clock; time is handed in."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """UTC epoch milliseconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class ClockWentBackwards(ValueError):
    pass


class SimClock:
    """A clock moved by its owner (the data, a test); it refuses to go backwards.

    `sleep` advances simulated time at once, so code written against `Clock` runs unchanged
    at the speed of the data.
    """

    __slots__ = ("_now",)

    def __init__(self, start_ms: int = 0) -> None:
        if start_ms < 0:
            raise ValueError("start_ms must not be negative")
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance_to(self, ts_ms: int) -> None:
        if ts_ms < self._now:
            raise ClockWentBackwards(f"clock would go backwards: {ts_ms} < {self._now}")
        self._now = ts_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ClockWentBackwards(f"cannot advance by a negative amount ({ms} ms)")
        self._now += ms

    async def sleep(self, seconds: float) -> None:
        self.advance(round(seconds * 1000))


MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

SECOND_MS = 1_000
_TIMEFRAME_UNITS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}


def timeframe_ms(timeframe: str) -> int:
    """'5m' -> 300000. Raises ValueError naming the accepted forms."""
    unit = timeframe[-1:]
    count = timeframe[:-1]
    if unit not in _TIMEFRAME_UNITS or not (count.isascii() and count.isdigit()) or int(count) <= 0:
        raise ValueError(f"bad timeframe {timeframe!r}: use forms like 1s, 1m, 5m, 1h, 1d")
    return int(count) * _TIMEFRAME_UNITS[unit]


def day_start_ms(ts_ms: int) -> int:
    """Start of the UTC day containing ts_ms."""
    return ts_ms - ts_ms % DAY_MS


def week_start_ms(ts_ms: int) -> int:
    """Start of the ISO week (Monday 00:00 UTC) containing ts_ms."""
    # The epoch fell on a Thursday; shift so weeks start on Monday.
    offset = 3 * DAY_MS
    return ts_ms - (ts_ms + offset) % WEEK_MS
