"""The engine's reads from the venue: its markets (loaded at start, asked for again once a
minute, screened for the symbols a cycle quotes), its candles (the feed into the feature bank
through the engine's sink; bad ticks rejected, recorded and counted), the cycle's quotes and
the order books of the depth check.

A part of the engine, not a component beside it: the engine owns it and calls it from its
start and its cycle. A failed read goes to the callbacks it was built with (the engine's
exchange-failure and API-error accounting) and comes back as "nothing", never as an exception;
only `load_markets` at start raises, so a start that cannot reach the venue fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from core.config import UniverseConfig
from core.errors import ExchangeError
from core.features import BadTick, FeatureBank
from core.models import Market, OrderBook, Quote
from core.ports import CandleFeed, CandleSink, Exchange
from core.universe import StaticScreen, static_screen
from runner.depth import DEPTH_LEVELS
from runner.engine_parts import EngineSink, Telemetry

log = logging.getLogger("vigil.engine")

MARKETS_CHECK_MS = 60_000


class MarketData:
    def __init__(
        self,
        *,
        universe: UniverseConfig,
        exchange: Exchange,
        feed: CandleFeed,
        bank: FeatureBank,
        listeners: Sequence[CandleSink],
        record: Callable[..., None],
        telemetry: Telemetry,
        on_failed: Callable[[int, ExchangeError], None],
        on_api_error: Callable[[int, str], None],
    ) -> None:
        """`record(kind, data)` writes an audit record (the engine's recorder);
        `on_failed(now_ms, exc)` hears of a failed read, `on_api_error(now_ms, kind)` of a
        failed order-book request (an entry refused, not the cycle's data missing)."""
        self._universe = universe
        self._exchange = exchange
        self._feed = feed
        self._record = record
        self._telemetry = telemetry
        self._on_failed = on_failed
        self._on_api_error = on_api_error
        self.sink = EngineSink(bank.pusher, listeners, self._bad_tick)
        self.markets: Mapping[str, Market] = {}
        self._markets_ms = 0
        self.screen: StaticScreen | None = None  # of self.markets; see quote_symbols
        self.bad_ticks = 0

    async def load_markets(self, now_ms: int) -> None:
        """At start: raises ExchangeError when the venue cannot be reached."""
        self.markets = await self._exchange.load_markets()
        self._markets_ms = now_ms

    async def refresh_markets(self, now_ms: int) -> None:
        """The adapter caches markets and reloads them on its own schedule; asking once a
        minute means a product whose status degrades stops being traded within a cycle or
        two of the adapter seeing it."""
        if now_ms - self._markets_ms < MARKETS_CHECK_MS:
            return
        self._markets_ms = now_ms
        try:
            self.markets = await self._exchange.load_markets()
        except ExchangeError as exc:
            self._on_failed(now_ms, exc)  # keep trading on the markets we have

    async def warmup(self, now_ms: int, bars: int) -> None:
        await self._feed.warmup(now_ms, bars, self.sink)

    async def poll(self, now_ms: int) -> int | None:
        """New candles in: how many arrived, None when the feed failed."""
        try:
            return await self._feed.poll(now_ms, self.sink)
        except ExchangeError as exc:
            self._on_failed(now_ms, exc)
            return None

    async def quotes(self, now_ms: int, held: Mapping[str, object]) -> Mapping[str, Quote] | None:
        """Quotes of the screened candidates and the held symbols; None when they failed."""
        try:
            return await self._exchange.fetch_quotes(self.quote_symbols(held))
        except ExchangeError as exc:
            self._on_failed(now_ms, exc)
            return None

    def quote_symbols(self, held: Mapping[str, object]) -> Sequence[str]:
        screen = self.screen
        if screen is None or not screen.fits(self._universe, self.markets):
            screen = self.screen = static_screen(self._universe, self.markets)
        syms = screen.symbols
        extra = [s for s in held if s not in syms]
        return [*syms, *extra] if extra else syms

    async def order_book(self, symbol: str, now_ms: int) -> OrderBook:
        """An entry candidate's book for the depth check; an empty one (the entry refused)
        when it cannot be had."""
        try:
            return await self._exchange.fetch_order_book(symbol, DEPTH_LEVELS)
        except ExchangeError as exc:
            self._on_api_error(now_ms, type(exc).__name__)
            log.warning("order book of %s unavailable (%s): entry refused", symbol, exc)
            return OrderBook(symbol=symbol, bids=(), asks=(), ts=now_ms)

    def _bad_tick(self, exc: BadTick) -> None:
        self.bad_ticks += 1
        log.warning("bad tick rejected: %s", exc)
        self._record(
            "bad_tick",
            {"symbol": exc.symbol, "ts": exc.ts, "reason": exc.reason, "detail": exc.detail},
        )
        self._telemetry.event("bad_tick", reason=exc.reason)
