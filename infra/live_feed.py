"""Closed candles polled from an exchange through the Exchange port, every cycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from core.clock import timeframe_ms
from core.errors import ExchangeError
from core.models import Candle
from core.ports import CandleSink, Exchange

log = logging.getLogger("vigil.feed")


class ExchangeFeed:
    """Each poll asks every symbol for candles since the last one delivered and hands on
    those that have closed (open time + timeframe <= now), oldest first, symbols in sorted
    order so delivery never depends on which request answered first."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        symbols: Callable[[], Sequence[str]],
        timeframe: str,
        concurrency: int = 4,
        page: int = 100,
    ) -> None:
        self.timeframe = timeframe
        self.timeframe_ms = timeframe_ms(timeframe)
        self._ex = exchange
        self._symbols = symbols
        self._sem = asyncio.Semaphore(concurrency)
        self._page = page
        self.last: dict[str, int] = {}  # open time of the last candle delivered
        self.errors = 0

    async def _fetch(self, symbol: str, since: int, limit: int) -> list[Candle]:
        async with self._sem:
            return await self._ex.fetch_ohlcv(symbol, self.timeframe, since, limit)

    async def collect(
        self,
        now_ms: int,
        since_of: Callable[[str], int],
        limit: int,
        symbols: Sequence[str] | None = None,
    ) -> list[tuple[str, list[Candle]]]:
        syms = sorted(set(self._symbols() if symbols is None else symbols))
        results = await asyncio.gather(
            *(self._fetch(s, since_of(s), limit) for s in syms), return_exceptions=True
        )
        out: list[tuple[str, list[Candle]]] = []
        failures: list[BaseException] = []
        for sym, res in zip(syms, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, ExchangeError):
                    raise res
                failures.append(res)
                continue
            out.append((sym, res))
        self.errors += len(failures)
        if failures and not out:
            raise failures[0]  # the whole feed is down: let the engine say so
        for f in failures[:3]:
            log.warning("candles: %s: %s", type(f).__name__, f)
        return out

    def _deliver(
        self, batches: list[tuple[str, list[Candle]]], now_ms: int, sink: CandleSink
    ) -> int:
        tf = self.timeframe_ms
        n = 0
        for sym, candles in batches:
            last = self.last.get(sym, -1)
            for c in sorted(candles, key=lambda c: c.ts):
                if c.ts <= last or c.ts + tf > now_ms:
                    continue  # already delivered, or still forming
                sink(
                    sym,
                    c.ts,
                    float(c.open),
                    float(c.high),
                    float(c.low),
                    float(c.close),
                    float(c.volume),
                )
                last = c.ts
                n += 1
            if last >= 0:
                self.last[sym] = last
        return n

    async def warmup(self, start_ms: int, bars: int, sink: CandleSink) -> int:
        tf = self.timeframe_ms
        since = start_ms - (bars + 1) * tf
        batches = await self.collect(start_ms, lambda s: since, min(bars + 2, 1000))
        return self._deliver(batches, start_ms, sink)

    async def poll(self, now_ms: int, sink: CandleSink) -> int:
        tf = self.timeframe_ms

        def since(sym: str) -> int:
            last = self.last.get(sym)
            return now_ms - 3 * tf if last is None else last + tf

        batches = await self.collect(now_ms, since, self._page)
        return self._deliver(batches, now_ms, sink)
