"""Shadow mode: LIVE orders, with the paper engine placing the same intents beside them.

Every port call goes to the live adapter, the truth for balances, orders and fills. Each order
sent for real is also placed in a SimExchange fed the same live candles and quotes; when the
live order ends, one `shadow_order` record compares intended, actual and simulated price,
quantity, fee, latency and fill. Sim refusals and shadow-side errors are recorded or logged,
never raised, and the shadow sends no extra request to the venue. See docs/shadow.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
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
    BPS,
    ZERO,
    Balance,
    Candle,
    Fill,
    Market,
    Order,
    OrderBook,
    OrderIntent,
    OrderStatus,
    OrderType,
    Quote,
    Side,
)
from core.orders import new_order
from core.ports import Exchange
from infra.exchange.sim import SimExchange

log = logging.getLogger("vigil.shadow")

SimFactory = Callable[[Mapping[str, Market]], SimExchange]
Record = Callable[[str, dict[str, Any]], object]

BPS_QUANTUM = Decimal("0.01")
REFUSED = "REFUSED"  # sim status: the sim would not take the order (reason in sim.reason)
NOT_PLACED = "NOT_PLACED"  # sim status: never placed (the sim was not built yet)
# Top-up factor of the sim wallet: covers the fee and a market buy whose price runs up
# before it fills, so the sim never refuses or expires an order for want of funds.
WALLET_HEADROOM = Decimal(2)


class ShadowObserver(Protocol):
    """Optional hook for metrics: called once per `shadow_order` record, with its data."""

    def on_shadow(self, data: Mapping[str, Any]) -> None: ...


@dataclass(slots=True)
class _Entry:
    """What the shadow remembers about one order until its record is written."""

    intent: OrderIntent
    submitted_ms: int
    intended: Decimal | None
    quote: Quote | None
    sim_status: str = ""  # "" while placed in the sim, else REFUSED / NOT_PLACED
    sim_reason: str = ""
    sim_first_fill_ts: int | None = None
    ack_latency_ms: int | None = None
    ack_filled: bool = False
    live: Order | None = None
    live_error: str = ""
    fills: dict[str, Fill] = field(default_factory=dict)
    ended_ms: int | None = None  # when the live end was first seen


class ShadowExchange:
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
        self._live = live
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

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[Candle]:
        return await self._live.fetch_ohlcv(symbol, timeframe, since_ms, limit)

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        return await self._live.fetch_order_book(symbol, limit)

    async def fetch_fees(self) -> dict[str, tuple[Decimal, Decimal]]:
        return await self._live.fetch_fees()

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


# ---- record shapes ---------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _s(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def slippage_bps(side: Side, price: Decimal, ref: Decimal) -> Decimal:
    """How much worse than `ref` the price is for us, in bps (buy higher / sell lower > 0)."""
    diff = price - ref if side is Side.BUY else ref - price
    return (diff / ref * BPS).quantize(BPS_QUANTUM, ROUND_HALF_UP)


def _synthetic(e: _Entry, status: OrderStatus) -> Order:
    """The live order as far as we know it, when the venue never answered with one."""
    return replace(new_order(e.intent, e.submitted_ms), status=status, reason=e.live_error)


def _live_numbers(e: _Entry) -> tuple[Decimal, Decimal | None, Decimal, int | None]:
    """filled, avg price, fee, first fill ts: from the fills when they cover the order's
    filled amount (orders often carry no fee), else from the order as the venue reported it."""
    assert e.live is not None
    fills = list(e.fills.values())
    qty = sum((f.amount for f in fills), ZERO)
    first_ts = min((f.ts for f in fills), default=None)
    if fills and qty >= e.live.filled:
        notional = sum((f.price * f.amount for f in fills), ZERO)
        return qty, notional / qty, sum((f.fee for f in fills), ZERO), first_ts
    o = e.live
    avg = o.avg_fill_price if o.filled > 0 and o.avg_fill_price > 0 else None
    return o.filled, avg, max(o.fee, sum((f.fee for f in fills), ZERO)), first_ts


def _order_data(e: _Entry, sim: Order | None) -> dict[str, Any]:
    assert e.live is not None
    i = e.intent
    filled, avg, fee, first_ts = _live_numbers(e)
    if e.ack_filled and e.ack_latency_ms is not None:
        first_fill: int | None = e.ack_latency_ms  # it had filled before the answer came back
    elif first_ts is not None and filled > 0:
        first_fill = max(0, first_ts - e.submitted_ms)
    else:
        first_fill = None
    sim_avg = sim.avg_fill_price if sim is not None and sim.filled > 0 else None
    ref = e.intended
    slip = slippage_bps(i.side, avg, ref) if avg is not None and ref else None
    sim_slip = slippage_bps(i.side, sim_avg, ref) if sim_avg is not None and ref else None
    gap: Decimal | None = None
    if slip is not None and sim_slip is not None:
        gap = slip - sim_slip  # both from the intended price, so they subtract exactly
    elif avg is not None and sim_avg is not None:
        gap = slippage_bps(i.side, avg, sim_avg)  # no intended price: the sim's is the yardstick
    sim_first = e.sim_first_fill_ts
    q = e.quote
    return {
        "client_order_id": i.client_order_id,
        "symbol": i.symbol,
        "side": i.side.value,
        "type": i.order_type.value,
        "post_only": i.post_only,
        "strategy": i.strategy,
        "submitted_ms": e.submitted_ms,
        "ended_ms": e.ended_ms,
        "intended_price": _s(ref),
        "intended_qty": str(i.amount),
        "quote": None if q is None else {"bid": str(q.bid), "ask": str(q.ask), "ts": q.ts},
        "live": {
            "status": e.live.status.value,
            "filled": str(filled),
            "avg_price": _s(avg),
            "fee": str(fee),
            "ack_latency_ms": e.ack_latency_ms,
            "first_fill_latency_ms": first_fill,
            "fills": len(e.fills),
            "error": e.live_error,
        },
        "sim": {
            "status": e.sim_status or (sim.status.value if sim is not None else NOT_PLACED),
            "filled": str(sim.filled) if sim is not None else "0",
            "avg_price": _s(sim_avg),
            "fee": str(sim.fee) if sim is not None else "0",
            "first_fill_latency_ms": (
                None if sim_first is None or sim_avg is None else max(0, sim_first - e.submitted_ms)
            ),
            "reason": e.sim_reason,
        },
        "slippage_bps": _s(slip),
        "sim_slippage_bps": _s(sim_slip),
        "sim_vs_live_bps": _s(gap),
    }


def _fill_data(e: _Entry, f: Fill) -> dict[str, Any]:
    ref = e.intended
    return {
        "client_order_id": f.client_order_id,
        "fill_id": f.fill_id,
        "symbol": f.symbol,
        "side": f.side.value,
        "price": str(f.price),
        "amount": str(f.amount),
        "fee": str(f.fee),
        "liquidity": f.liquidity.value,
        "ts": f.ts,
        "since_submit_ms": f.ts - e.submitted_ms,
        "intended_price": _s(ref),
        "slippage_bps": _s(slippage_bps(f.side, f.price, ref) if ref else None),
    }
