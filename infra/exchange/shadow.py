"""Shadow mode: LIVE orders, with the paper engine placing the same intents beside them.

Every port call goes to the live adapter, the truth for balances, orders and fills. Each order
sent for real is also placed in a SimExchange fed the same live candles and quotes; when the
live order ends, one `shadow_order` record compares intended, actual and simulated price,
quantity, fee, latency and fill. Sim refusals and shadow-side errors are recorded or logged,
never raised, and the shadow sends no extra request to the venue. See docs/shadow.md.
The record shapes are built in shadow_records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from core.clock import Clock
from core.errors import (
    DuplicateOrder,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
)
from core.models import (
    ZERO,
    Balance,
    Fill,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Quote,
    Side,
)
from core.ports import Exchange
from infra.exchange.passthrough import MarketDataPassthrough
from infra.exchange.shadow_records import BPS_QUANTUM as BPS_QUANTUM
from infra.exchange.shadow_records import NOT_PLACED as NOT_PLACED
from infra.exchange.shadow_records import REFUSED as REFUSED
from infra.exchange.shadow_records import (
    _Entry,
    _fill_data,
    _ms,
    _order_data,
    _synthetic,
)
from infra.exchange.shadow_records import slippage_bps as slippage_bps
from infra.exchange.sim import SimExchange

log = logging.getLogger("vigil.shadow")

SimFactory = Callable[[Mapping[str, Market]], SimExchange]
Record = Callable[[str, dict[str, Any]], object]

# Top-up factor of the sim wallet: covers the fee and a market buy whose price runs up
# before it fills, so the sim never refuses or expires an order for want of funds.
WALLET_HEADROOM = Decimal(2)


class ShadowObserver(Protocol):
    """Optional hook for metrics: called once per `shadow_order` record, with its data."""

    def on_shadow(self, data: Mapping[str, Any]) -> None: ...


class ShadowExchange(MarketDataPassthrough):
    """`core.ports.Exchange` over a live adapter, shadowing every order in a SimExchange.

    `record(kind, data)` receives `shadow_order`, `shadow_fill` and `shadow_evicted` records
    (the daemon passes the audit log's append). `max_orders` caps the orders remembered at once
    (the oldest is dropped with a `shadow_evicted` record). `grace_ms` is how long the sim may
    keep working after a live order filled, and how long to wait for the live fills behind a
    final status. Default: three of the sim's candles, because an order placed just after a
    candle opened can first fill on the next candle, which reaches the sim when it closes
    (up to two candles later) at the next poll of the feed.
    """

    def __init__(
        self,
        *,
        live: Exchange,
        sim_factory: SimFactory,
        clock: Clock,
        record: Record,
        monotonic: Callable[[], float] = time.monotonic,
        observer: ShadowObserver | None = None,
        max_orders: int = 1000,
        grace_ms: int | None = None,
    ) -> None:
        if max_orders <= 0:
            raise ValueError(f"max_orders must be positive, got {max_orders}")
        if grace_ms is not None and grace_ms < 0:
            raise ValueError(f"grace_ms must not be negative, got {grace_ms}")
        self.name = f"shadow({live.name})"
        self._market_data = self._live = live
        self._factory = sim_factory
        self._clock = clock
        self._record = record
        self._monotonic = monotonic
        self._observer = observer
        self._max = max_orders
        self._grace = grace_ms
        self._sim: SimExchange | None = None
        self._markets: dict[str, Market] = {}
        self._quotes: dict[str, Quote] = {}  # last live quote per symbol (bounded by markets)
        self._entries: dict[str, _Entry] = {}  # insertion order = submit order
        self._ended: set[str] = set()
        self.errors = 0  # shadow-side failures swallowed so far (logged each time)

    @property
    def tracked(self) -> int:
        """Orders remembered now (placed, record not yet written)."""
        return len(self._entries)

    def _grace_ms(self) -> int:
        if self._grace is not None:
            return self._grace
        return 3 * self._sim.timeframe_ms if self._sim is not None else 180_000

    # ---- market data: live, and fed to the sim ---------------------------------------------

    def on_candle(
        self, symbol: str, ts: int, o: float, h: float, lo: float, c: float, v: float
    ) -> None:
        """Candle listener: feeds one closed live candle to the sim (never raises)."""
        sim = self._sim
        if sim is None or symbol not in self._markets:
            return
        try:
            fills = sim.on_candle(symbol, ts, o, h, lo, c, v)
        except (ValueError, ExchangeError) as exc:
            log.debug("shadow sim skipped a candle of %s at %s: %s", symbol, ts, exc)
            return
        for f in fills:
            e = self._entries.get(f.client_order_id)
            if e is not None and e.sim_first_fill_ts is None:
                e.sim_first_fill_ts = f.ts

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        markets = await self._live.load_markets(reload)
        try:
            if self._sim is None:
                self._sim = self._factory(markets)
                # The factory may leave symbols out; those orders are recorded as refused.
                self._markets = await self._sim.load_markets()
            else:
                for sym, m in markets.items():
                    known = self._markets.get(sym)
                    if known is not None and known.status is not m.status:
                        self._sim.set_market_status(sym, m.status)
                        self._markets[sym] = m
        except Exception:  # the shadow must never stop LIVE from loading its markets
            self._failed("building the sim")
        return markets

    async def fetch_quotes(self, symbols: Sequence[str]) -> Mapping[str, Quote]:
        quotes = await self._live.fetch_quotes(symbols)
        sim = self._sim
        if sim is not None:
            for sym in symbols:
                q = quotes.get(sym)
                if q is not None and sym in self._markets and 0 < q.bid <= q.ask:
                    sim.set_quote(q)
                    self._quotes[sym] = q
        return quotes

    async def fetch_balances(self) -> dict[str, Balance]:
        return await self._live.fetch_balances()

    async def close(self) -> None:
        await self._live.close()

    # ---- orders: live, observed on the way back --------------------------------------------

    async def create_order(self, intent: OrderIntent) -> Order:
        coid = intent.client_order_id
        entry: _Entry | None = None
        if coid not in self._entries:
            try:
                entry = await self._open_entry(intent)
            except Exception:
                self._failed(f"placing {coid} in the sim")
        t0 = self._monotonic()
        try:
            order = await self._live.create_order(intent)
        except (InvalidOrder, InsufficientFunds) as exc:
            if entry is not None:
                entry.ack_latency_ms = _ms(self._monotonic() - t0)
                entry.live_error = f"{type(exc).__name__}: {exc}"
                await self._guarded(self._end(entry, OrderStatus.REJECTED), coid)
            raise
        except DuplicateOrder:
            # The venue already had this id (an earlier run sent it): nothing to compare with.
            if entry is not None:
                await self._guarded(self._forget(entry, "duplicate client order id"), coid)
            raise
        except ExchangeError as exc:
            # Outcome unknown: the engine looks the id up; fetch_order tells us how it went.
            if entry is not None:
                entry.live_error = type(exc).__name__
            raise
        if entry is not None:
            entry.ack_latency_ms = _ms(self._monotonic() - t0)
            entry.ack_filled = order.filled > 0
            await self._guarded(self._observe(order), coid)
        return order

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        order = await self._live.cancel_order(client_order_id, symbol)
        await self._guarded(self._observe(order), client_order_id)
        return order

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        try:
            order = await self._live.fetch_order(client_order_id, symbol)
        except OrderNotFound:
            e = self._entries.get(client_order_id)
            if e is not None and e.live is None and e.ack_latency_ms is None:
                # Never acknowledged and the venue does not know it: it was never placed.
                await self._guarded(self._end(e, OrderStatus.FAILED), client_order_id)
            raise
        await self._guarded(self._observe(order), client_order_id)
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        orders = await self._live.fetch_open_orders(symbol)
        for o in orders:
            await self._guarded(self._observe(o), o.client_order_id)
        # The engine asks for open orders once per cycle: the natural beat for the shadow.
        await self._guarded(self.reconcile_shadow(), "reconcile")
        return orders

    async def fetch_my_trades(
        self, symbol: str | None = None, since_ms: int | None = None
    ) -> list[Fill]:
        fills = await self._live.fetch_my_trades(symbol, since_ms)
        touched: set[str] = set()
        for f in fills:
            e = self._entries.get(f.client_order_id)
            if e is None or f.fill_id in e.fills:
                continue
            e.fills[f.fill_id] = f
            touched.add(f.client_order_id)
            self._guarded_record("shadow_fill", _fill_data(e, f))
        now = self._clock.now_ms()
        for coid in touched:
            e = self._entries.get(coid)
            if e is not None and e.ended_ms is not None:
                await self._guarded(self._settle(e, now), coid)
        return fills

    async def reconcile_shadow(self, now_ms: int | None = None) -> int:
        """Write the records of orders whose live end is known and whose wait is over.

        Called from `fetch_open_orders` (once per engine cycle); callable directly as well.
        Returns how many `shadow_order` records were written.
        """
        now = self._clock.now_ms() if now_ms is None else now_ms
        ended = [e for c, e in self._entries.items() if c in self._ended]  # oldest first
        return sum([await self._settle(e, now) for e in ended])

    # ---- the shadow side --------------------------------------------------------------------

    async def _open_entry(self, intent: OrderIntent) -> _Entry:
        quote = self._quotes.get(intent.symbol)
        if intent.order_type is OrderType.LIMIT:
            intended = intent.price
        elif quote is not None:
            intended = quote.ask if intent.side is Side.BUY else quote.bid
        else:
            intended = None
        e = _Entry(intent=intent, submitted_ms=self._clock.now_ms(), intended=intended, quote=quote)
        while len(self._entries) >= self._max:
            oldest = next(iter(self._entries.values()))
            if oldest.ended_ms is not None:
                await self._settle(oldest, e.submitted_ms, force=True)
            else:
                await self._forget(oldest, "table full")
        self._entries[intent.client_order_id] = e
        sim = self._sim
        if sim is None:
            e.sim_status, e.sim_reason = NOT_PLACED, "the sim is not built yet (no markets)"
            return e
        try:
            await self._fund(sim, intent)
            await sim.create_order(intent)
        except ExchangeError as exc:
            e.sim_status, e.sim_reason = REFUSED, f"{type(exc).__name__}: {exc}"
            log.info("shadow sim refused %s: %s", intent.client_order_id, e.sim_reason)
        return e

    async def _fund(self, sim: SimExchange, intent: OrderIntent) -> None:
        """Top the sim wallet up so this order can never be refused or cut short for funds."""
        market = self._markets.get(intent.symbol)
        if market is None:
            return  # the sim answers BadSymbol itself
        balances = await sim.fetch_balances()
        if intent.side is Side.BUY:
            ref = intent.price
            if ref is None:
                q = (await sim.fetch_quotes([intent.symbol])).get(intent.symbol)
                ref = None if q is None else q.ask
            if ref is None or ref <= 0:
                return  # a market order without a quote: the sim refuses it for that reason
            asset, need = market.quote, intent.amount * ref * WALLET_HEADROOM
        else:
            asset, need = market.base, intent.amount
        bal = balances.get(asset)
        free = bal.free if bal is not None else ZERO
        if free < need:
            sim.set_balance(asset, need)

    async def _observe(self, order: Order) -> None:
        e = self._entries.get(order.client_order_id)
        if e is None or (e.live is not None and e.live.status.is_terminal):
            return
        e.live = order
        if order.status.is_terminal:
            await self._end(e, order.status)

    async def _end(self, e: _Entry, status: OrderStatus) -> None:
        """The live order is over. Unless it filled, the sim order's life ends with it."""
        if e.ended_ms is not None:
            return
        if e.live is None or e.live.status is not status:
            e.live = _synthetic(e, status)
        e.ended_ms = self._clock.now_ms()
        self._ended.add(e.intent.client_order_id)
        if status is not OrderStatus.FILLED:
            await self._sim_order(e, cancel=True)
        await self._settle(e, e.ended_ms)

    async def _settle(self, e: _Entry, now: int, *, force: bool = False) -> bool:
        """Write the record when the live fills are in and the sim is done (or time is up)."""
        assert e.ended_ms is not None and e.live is not None
        late = force or now >= e.ended_ms + self._grace_ms()
        seen = sum((f.amount for f in e.fills.values()), ZERO)
        if seen < e.live.filled and not late:
            return False
        sim_order = await self._sim_order(e)
        if sim_order is not None and sim_order.status.is_live:
            if not late:
                return False  # the live order filled; give the sim its candles to follow
            sim_order = await self._sim_order(e, cancel=True)
        data = _order_data(e, sim_order)
        self._drop(e)
        self._guarded_record("shadow_order", data)
        if self._observer is not None:
            try:
                self._observer.on_shadow(data)
            except Exception:
                self._failed("the shadow observer")
        return True

    async def _sim_order(self, e: _Entry, *, cancel: bool = False) -> Order | None:
        """The sim's copy of the order (None if it has none); `cancel` ends it if still live."""
        if e.sim_status or self._sim is None:
            return None
        coid, symbol = e.intent.client_order_id, e.intent.symbol
        order = await self._sim.fetch_order(coid, symbol)
        if cancel and order.status.is_live:
            order = await self._sim.cancel_order(coid, symbol)
        return order

    async def _forget(self, e: _Entry, reason: str) -> None:
        await self._sim_order(e, cancel=True)
        self._drop(e)
        self._guarded_record(
            "shadow_evicted",
            {
                "client_order_id": e.intent.client_order_id,
                "symbol": e.intent.symbol,
                "submitted_ms": e.submitted_ms,
                "live_status": None if e.live is None else e.live.status.value,
                "reason": reason,
            },
        )

    def _drop(self, e: _Entry) -> None:
        coid = e.intent.client_order_id
        self._entries.pop(coid, None)
        self._ended.discard(coid)

    # ---- never let the shadow hurt the live path --------------------------------------------

    async def _guarded(self, coro: Any, what: str) -> None:
        try:
            await coro
        except Exception:
            self._failed(f"shadow bookkeeping for {what}")

    def _guarded_record(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self._record(kind, data)
        except Exception:
            self._failed(f"recording {kind}")

    def _failed(self, what: str) -> None:
        self.errors += 1
        log.exception("%s failed; live trading is unaffected", what)
