"""The fake exchange's market data: candle series laid onto its timeline and fed as time passes.

Every series is shifted by the same whole number of candles (`shift_ms`), so a file from 2024
can look like the last few hours. A candle is "closed" once the market clock reaches its close
(open + timeframe); only closed candles are fed to the sim and served as klines.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from backtest.synthetic import generate_candles
from core.candles import CandleSeries
from core.clock import DAY_MS, WEEK_MS

Row = tuple[int, float, float, float, float, float]  # open ms, o, h, l, c, v


@dataclass(frozen=True, slots=True)
class Stats24h:
    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    prev_close: float
    last_volume: float
    count: int


def synthetic_series(
    symbols: Sequence[str],
    prices: Mapping[str, float],
    *,
    timeframe: str,
    bars: int,
    seed: int,
    start_ms: int,
) -> dict[str, CandleSeries]:
    """Seeded candles per symbol; each symbol gets its own stream derived from `seed`."""
    out: dict[str, CandleSeries] = {}
    for symbol in symbols:
        price = prices[symbol]
        out[symbol] = generate_candles(
            symbol,
            timeframe,
            start_ms,
            bars,
            # crc32, not hash(): str hashes change between processes.
            seed=seed * 1_000_003 + zlib.crc32(symbol.encode()),
            start_price=price,
            volatility=0.003,
            base_volume=1_000_000 / price,  # about a million quote units per bar
        )
    return out


class CandleFeed:
    def __init__(
        self, series: Mapping[str, CandleSeries], *, timeframe_ms: int, shift_ms: int
    ) -> None:
        self._tf = timeframe_ms
        self._ts: dict[str, npt.NDArray[np.int64]] = {}
        self._cols: dict[str, tuple[npt.NDArray[np.float64], ...]] = {}
        self._next: dict[str, int] = {}
        for symbol, s in series.items():
            if s.timeframe_ms != timeframe_ms:
                raise ValueError(
                    f"{symbol} candles are {s.timeframe}, the fake runs {timeframe_ms} ms candles; "
                    "pass candles of the fake's timeframe"
                )
            if not len(s):
                raise ValueError(f"{symbol}: the candle series is empty")
            self._ts[symbol] = np.asarray(s.ts, dtype=np.int64) + shift_ms
            self._cols[symbol] = (s.open, s.high, s.low, s.close, s.volume)
            self._next[symbol] = 0

    @property
    def symbols(self) -> list[str]:
        return list(self._ts)

    def first_open_ms(self) -> int:
        return min(int(ts[0]) for ts in self._ts.values())

    def closed_count(self, symbol: str, market_ms: int) -> int:
        return int(np.searchsorted(self._ts[symbol], market_ms - self._tf, side="right"))

    def seek(self, market_ms: int) -> None:
        """Mark everything closed by market_ms as already fed (a restored sim has it)."""
        for symbol in self._ts:
            self._next[symbol] = self.closed_count(symbol, market_ms)

    def due(self, market_ms: int) -> list[tuple[str, Row]]:
        """Candles closed by market_ms and not fed yet, oldest first, then in symbol order."""
        out: list[tuple[int, int, str, Row]] = []
        for k, symbol in enumerate(self._ts):
            n = self.closed_count(symbol, market_ms)
            for i in range(self._next[symbol], n):
                out.append((int(self._ts[symbol][i]), k, symbol, self._row(symbol, i)))
            self._next[symbol] = max(self._next[symbol], n)
        out.sort(key=lambda r: (r[0], r[1]))
        return [(symbol, row) for _, _, symbol, row in out]

    def exhausted(self) -> bool:
        return all(self._next[s] >= len(ts) for s, ts in self._ts.items())

    def _row(self, symbol: str, i: int) -> Row:
        o, h, lo, c, v = self._cols[symbol]
        return (
            int(self._ts[symbol][i]),
            float(o[i]),
            float(h[i]),
            float(lo[i]),
            float(c[i]),
            float(v[i]),
        )

    def klines(
        self,
        symbol: str,
        interval_ms: int,
        market_ms: int,
        *,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[Row]:
        """Closed candles of `interval_ms` (a multiple of the timeframe) by open time, like
        Binance: from start_ms the first `limit`, else the last `limit` up to end_ms. A coarser
        bucket that is still filling comes last, as Binance's forming candle does."""
        n = self.closed_count(symbol, market_ms)
        ts = self._ts[symbol][:n]
        step = interval_ms
        offset = 3 * DAY_MS if interval_ms == WEEK_MS else 0  # weeks start on Monday

        def floor(t: int) -> int:
            return t - (t + offset) % step

        lo = 0 if start_ms is None else int(np.searchsorted(ts, -floor(-start_ms), side="left"))
        hi = n if end_ms is None else int(np.searchsorted(ts, floor(end_ms) + step, side="left"))
        if hi <= lo:
            return []
        if start_ms is None:
            first = floor(int(ts[hi - 1])) - (limit - 1) * step
            lo = max(lo, int(np.searchsorted(ts, first, side="left")))
        else:
            last = floor(int(ts[lo])) + limit * step
            hi = min(hi, int(np.searchsorted(ts, last, side="left")))
        if step == self._tf:
            return [self._row(symbol, i) for i in range(lo, hi)]
        sub = ts[lo:hi]
        buckets = sub - (sub + offset) % step
        _, starts = np.unique(buckets, return_index=True)
        ends = [*starts[1:].tolist(), len(sub)]
        o, h, low, c, v = (col[lo:hi] for col in self._cols[symbol])
        return [
            (
                int(buckets[a]),
                float(o[a]),
                float(h[a:b].max()),
                float(low[a:b].min()),
                float(c[b - 1]),
                float(v[a:b].sum()),
            )
            for a, b in zip(starts.tolist(), ends, strict=True)
        ]

    def stats_24h(self, symbol: str, market_ms: int) -> Stats24h | None:
        n = self.closed_count(symbol, market_ms)
        if n == 0:
            return None
        ts = self._ts[symbol][:n]
        lo = int(np.searchsorted(ts, market_ms - DAY_MS, side="left"))
        lo = min(lo, n - 1)
        o, h, low, c, v = (col[:n] for col in self._cols[symbol])
        typical = (h[lo:] + low[lo:] + c[lo:]) / 3
        return Stats24h(
            open_ms=int(ts[lo]),
            open=float(o[lo]),
            high=float(h[lo:].max()),
            low=float(low[lo:].min()),
            close=float(c[n - 1]),
            volume=float(v[lo:].sum()),
            quote_volume=float((v[lo:] * typical).sum()),
            prev_close=float(c[lo - 1]) if lo > 0 else float(o[lo]),
            last_volume=float(v[n - 1]),
            count=n - lo,
        )
