"""Candle feeds: where closed candles come from. The engine asks `poll(now)` every cycle."""

from __future__ import annotations

from collections.abc import Mapping

from backtest.data import CandleSeries
from runner.engine import CandleSink


class ReplayFeed:
    """Recorded candles delivered as they would have closed: a candle with open time `ts`
    is delivered once `now >= ts + timeframe`. Point in time by construction."""

    def __init__(self, series: Mapping[str, CandleSeries], *, timeframe_ms: int) -> None:
        self.timeframe_ms = timeframe_ms
        self.symbols = tuple(sorted(series))
        # Plain lists: indexing them is several times cheaper than numpy scalars in a loop.
        self._cols = {
            s: (
                series[s].ts.tolist(),
                series[s].open.tolist(),
                series[s].high.tolist(),
                series[s].low.tolist(),
                series[s].close.tolist(),
                series[s].volume.tolist(),
            )
            for s in self.symbols
        }
        self._idx = dict.fromkeys(self.symbols, 0)
        self._next: int | None = None
        self._next_valid = False  # poll recomputes the next close while it walks the data

    def first_close_ms(self) -> int | None:
        firsts = [cols[0][0] for cols in self._cols.values() if cols[0]]
        return min(firsts) + self.timeframe_ms if firsts else None

    def next_close_ms(self) -> int | None:
        """When the next undelivered candle closes, or None when the data is used up."""
        if self._next_valid:
            return self._next
        best: int | None = None
        for s in self.symbols:
            ts = self._cols[s][0]
            i = self._idx[s]
            if i < len(ts):
                close = ts[i] + self.timeframe_ms
                if best is None or close < best:
                    best = close
        self._next, self._next_valid = best, True
        return best

    def last_close_ms(self) -> int | None:
        lasts = [cols[0][-1] for cols in self._cols.values() if cols[0]]
        return max(lasts) + self.timeframe_ms if lasts else None

    @property
    def exhausted(self) -> bool:
        return self.next_close_ms() is None

    async def warmup(self, start_ms: int, bars: int, sink: CandleSink) -> int:
        """Deliver every candle closed by `start_ms` (history before the first cycle)."""
        return await self.poll(start_ms, sink)

    async def poll(self, now_ms: int, sink: CandleSink) -> int:
        tf = self.timeframe_ms
        limit = now_ms - tf  # open times at or before this have closed
        delivered = 0
        idx = self._idx
        best: int | None = None
        for s in self.symbols:
            i = idx[s]
            ts, o, h, lo, c, v = self._cols[s]
            n = len(ts)
            while i < n and ts[i] <= limit:
                sink(s, ts[i], o[i], h[i], lo[i], c[i], v[i])
                i += 1
                delivered += 1
            idx[s] = i
            if i < n and (best is None or ts[i] + tf < best):
                best = ts[i] + tf
        self._next, self._next_valid = best, True
        return delivered

    def seek(self, start_ms: int) -> None:
        """Skip candles closed before `start_ms` without delivering them."""
        limit = start_ms - self.timeframe_ms
        for s in self.symbols:
            ts = self._cols[s][0]
            i = self._idx[s]
            while i < len(ts) and ts[i] < limit:
                i += 1
            self._idx[s] = i
        self._next_valid = False
