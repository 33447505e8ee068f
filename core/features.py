"""Incremental indicators: O(1) (amortised) work per new candle, floats only.

A feature key is `<kind>:<period>`:

| key      | meaning                                                               |
|----------|-----------------------------------------------------------------------|
| ema:N    | exponential moving average of closes (seeded with the first N's mean) |
| atr:N    | Wilder's average true range                                           |
| rsi:N    | Wilder's relative strength index, 0..100                              |
| hh:N     | highest high of the N bars *before* the current one                   |
| ll:N     | lowest low of the N bars before the current one                       |
| vavg:N   | mean volume of the N bars before the current one                      |
| med:N    | median close of the N bars before the current one                     |
| roc:N    | close / close N bars ago - 1                                          |
| peak:N   | highest close of the last N bars, current included                    |
| qvol:N   | sum of close x volume over the last N bars (quote volume)             |

A value is None until the indicator has seen enough bars. "Before the current one" matters:
a breakout compares this bar with the ones before it, never with itself.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import NamedTuple, Protocol

from core.models import Candle


class SymbolFeatures(NamedTuple):
    symbol: str
    ts: int  # open time of the latest closed candle
    open: float
    high: float
    low: float
    close: float
    volume: float
    values: Mapping[str, float | None]
    prev: Mapping[str, float | None]  # values one candle earlier; empty on the first
    bars: int  # candles seen so far


class BadTick(ValueError):
    """A candle the bank refuses; `reason` is machine-readable."""

    def __init__(self, symbol: str, ts: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{symbol} @ {ts}: {reason} {detail}".strip())
        self.symbol = symbol
        self.ts = ts
        self.reason = reason
        self.detail = detail


class Indicator(Protocol):
    value: float | None

    def update(self, h: float, low: float, c: float, v: float) -> None: ...


class Ema:
    __slots__ = ("_alpha", "_count", "_n", "_seed", "value")

    def __init__(self, n: int) -> None:
        self._n = n
        self._alpha = 2.0 / (n + 1)
        self._seed = 0.0
        self._count = 0
        self.value: float | None = None

    def update(self, h: float, low: float, c: float, v: float) -> None:
        value = self.value
        if value is not None:
            self.value = value + self._alpha * (c - value)
            return
        self._count += 1
        self._seed += c
        if self._count == self._n:
            self.value = self._seed / self._n


class Atr:
    __slots__ = ("_count", "_n", "_prev_close", "_sum", "value")

    def __init__(self, n: int) -> None:
        self._n = n
        self._prev_close: float | None = None
        self._sum = 0.0
        self._count = 0
        self.value: float | None = None

    def update(self, h: float, low: float, c: float, v: float) -> None:
        pc = self._prev_close
        self._prev_close = c
        if pc is None:
            tr = h - low
        else:
            tr = max(h - low, abs(h - pc), abs(low - pc))
        value = self.value
        if value is not None:
            self.value = (value * (self._n - 1) + tr) / self._n
            return
        self._count += 1
        self._sum += tr
        if self._count == self._n:
            self.value = self._sum / self._n


class Rsi:
    __slots__ = ("_count", "_gain", "_loss", "_n", "_prev_close", "value")

    def __init__(self, n: int) -> None:
        self._n = n
        self._prev_close: float | None = None
        self._gain = 0.0
        self._loss = 0.0
        self._count = 0
        self.value: float | None = None

    def update(self, h: float, low: float, c: float, v: float) -> None:
        pc = self._prev_close
        self._prev_close = c
        if pc is None:
            return
        change = c - pc
        gain = change if change > 0 else 0.0
        loss = -change if change < 0 else 0.0
        n = self._n
        if self._count < n:
            self._count += 1
            self._gain += gain
            self._loss += loss
            if self._count < n:
                return
            self._gain /= n
            self._loss /= n
        else:
            self._gain = (self._gain * (n - 1) + gain) / n
            self._loss = (self._loss * (n - 1) + loss) / n
        if self._loss == 0.0:
            self.value = 100.0 if self._gain > 0 else 50.0
        else:
            self.value = 100.0 - 100.0 / (1.0 + self._gain / self._loss)


class _Extreme:
    """Rolling max (or min) with a monotonic deque; `prior` excludes the current bar."""

    __slots__ = ("_dq", "_i", "_n", "_prior", "_sign", "value")

    def __init__(self, n: int, *, prior: bool, sign: float) -> None:
        self._n = n
        self._dq: deque[tuple[int, float]] = deque()
        self._i = 0
        self._prior = prior
        self._sign = sign  # +1 for max, -1 for min (values are stored negated)
        self.value: float | None = None

    def _push(self, x: float) -> None:
        i = self._i
        dq = self._dq
        x = x * self._sign
        while dq and dq[-1][1] <= x:
            dq.pop()
        dq.append((i, x))
        while dq[0][0] <= i - self._n:
            dq.popleft()
        self._i = i + 1

    def _current(self) -> float | None:
        if self._i < self._n:
            return None
        return self._dq[0][1] * self._sign


class HighestHigh(_Extreme):
    __slots__ = ()

    def __init__(self, n: int) -> None:
        super().__init__(n, prior=True, sign=1.0)

    def update(self, h: float, low: float, c: float, v: float) -> None:
        self.value = self._current()
        self._push(h)


class LowestLow(_Extreme):
    __slots__ = ()

    def __init__(self, n: int) -> None:
        super().__init__(n, prior=True, sign=-1.0)

    def update(self, h: float, low: float, c: float, v: float) -> None:
        self.value = self._current()
        self._push(low)


class PeakClose(_Extreme):
    __slots__ = ()

    def __init__(self, n: int) -> None:
        super().__init__(n, prior=False, sign=1.0)

    def update(self, h: float, low: float, c: float, v: float) -> None:
        self._push(c)
        self.value = self._current()


class _Window:
    """The last n values, for sums and medians."""

    __slots__ = ("_buf", "_n")

    def __init__(self, n: int) -> None:
        self._n = n
        self._buf: deque[float] = deque(maxlen=n)


class VolumeAverage(_Window):
    __slots__ = ("_sum", "value")

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self._sum = 0.0
        self.value: float | None = None

    def update(self, h: float, low: float, c: float, v: float) -> None:
        buf = self._buf
        if len(buf) == self._n:
            self.value = self._sum / self._n
            self._sum -= buf[0]
        self._sum += v
        buf.append(v)


class QuoteVolume(_Window):
    __slots__ = ("_k", "_sum", "value")

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self._sum = 0.0
        self._k = 0
        self.value: float | None = None

    def update(self, h: float, low: float, c: float, v: float) -> None:
        buf = self._buf
        qv = c * v
        if len(buf) == self._n:
            self._sum -= buf[0]
        buf.append(qv)
        self._k += 1
        if self._k % 4096 == 0:
            # Rolling float sums drift; an exact re-sum now and then keeps them honest.
            self._sum = math.fsum(buf)
        else:
            self._sum += qv
        if len(buf) == self._n:
            self.value = self._sum if self._sum > 0.0 else 0.0


class MedianClose(_Window):
    __slots__ = ("_sorted", "value")

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self._sorted: list[float] = []
        self.value: float | None = None

    def update(self, h: float, low: float, c: float, v: float) -> None:
        buf = self._buf
        srt = self._sorted
        n = self._n
        if len(buf) == n:
            mid = n // 2
            self.value = srt[mid] if n % 2 else (srt[mid - 1] + srt[mid]) / 2.0
            del srt[bisect_left(srt, buf[0])]
        buf.append(c)
        insort(srt, c)


class RateOfChange(_Window):
    __slots__ = ("value",)

    def __init__(self, n: int) -> None:
        super().__init__(n + 1)
        self.value: float | None = None

    def update(self, h: float, low: float, c: float, v: float) -> None:
        buf = self._buf
        buf.append(c)
        if len(buf) == self._n:
            self.value = c / buf[0] - 1.0


_KINDS: dict[str, type] = {
    "ema": Ema,
    "atr": Atr,
    "rsi": Rsi,
    "hh": HighestHigh,
    "ll": LowestLow,
    "vavg": VolumeAverage,
    "med": MedianClose,
    "roc": RateOfChange,
    "peak": PeakClose,
    "qvol": QuoteVolume,
}


def parse_key(key: str) -> tuple[str, int]:
    kind, _, period = key.partition(":")
    if kind not in _KINDS or not period.isdigit() or int(period) < 1:
        raise ValueError(f"bad feature key {key!r}: expected one of {sorted(_KINDS)} + ':N'")
    return kind, int(period)


def make_indicator(key: str) -> Indicator:
    kind, period = parse_key(key)
    ind: Indicator = _KINDS[kind](period)
    return ind


def key_period(key: str) -> int:
    return parse_key(key)[1]


class _Series:
    __slots__ = ("bars", "items", "last_ts", "latest", "ring", "symbol")

    def __init__(self, symbol: str, keys: tuple[str, ...], history: int) -> None:
        self.symbol = symbol
        self.items = tuple((k, make_indicator(k)) for k in keys)
        self.last_ts = -1
        self.latest: SymbolFeatures | None = None
        self.bars = 0
        self.ring: deque[tuple[int, float, float, float, float, float]] = deque(maxlen=history)


_EMPTY: Mapping[str, float | None] = {}


class FeatureBank:
    """Per-symbol incremental indicators. The daemon and the backtest feed it the same way.

    Not thread-safe and deliberately mutable: it is the one place that remembers candles.
    What it hands out (`SymbolFeatures`) is immutable by convention and never changed later.
    """

    def __init__(self, keys: Iterable[str], *, history: int = 64) -> None:
        uniq = sorted(set(keys))
        for k in uniq:
            parse_key(k)
        self.keys: tuple[str, ...] = tuple(uniq)
        self._history = max(history, 1)
        self._series: dict[str, _Series] = {}
        self._latest: dict[str, SymbolFeatures] = {}

    def _get(self, symbol: str) -> _Series:
        s = self._series.get(symbol)
        if s is None:
            s = _Series(symbol, self.keys, self._history)
            self._series[symbol] = s
        return s

    def push(
        self, symbol: str, ts: int, o: float, h: float, low: float, c: float, v: float
    ) -> SymbolFeatures:
        """Add one closed candle. Raises BadTick (nothing changes) for a candle it refuses."""
        s = self._series.get(symbol) or self._get(symbol)
        if ts <= s.last_ts:
            reason = "DUPLICATE_CANDLE" if ts == s.last_ts else "OUT_OF_ORDER_CANDLE"
            raise BadTick(symbol, ts, reason, f"last seen {s.last_ts}")
        # `x == x` is False only for NaN; chained comparisons reject inf and zero too.
        if not (0.0 < low <= h < math.inf and low <= o <= h and low <= c <= h):
            raise BadTick(symbol, ts, "BAD_PRICE", f"o={o} h={h} l={low} c={c}")
        if not (0.0 <= v < math.inf):
            raise BadTick(symbol, ts, "BAD_VOLUME", f"v={v}")
        for _, ind in s.items:
            ind.update(h, low, c, v)
        s.last_ts = ts
        s.bars += 1
        s.ring.append((ts, o, h, low, c, v))
        prev = s.latest
        feats = SymbolFeatures(
            symbol,
            ts,
            o,
            h,
            low,
            c,
            v,
            {k: ind.value for k, ind in s.items},
            prev.values if prev is not None else _EMPTY,
            s.bars,
        )
        s.latest = feats
        self._latest[symbol] = feats
        return feats

    def push_candle(self, symbol: str, candle: Candle) -> SymbolFeatures:
        return self.push(
            symbol,
            candle.ts,
            float(candle.open),
            float(candle.high),
            float(candle.low),
            float(candle.close),
            float(candle.volume),
        )

    def latest(self) -> dict[str, SymbolFeatures]:
        """A copy of the newest features per symbol."""
        return dict(self._latest)

    def get(self, symbol: str) -> SymbolFeatures | None:
        return self._latest.get(symbol)

    def last_ts(self, symbol: str) -> int:
        s = self._series.get(symbol)
        return s.last_ts if s is not None else -1

    def recent_candles(self, symbol: str, n: int) -> tuple[Candle, ...]:
        s = self._series.get(symbol)
        if s is None or n <= 0:
            return ()
        rows = list(s.ring)[-n:]
        return tuple(
            Candle(ts, _dec(o), _dec(h), _dec(lo), _dec(c), _dec(v)) for ts, o, h, lo, c, v in rows
        )

    def warmup_bars(self) -> int:
        """Candles needed before every indicator has a value."""
        return max((key_period(k) + 1 for k in self.keys), default=0)


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))
