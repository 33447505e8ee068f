"""Market data over the venue's WebSocket streams (ccxt.pro), beside the cycle's REST calls.

`StreamFeed` is the engine's candle feed when streams are on. Closed klines (`x: true`) are
buffered as they arrive and handed to the candle step at each cycle, by open time then symbol,
each symbol's candles exactly once (deduplicated by open time). A symbol whose stream
reconnected, or whose next streamed candle leaves a hole, is backfilled over REST before
anything newer is delivered, so indicator state never skips or repeats a candle.

Prices (bookTicker, trade) go at once to the `on_price` given to `run`: the fast exits
(runner/fast_exits.py).

A symbol is stale when nothing arrived for it for `staleness_seconds`: its candles stop, so
its data ages and the stale-data breaker trips as for a silent REST feed; when every subscribed
symbol is stale the connections are dropped and opened again. After `fallback_after_failures`
failed connections in a row (or when the venue has no stream support here) the feed polls
REST, says so in the log and /health, and keeps trying the streams at the longest backoff.
docs/streams.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from core.errors import ExchangeError
from core.models import Candle, Quote
from infra.live_feed import ExchangeFeed

log = logging.getLogger("vigil.streams")

# Venues whose raw stream messages this module reads (the kline's closed flag `x`, bookTicker,
# trade). Per venue: streams one connection carries as ccxt splits them, and connections.
# Binance allows 1024 streams per connection; ccxt puts at most 200 on one and opens up to 50.
VENUES: dict[str, tuple[int, int]] = {"binance": (200, 50)}
KINDS = 3  # kline, bookTicker, trade per symbol
CHUNK = 200  # ccxt's watch*ForSymbols take 200 symbols at most per call


def capacity(exchange_id: str) -> int:
    """Symbols the streams can carry on `exchange_id` (0: no stream support here)."""
    per_conn, conns = VENUES.get(exchange_id, (0, 0))
    return (conns // KINDS) * per_conn


@dataclass
class StreamStats:
    # starting | connecting | streaming | rest_fallback | refused | stopped
    state: str = "starting"
    detail: str = ""
    messages: int = 0
    reconnects: int = 0
    backfills: int = 0
    lag_ms: float = 0.0  # local receive time minus the venue's event time, last message
    symbols: int = 0
    stale: list[str] = field(default_factory=list)  # the first 20, for /health
    stale_count: int = 0
    rate: float = 0.0  # messages per second over the last few seconds


PriceSink = Callable[[str, Quote], Any]


class StreamFeed:
    """A CandleFeed over streams, with REST for warm-up, backfill and fallback."""

    def __init__(
        self,
        *,
        rest: ExchangeFeed,
        exchange_id: str,
        client_factory: Callable[[], Any],
        symbols: Callable[[], Sequence[str]],
        now_ms: Callable[[], int],
        staleness_s: float,
        backoff_min_s: float,
        backoff_max_s: float,
        fallback_after: int,
        rng: random.Random,
    ) -> None:
        self.rest = rest
        self.timeframe = rest.timeframe
        self.timeframe_ms = rest.timeframe_ms
        self.stats = StreamStats()
        self._price_sink: PriceSink | None = None  # given to `run`
        self._id = exchange_id
        self._factory = client_factory
        self._symbols = symbols
        self._now_ms = now_ms
        self._stale_s = staleness_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._fallback_after = fallback_after
        self._rng = rng
        self._closed: dict[str, dict[int, Candle]] = {}  # symbol -> open time -> closed candle
        self._seen: dict[str, float] = {}  # symbol -> monotonic time of its last message
        self._dirty: set[str] = set()  # reconnected since: backfill over REST once fresh
        self._quotes: dict[str, Quote] = {}
        self._subscribed: tuple[str, ...] = ()
        self._wanted: frozenset[str] = frozenset()  # the same, for lookups per message
        self._client: Any = None
        self._conn_t0 = 0.0
        self._window: list[tuple[float, int]] = []
        self._markets: Any = None

    # ---- the engine's side: CandleFeed ----------------------------------------------------

    @property
    def streaming(self) -> bool:
        """Candles come from the streams (also while a connection is being reopened: the
        symbols' staleness, not the connection state, decides what is delivered)."""
        return self.stats.state in ("streaming", "connecting")

    async def warmup(self, start_ms: int, bars: int, sink: Any) -> int:
        return await self.rest.warmup(start_ms, bars, sink)

    def is_stale(self, symbol: str, mono: float | None = None) -> bool:
        seen = self._seen.get(symbol)
        return seen is None or (mono or time.monotonic()) - seen > self._stale_s

    async def poll(self, now_ms: int, sink: Any) -> int:
        if not self.streaming:
            return await self.rest.poll(now_ms, sink)
        tf = self.timeframe_ms
        last = self.rest.last
        mono = time.monotonic()
        backfill: list[str] = []
        streamed: list[tuple[str, list[Candle]]] = []
        for sym in self._subscribed:
            if self.is_stale(sym, mono):
                continue  # silent: deliver nothing, let the data age
            got = sorted(self._closed.get(sym, {}).values(), key=lambda c: c.ts)
            prev = last.get(sym)
            hole = prev is not None and got and got[0].ts > prev + tf
            grace = max(tf, 2_000)  # a closed kline may arrive a moment after the close
            due_missing = prev is not None and not got and prev + 2 * tf + grace <= now_ms
            if sym in self._dirty or hole or prev is None or due_missing:
                backfill.append(sym)
            else:
                streamed.append((sym, got))
        batches = list(streamed)
        if backfill:
            self.stats.backfills += len(backfill)

            def since(sym: str) -> int:
                prev = last.get(sym)
                return now_ms - 3 * tf if prev is None else prev + tf

            got_rest = await self._collect(backfill, now_ms, since)
            for sym, candles in got_rest:
                extra = list(self._closed.get(sym, {}).values())
                batches.append((sym, candles + extra))
                self._dirty.discard(sym)
        n = self._deliver(batches, now_ms, sink)
        for sym in self._subscribed:
            keep = self._closed.get(sym)
            if keep:
                floor = last.get(sym, -1)
                for ts in [t for t in keep if t <= floor]:
                    del keep[ts]
        return n

    async def _collect(
        self, syms: list[str], now_ms: int, since: Callable[[str], int]
    ) -> list[tuple[str, list[Candle]]]:
        try:
            return await self.rest.collect(now_ms, since, 1000, symbols=syms)
        except ExchangeError as exc:
            log.warning("stream backfill over REST failed (%s); retrying next cycle", exc)
            return []

    def _deliver(self, batches: list[tuple[str, list[Candle]]], now_ms: int, sink: Any) -> int:
        """Every candle not delivered yet and closed by now, by open time then symbol."""
        tf = self.timeframe_ms
        last = self.rest.last
        rows: dict[tuple[int, str], Candle] = {}
        for sym, candles in batches:
            floor = last.get(sym, -1)
            for c in candles:
                if c.ts > floor and c.ts + tf <= now_ms:
                    rows[(c.ts, sym)] = c  # a duplicate message lands on the same key
        for (ts, sym), c in sorted(rows.items()):
            sink(
                sym, ts, float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)
            )
            last[sym] = ts
        return len(rows)

    # ---- the stream side ----------------------------------------------------------------------

    def _msg(self, sym: str, event_ms: int | None) -> None:
        mono = time.monotonic()
        if self.is_stale(sym, mono) and sym in self._seen:
            self._dirty.add(sym)  # silent for a while: what it missed comes over REST
        self._seen[sym] = mono
        self.stats.messages += 1
        if self.stats.state in ("rest_fallback", "connecting") and self._client is not None:
            if self.stats.state == "rest_fallback":
                log.warning("streams: back; candles come from the streams again")
            self._set("streaming", f"{len(self._subscribed)} symbols")
        if event_ms:
            self.stats.lag_ms = float(self._now_ms() - event_ms)

    def _symbol_of(self, client: Any, market_id: Any) -> str | None:
        if not isinstance(market_id, str):
            return None
        try:
            return str(client.safe_symbol(market_id, None, None, "spot"))
        except Exception:
            return None

    def _on_kline(self, ex: Any, msg: Any) -> None:
        k = msg.get("k") if isinstance(msg, dict) else None
        if not isinstance(k, dict):
            return
        sym = self._symbol_of(ex, k.get("s"))
        if sym is None or sym not in self._wanted:
            return
        self._msg(sym, msg.get("E"))
        if k.get("x") is not True or k.get("i") != self.timeframe:
            return  # still forming, or another timeframe
        try:
            c = Candle(
                ts=int(k["t"]),
                open=Decimal(k["o"]),
                high=Decimal(k["h"]),
                low=Decimal(k["l"]),
                close=Decimal(k["c"]),
                volume=Decimal(k["v"]),
            )
        except (KeyError, TypeError, ValueError, InvalidOperation):
            log.warning("stream: unreadable kline for %s dropped; REST fills it in", sym)
            self._dirty.add(sym)
            return
        self._closed.setdefault(sym, {})[c.ts] = c

    def _on_price(self, ex: Any, msg: Any, kind: str) -> None:
        if not isinstance(msg, dict):
            return
        sym = self._symbol_of(ex, msg.get("s"))
        if sym is None or sym not in self._wanted:
            return
        self._msg(sym, msg.get("E"))
        prev = self._quotes.get(sym)
        try:
            if kind == "trade":
                last = Decimal(msg["p"])
                bid, ask = (prev.bid, prev.ask) if prev else (last, last)
            else:
                bid, ask = Decimal(msg["b"]), Decimal(msg["a"])
                last = prev.last if prev else (bid + ask) / 2
        except (KeyError, TypeError, ValueError, InvalidOperation):
            return
        q = Quote(symbol=sym, bid=bid, ask=ask, last=last, ts=self._now_ms())
        self._quotes[sym] = q
        if self._price_sink is not None:
            self._price_sink(sym, q)

    def _make_client(self) -> Any:
        ex = self._factory()
        if self._markets:
            # A reconnect reuses the markets: exchangeInfo is heavy (weight and megabytes).
            ex.set_markets(self._markets)
        orig_kline, orig_trade, orig_ba = ex.handle_ohlcv, ex.handle_trade, ex.handle_bids_asks

        def kline(client: Any, message: Any) -> Any:
            self._on_kline(ex, message)
            return orig_kline(client, message)

        def trade(client: Any, message: Any) -> Any:
            self._on_price(ex, message, "trade")
            return orig_trade(client, message)

        def bids_asks(client: Any, message: Any) -> Any:
            self._on_price(ex, message, "book")
            return orig_ba(client, message)

        # ccxt looks these up on the instance for every message (handle_message)
        ex.handle_ohlcv, ex.handle_trade, ex.handle_bids_asks = kline, trade, bids_asks
        return ex

    async def _watch(self, ex: Any, syms: list[str]) -> None:
        """Keep one set of subscriptions open; returns or raises when the connection ends."""
        tf = self.timeframe
        tasks: list[Any] = []
        for i in range(0, len(syms), CHUNK):
            part = syms[i : i + CHUNK]
            tasks.append(self._loop(ex.watch_ohlcv_for_symbols, [[s, tf] for s in part]))
            tasks.append(self._loop(ex.watch_bids_asks, part))
            tasks.append(self._loop(ex.watch_trades_for_symbols, part))
        tasks.append(self._watchdog(syms))
        running = [asyncio.create_task(c) for c in tasks]
        try:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
        finally:
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    @staticmethod
    async def _loop(fn: Callable[[Any], Any], arg: Any) -> None:
        while True:
            await fn(arg)

    async def _watchdog(self, syms: list[str]) -> None:
        """Ends the connection when every symbol has been silent too long, or the symbol set
        changed; both reconnect (and resubscribe) in `run`."""
        while True:
            await asyncio.sleep(min(1.0, self._stale_s / 4))
            mono = time.monotonic()
            self._tick_rate(mono)
            stale = [s for s in syms if self.is_stale(s, mono)]
            self.stats.stale = stale[:20]
            self.stats.stale_count = len(stale)
            if len(stale) == len(syms) and mono - self._conn_t0 > self._stale_s:
                raise StreamStalled(f"no message on any stream for {self._stale_s:g}s")
            if tuple(sorted(set(self._symbols()))) != self._subscribed:
                return

    def _tick_rate(self, mono: float) -> None:
        self._window.append((mono, self.stats.messages))
        while len(self._window) > 2 and mono - self._window[0][0] > 5:
            self._window.pop(0)
        t0, m0 = self._window[0]
        if mono > t0:
            self.stats.rate = (self.stats.messages - m0) / (mono - t0)

    async def run(self, stop: asyncio.Event, on_price: PriceSink | None = None) -> None:
        """Connect, subscribe, reconnect with jittered backoff, fall back to REST; until stop.
        Every streamed price goes to `on_price(symbol, quote)` meanwhile."""
        self._price_sink = on_price
        cap = capacity(self._id)
        if cap == 0:
            self._set("rest_fallback", f"no stream support for {self._id} here; polling REST")
            log.warning("streams: %s", self.stats.detail)
            return
        failures = 0
        while not stop.is_set():
            syms = tuple(sorted(set(self._symbols())))
            self.stats.symbols = len(syms)
            if len(syms) > cap:
                self._set(
                    "refused",
                    f"{len(syms)} symbols, over the {cap} the streams carry on {self._id}",
                )
                log.error("streams: %s; polling REST instead (docs/streams.md)", self.stats.detail)
                return
            if not syms:
                await _wait(stop, 1.0)
                continue
            self._subscribed, self._wanted = syms, frozenset(syms)
            self._dirty |= set(syms)
            if failures < self._fallback_after:
                self._set("connecting", f"{len(syms)} symbols")
            before = self.stats.messages
            why = await self._session(syms, stop)
            if stop.is_set():
                break
            failures = 0 if self.stats.messages > before else failures + 1
            self.stats.reconnects += 1
            if failures >= self._fallback_after:
                if self.stats.state != "rest_fallback":
                    log.error(
                        "streams: %d failed connections in a row (%s); polling REST instead, "
                        "retrying the streams with backoff up to %.0fs",
                        failures,
                        why,
                        self._backoff[1],
                    )
                self._set("rest_fallback", f"streams failing ({why}); polling REST")
            elif why:
                log.warning("streams: reconnecting (%s)", why)
            delay = min(self._backoff[1], self._backoff[0] * 2.0**failures) if why else 0.0
            await _wait(stop, delay * self._rng.uniform(0.5, 1.0))
        self._set("stopped", "")

    async def _session(self, syms: tuple[str, ...], stop: asyncio.Event) -> str:
        """One connection's life; returns why it ended ("" when the symbols changed)."""
        self._client = client = self._make_client()
        self._conn_t0 = time.monotonic()
        log.info(
            "streams: subscribing %d symbols (kline_%s, bookTicker, trade)",
            len(syms),
            self.timeframe,
        )
        watch = asyncio.create_task(self._watch(client, list(syms)))
        stopping = asyncio.create_task(stop.wait())
        why = ""
        try:
            await asyncio.wait({watch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and not watch.cancelled():
                exc = watch.exception()
                if exc is not None:
                    why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
        finally:
            for t in (watch, stopping):
                t.cancel()
            with contextlib.suppress(BaseException):
                await watch
            self._client = None
            if getattr(client, "markets", None):
                self._markets = client.markets
            with contextlib.suppress(Exception):
                await client.close()
        return why

    def _set(self, state: str, detail: str) -> None:
        self.stats.state = state
        self.stats.detail = detail


class StreamStalled(ConnectionError):
    pass


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
