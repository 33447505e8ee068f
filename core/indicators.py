"""The built-in indicators: each kind is one class, its state and its per-candle update.

An indicator sees every accepted candle of one symbol, oldest first, through
`update(o, h, lo, c, v)`, and returns its value after that candle: a float, or None while it
has seen too few candles. That method is the definition: the daemon calls it candle by
candle, a backtest runs it over a whole series before the cycle loop (core.features), and
a traceback from either points here. Floats only; no I/O, no clock.

A strategy module defines its own indicators the same way (subclass `Indicator`, set
`kind`) and lists them in its `indicators` class attribute; docs/indicators.md has a worked
example. A feature key is `<kind>:<period>`; `BUILTIN` holds the kinds every bank knows.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import ClassVar

# Rolling float sums drift; an exact re-sum every so many candles keeps them honest.
RESUM_EVERY = 4096


class Indicator:
    """One indicator of one symbol. Subclass it, set `kind` (lowercase letters: the part of
    the feature key before the colon), keep the state in attributes set in `__init__`, and
    implement `update`. `period` is the number after the colon (>= 1)."""

    kind: ClassVar[str] = ""
    __slots__ = ("period",)

    def __init__(self, period: int) -> None:
        self.period = period

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        """Take the next candle (open, high, low, close, volume: finite, positive prices,
        low <= open, close <= high); return the value after it, or None while warming up."""
        raise NotImplementedError

    @classmethod
    def warmup(cls, period: int) -> int:
        """Candles after which the value is never None any more (a bound, used to size the
        history a backtest delivers before its first cycle)."""
        return period + 1


class Ema(Indicator):
    """Exponential moving average of closes, seeded with the mean of the first N."""

    kind = "ema"
    __slots__ = ("alpha", "count", "total", "value")

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.alpha = 2.0 / (period + 1)
        self.count = 0
        self.total = 0.0
        self.value: float | None = None

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        e = self.value
        if e is not None:
            e = self.value = e + self.alpha * (c - e)
            return e
        self.count += 1
        self.total += c
        if self.count == self.period:
            self.value = self.total / self.period
        return self.value


class Atr(Indicator):
    """Wilder's average true range, seeded with the mean of the first N true ranges."""

    kind = "atr"
    __slots__ = ("count", "prev_close", "total", "value")

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.prev_close: float | None = None
        self.count = 0
        self.total = 0.0
        self.value: float | None = None

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        pc = self.prev_close
        tr = h - lo if pc is None else max(h - lo, abs(h - pc), abs(lo - pc))
        self.prev_close = c
        e = self.value
        p = self.period
        if e is not None:
            e = self.value = (e * (p - 1) + tr) / p
            return e
        self.count += 1
        self.total += tr
        if self.count == p:
            self.value = self.total / p
        return self.value


class Rsi(Indicator):
    """Wilder's relative strength index of closes, 0..100 (50 when nothing moved)."""

    kind = "rsi"
    __slots__ = ("count", "gain", "loss", "prev_close", "value")

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.prev_close: float | None = None
        self.count = 0
        self.gain = 0.0
        self.loss = 0.0
        self.value: float | None = None

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        pc = self.prev_close
        self.prev_close = c
        if pc is None:
            return None
        ch = c - pc
        gain = ch if ch > 0 else 0.0
        loss = -ch if ch < 0 else 0.0
        p = self.period
        if self.count < p:
            self.count += 1
            self.gain += gain
            self.loss += loss
            if self.count < p:
                return None
            self.gain /= p
            self.loss /= p
        else:
            self.gain = (self.gain * (p - 1) + gain) / p
            self.loss = (self.loss * (p - 1) + loss) / p
        if self.loss == 0.0:
            return 100.0 if self.gain > 0 else 50.0
        return 100.0 - 100.0 / (1.0 + self.gain / self.loss)


