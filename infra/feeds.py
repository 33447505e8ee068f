"""Candle feeds: where closed candles come from. The engine asks `poll(now)` every cycle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.candles import CandleSeries
from core.features import BadTick
from core.ports import CandleSink

try:
    from infra import _replay  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the Python loop below does the same
    _replay = None

COMPILED = _replay is not None

# Rows turned into Python lists at a time: indexing lists is several times cheaper than numpy
# scalars in a loop, and converting in chunks keeps a 15-pair replay's memory small.
CHUNK = 4096

_Cols = tuple[list[int], list[float], list[float], list[float], list[float], list[float]]


class _Cursor:
    __slots__ = ("base", "cols", "n", "parts", "pos", "series", "sink")
    # While a compiled loop is bound (ReplayFeed._bound), it holds the position in the chunk
    # and `pos` is brought up to date by ReplayFeed._unbind.

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

    def __init__(
        self, series: Mapping[str, CandleSeries], *, timeframe_ms: int, compiled: bool = True
    ) -> None:
        self.timeframe_ms = timeframe_ms
        self.symbols = tuple(sorted(series))
        self._cur = {s: _Cursor(series[s]) for s in self.symbols}
        self._curs = [self._cur[s] for s in self.symbols]
        self._next: int | None = None
        self._next_valid = False  # poll recomputes the next close while it walks the data
        # The compiled delivery loop (infra/_replay.c) serves engine sinks when it was built.
        self.compiled = compiled and COMPILED
        self._bound: tuple[object, Any] | None = None  # (sink, its _replay.Replay)

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
        self._unbind()
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
        bad = getattr(sink, "bad_tick", None)
        if parts_of is not None and self.compiled:
            return self._poll_compiled(limit, sink)
        self._unbind()
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

    def _poll_compiled(self, limit: int, sink: Any) -> int:
        """The loop above, in C: same calls, same order (tests/infra/test_feeds.py)."""
        bound = self._bound
        if bound is None or bound[0] is not sink:
            self._unbind()
            bound = self._bind(sink)
        rep = bound[1]
        delivered, nxt, ran_out = rep.poll(limit)
        while ran_out:  # chunks used up: load the next ones and deliver what they hold
            for i in ran_out:
                cur = self._curs[i]
                cur.pos = cur.base + len(cur.cols[0])
                if cur.pos < cur.n:
                    cur.load(cur.pos)
                    rep.load(i, 0, *cur.cols)
            more, nxt, ran_out = rep.poll(limit)
            delivered += more
        self._next = None if nxt is None else nxt + self.timeframe_ms
        self._next_valid = True
        return int(delivered)

    def _bind(self, sink: Any) -> tuple[object, Any]:
        assert _replay is not None
        rep = _replay.Replay(self.symbols, BadTick, sink.bad_tick)
        for i, cur in enumerate(self._curs):
            step, listener = sink.parts(self.symbols[i])
            rep.bind(i, step, listener)
            if cur.pos - cur.base >= len(cur.cols[0]) and cur.pos < cur.n:
                cur.load(cur.pos)
            rep.load(i, cur.pos - cur.base, *cur.cols)
        self._bound = (sink, rep)
        return self._bound

    def _unbind(self) -> None:
        """Hand the positions back from the compiled loop to the cursors."""
        if self._bound is None:
            return
        rep = self._bound[1]
        for i, cur in enumerate(self._curs):
            cur.pos = cur.base + rep.position(i)
        self._bound = None

    def seek(self, start_ms: int) -> None:
        """Skip candles closed before `start_ms` without delivering them."""
        self._unbind()
        limit = start_ms - self.timeframe_ms
        for cur in self._cur.values():
            cur.pos = max(cur.pos, int(np.searchsorted(cur.series.ts, limit, side="left")))
            cur.load(cur.pos)
        self._next_valid = False
