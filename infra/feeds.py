"""Candle feeds: where closed candles come from. The engine asks `poll(now)` every cycle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from core.candles import CandleSeries
from core.features import BadTick
from core.ports import CandleSink

# Rows turned into Python lists at a time: indexing lists is several times cheaper than numpy
# scalars in a loop, and converting in chunks keeps a 15-pair replay's memory small.
CHUNK = 4096

_Cols = tuple[list[int], list[float], list[float], list[float], list[float], list[float]]


class _Cursor:
    __slots__ = ("base", "cols", "n", "parts", "pos", "series", "sink")

    def __init__(self, series: CandleSeries) -> None:
        self.series = series
        self.n = len(series)
        self.pos = 0  # index of the next undelivered row
        self.base = 0  # index of cols[0][0]
        self.cols: _Cols = ([], [], [], [], [], [])
        self.sink: object = None  # the sink `parts` came from
        self.parts: tuple[Any, Any] = (None, None)
        self.load(0)

    def load(self, start: int) -> None:
        s = self.series
        end = min(start + CHUNK, self.n)
        self.base = start
        self.cols = (
            s.ts[start:end].tolist(),
            s.open[start:end].tolist(),
            s.high[start:end].tolist(),
            s.low[start:end].tolist(),
            s.close[start:end].tolist(),
            s.volume[start:end].tolist(),
        )

    def next_ts(self) -> int | None:
        if self.pos >= self.n:
            return None
        j = self.pos - self.base
        if j >= len(self.cols[0]):
            self.load(self.pos)
            j = 0
        return self.cols[0][j]


class ReplayFeed:
    """Recorded candles delivered as they would have closed: a candle with open time `ts`
    is delivered once `now >= ts + timeframe`. Point in time by construction."""

    def __init__(self, series: Mapping[str, CandleSeries], *, timeframe_ms: int) -> None:
        self.timeframe_ms = timeframe_ms
        self.symbols = tuple(sorted(series))
        self._cur = {s: _Cursor(series[s]) for s in self.symbols}
        self._next: int | None = None
        self._next_valid = False  # poll recomputes the next close while it walks the data

    def first_close_ms(self) -> int | None:
        firsts = [int(c.series.ts[0]) for c in self._cur.values() if c.n]
        return min(firsts) + self.timeframe_ms if firsts else None

    def last_close_ms(self) -> int | None:
        lasts = [int(c.series.ts[-1]) for c in self._cur.values() if c.n]
        return max(lasts) + self.timeframe_ms if lasts else None

    def next_close_ms(self) -> int | None:
        """When the next undelivered candle closes, or None when the data is used up."""
        if self._next_valid:
            return self._next
        best: int | None = None
        for c in self._cur.values():
            ts = c.next_ts()
            if ts is not None and (best is None or ts + self.timeframe_ms < best):
                best = ts + self.timeframe_ms
        self._next, self._next_valid = best, True
        return best

    @property
    def exhausted(self) -> bool:
        return self.next_close_ms() is None

    async def warmup(self, start_ms: int, bars: int, sink: CandleSink) -> int:
        """Deliver every candle closed by `start_ms` (history before the first cycle)."""
        return await self.poll(start_ms, sink)

    async def poll(self, now_ms: int, sink: CandleSink) -> int:
        tf = self.timeframe_ms
        limit = now_ms - tf  # open times at or before this have closed
        # An engine sink hands out each symbol's candle step and listener: calling them
        # here directly saves a Python call per candle (a million in a year of 15 pairs).
        parts_of = getattr(sink, "parts", None)
        bad: Callable[[BadTick], object] = getattr(sink, "bad_tick", _reraise)
        delivered = 0
        best: int | None = None
        for s in self.symbols:
            cur = self._cur[s]
            if parts_of is not None:
                if cur.sink is not sink:
                    cur.sink, cur.parts = sink, parts_of(s)
                push, listen = cur.parts
            while True:
                ts, o, h, lo, c, v = cur.cols
                j = start = cur.pos - cur.base
                m = len(ts)
                if parts_of is None:
                    while j < m and ts[j] <= limit:
                        sink(s, ts[j], o[j], h[j], lo[j], c[j], v[j])
                        j += 1
                else:
                    while j < m and ts[j] <= limit:
                        try:
                            push(ts[j], o[j], h[j], lo[j], c[j], v[j])
                        except BadTick as exc:
                            bad(exc)
                        else:
                            if listen is not None:
                                listen(s, ts[j], o[j], h[j], lo[j], c[j], v[j])
                        j += 1
                delivered += j - start
                cur.pos = cur.base + j
                if j < m or cur.pos >= cur.n:
                    break
                cur.load(cur.pos)  # chunk used up: the next one may hold more closed candles
            if j < m and (best is None or ts[j] + tf < best):
                best = ts[j] + tf
        self._next, self._next_valid = best, True
        return delivered

    def seek(self, start_ms: int) -> None:
        """Skip candles closed before `start_ms` without delivering them."""
        limit = start_ms - self.timeframe_ms
        for cur in self._cur.values():
            cur.pos = max(cur.pos, int(np.searchsorted(cur.series.ts, limit, side="left")))
            cur.load(cur.pos)
        self._next_valid = False


def _reraise(exc: BadTick) -> None:
    """What a sink without `bad_tick` does with a refused candle: its caller hears of it."""
    raise exc
