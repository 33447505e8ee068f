"""Candles as columns: `CandleSeries` (closed candles, strictly increasing in time) and
`RawCandles` (columns exactly as a file stored them).

Pure numpy and no I/O, so every layer may use them: the replay feed and offline markets in
infra, the composition root in runner, the backtest. Reading and writing candle files is
infra/candle_files.py's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from core.clock import timeframe_ms
from core.models import Candle

_SYMBOL = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+$")

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class RawCandles(NamedTuple):
    """Candle columns as stored: any order, duplicates and bad values included."""

    ts: Int64Array
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> RawCandles:
        """The rows an index array or boolean mask selects."""
        return RawCandles(
            self.ts[index],
            self.open[index],
            self.high[index],
            self.low[index],
            self.close[index],
            self.volume[index],
        )

    @staticmethod
    def empty() -> RawCandles:
        f = np.empty(0, dtype=np.float64)
        return RawCandles(np.empty(0, dtype=np.int64), f, f, f, f, f)

    @staticmethod
    def concat(parts: Sequence[RawCandles]) -> RawCandles:
        if not parts:
            return RawCandles.empty()
        return RawCandles(
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.open for p in parts]),
            np.concatenate([p.high for p in parts]),
            np.concatenate([p.low for p in parts]),
            np.concatenate([p.close for p in parts]),
            np.concatenate([p.volume for p in parts]),
        )


def check_symbol(symbol: str) -> str:
    if not _SYMBOL.match(symbol):
        raise ValueError(f"bad symbol {symbol!r}: use ccxt spot form BASE/QUOTE, e.g. 'BTC/USDT'")
    return symbol


def iso(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return f"{ts} ms (out of range)"  # a garbage timestamp must not hide the report


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CandleSeries:
    """Columns of closed candles, strictly increasing by `ts` (open time, epoch ms).

    Arrays are read-only; `slice` returns views, not copies. Compare with `equals`.
    """

    symbol: str
    timeframe: str
    ts: Int64Array
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        check_symbol(self.symbol)
        timeframe_ms(self.timeframe)
        n = None
        for f in fields(self)[2:]:
            dtype = np.int64 if f.name == "ts" else np.float64
            arr = np.asarray(getattr(self, f.name), dtype=dtype)
            if arr.ndim != 1:
                raise ValueError(f"CandleSeries.{f.name} must be one-dimensional")
            if n is not None and len(arr) != n:
                raise ValueError(f"CandleSeries.{f.name} has {len(arr)} values, ts has {n}")
            n = len(arr)
            view = arr.view()
            view.flags.writeable = False
            object.__setattr__(self, f.name, view)
        if n and n > 1 and not bool(np.all(np.diff(self.ts) > 0)):
            i = int(np.flatnonzero(np.diff(self.ts) <= 0)[0]) + 1
            raise ValueError(
                f"CandleSeries.ts must be strictly increasing; index {i} ({int(self.ts[i])}) "
                f"follows {int(self.ts[i - 1])}"
            )

    @classmethod
    def _trusted(cls, symbol: str, timeframe: str, cols: Sequence[np.ndarray]) -> CandleSeries:
        """Build without re-checking: for data already validated (loader output, slices)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "symbol", symbol)
        object.__setattr__(obj, "timeframe", timeframe)
        for f, arr in zip(fields(cls)[2:], cols, strict=True):
            view = arr.view()
            view.flags.writeable = False
            object.__setattr__(obj, f.name, view)
        return obj

    @classmethod
    def empty(cls, symbol: str, timeframe: str) -> CandleSeries:
        f = np.empty(0, dtype=np.float64)
        return cls(symbol, timeframe, np.empty(0, dtype=np.int64), f, f, f, f, f)

    def __len__(self) -> int:
        return len(self.ts)

    def __repr__(self) -> str:
        span = f", {iso(self.first_ts)} .. {iso(self.last_ts)}" if len(self) else ""
        return f"CandleSeries({self.symbol} {self.timeframe}, {len(self)} bars{span})"

    @property
    def timeframe_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    @property
    def first_ts(self) -> int:
        if not len(self):
            raise ValueError(f"{self.symbol} {self.timeframe}: the series is empty")
        return int(self.ts[0])

    @property
    def last_ts(self) -> int:
        if not len(self):
            raise ValueError(f"{self.symbol} {self.timeframe}: the series is empty")
        return int(self.ts[-1])

    def columns(
        self,
    ) -> tuple[Int64Array, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        return self.ts, self.open, self.high, self.low, self.close, self.volume

    def slice(self, from_ms: int | None = None, to_ms: int | None = None) -> CandleSeries:
        """Candles with from_ms <= ts < to_ms (either bound may be None)."""
        lo = 0 if from_ms is None else int(np.searchsorted(self.ts, from_ms, side="left"))
        hi = len(self) if to_ms is None else int(np.searchsorted(self.ts, to_ms, side="left"))
        hi = max(lo, hi)
        return CandleSeries._trusted(
            self.symbol, self.timeframe, [c[lo:hi] for c in self.columns()]
        )

    def candle(self, i: int) -> Candle:
        """Row i as a domain Candle (Decimal via the float's shortest text)."""
        return Candle(
            ts=int(self.ts[i]),
            open=Decimal(repr(float(self.open[i]))),
            high=Decimal(repr(float(self.high[i]))),
            low=Decimal(repr(float(self.low[i]))),
            close=Decimal(repr(float(self.close[i]))),
            volume=Decimal(repr(float(self.volume[i]))),
        )

    def candles(self) -> Iterator[Candle]:
        for i in range(len(self)):
            yield self.candle(i)

    def equals(self, other: CandleSeries) -> bool:
        return (
            self.symbol == other.symbol
            and self.timeframe == other.timeframe
            and all(
                np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
                for a, b in zip(self.columns(), other.columns(), strict=True)
            )
        )

    def to_raw(self) -> RawCandles:
        return RawCandles(*self.columns())