class _Extreme(Indicator):
    """The highest (or lowest) of a window, kept in a monotonic deque of (bar, value): O(1)
    amortised per candle whatever the period."""

    __slots__ = ("bars", "window")

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.bars = 0
        self.window: deque[tuple[int, float]] = deque()


class HighestHigh(_Extreme):
    """Highest high of the N candles before the current one."""

    kind = "hh"
    __slots__ = ()

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        bi, window = self.bars, self.window
        value = window[0][1] if bi >= self.period else None
        while window and window[-1][1] <= h:
            window.pop()
        window.append((bi, h))
        if window[0][0] <= bi - self.period:
            window.popleft()
        self.bars = bi + 1
        return value


class LowestLow(_Extreme):
    """Lowest low of the N candles before the current one."""

    kind = "ll"
    __slots__ = ()

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        bi, window = self.bars, self.window
        value = window[0][1] if bi >= self.period else None
        while window and window[-1][1] >= lo:
            window.pop()
        window.append((bi, lo))
        if window[0][0] <= bi - self.period:
            window.popleft()
        self.bars = bi + 1
        return value


class Peak(_Extreme):
    """Highest close of the last N candles, the current one included."""

    kind = "peak"
    __slots__ = ()

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        bi, window = self.bars, self.window
        while window and window[-1][1] <= c:
            window.pop()
        window.append((bi, c))
        if window[0][0] <= bi - self.period:
            window.popleft()
        self.bars = bi + 1
        return window[0][1] if bi + 1 >= self.period else None


class _RollingSum(Indicator):
    """A sum over the last N values, updated by adding the new one and subtracting the one
    that leaves, and re-summed exactly (math.fsum) every RESUM_EVERY candles."""

    __slots__ = ("sum", "until_resum", "window")

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.until_resum = RESUM_EVERY  # candles left before the next exact re-sum
        self.window: deque[float] = deque(maxlen=period)
        self.sum = 0.0


class VolumeAverage(_RollingSum):
    """Mean volume of the N candles before the current one."""

    kind = "vavg"
    __slots__ = ()

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        window, p = self.window, self.period
        value = None
        if len(window) == p:
            value = self.sum / p
            if value < 0.0:  # float cancellation of a window of zeros
                value = 0.0
            self.sum -= window[0]
        window.append(v)
        self.until_resum -= 1
        if not self.until_resum:
            self.until_resum = RESUM_EVERY
            self.sum = math.fsum(window)
        else:
            self.sum += v
        return value


class QuoteVolume(_RollingSum):
    """Sum of close x volume over the last N candles, the current one included."""

    kind = "qvol"
    __slots__ = ()

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        window, p = self.window, self.period
        qv = c * v
        if len(window) == p:
            self.sum -= window[0]
        window.append(qv)
        self.until_resum -= 1
        if not self.until_resum:
            self.until_resum = RESUM_EVERY
            self.sum = math.fsum(window)
        else:
            self.sum += qv
        if len(window) < p:
            return None
        s = self.sum
        return s if s > 0.0 else 0.0


class Median(Indicator):
    """Median close of the N candles before the current one."""

    kind = "med"
    __slots__ = ("ordered", "window")

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.window: deque[float] = deque(maxlen=period)
        self.ordered: list[float] = []

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        window, ordered, p = self.window, self.ordered, self.period
        value = None
        if len(window) == p:
            mid = p // 2
            value = ordered[mid] if p % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
            del ordered[bisect_left(ordered, window[0])]
        window.append(c)
        insort(ordered, c)
        return value


class RateOfChange(Indicator):
    """Close over the close N candles ago, minus one."""

    kind = "roc"
    __slots__ = ("window",)

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.window: deque[float] = deque(maxlen=period + 1)

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        window = self.window
        window.append(c)
        if len(window) <= self.period:
            return None
        return c / window[0] - 1.0


BUILTIN: tuple[type[Indicator], ...] = (
    Ema,
    Atr,
    Rsi,
    HighestHigh,
    LowestLow,
    Peak,
    VolumeAverage,
    QuoteVolume,
    Median,
    RateOfChange,
)
