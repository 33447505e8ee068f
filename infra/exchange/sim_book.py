"""Internals of the simulated exchange: per-symbol books, mutable order records, price rounding.

Nothing here is public API; `infra.exchange.sim.SimExchange` is the adapter others use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from core.models import (
    ONE,
    ZERO,
    BookLevel,
    Candle,
    Fill,
    Liquidity,
    Market,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    Quote,
    QuoteBoard,
    Side,
)

FEE_QUANTUM = Decimal("1e-8")
NEVER = -(2**63)  # last_ts before any candle: every real timestamp is newer

# One candle as fed to on_candle: (open_ts, open, high, low, close, volume), floats as given.
CandleRow = tuple[int, float, float, float, float, float]


def to_dec(x: float) -> Decimal:
    # repr gives the shortest string that round-trips, so 0.1 becomes Decimal("0.1"),
    # not the 55-digit binary expansion Decimal(0.1) would give.
    return Decimal(repr(x))


def floor_to(x: Decimal, inc: Decimal) -> Decimal:
    return (x / inc).to_integral_value(ROUND_FLOOR) * inc


def ceil_to(x: Decimal, inc: Decimal) -> Decimal:
    return (x / inc).to_integral_value(ROUND_CEILING) * inc


def on_grid(x: Decimal, inc: Decimal) -> bool:
    return x % inc == 0


def quantize_fee(x: Decimal) -> Decimal:
    return x.quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)


def taker_price(
    side: Side, px: float, high: float, low: float, inc: Decimal, limit: Decimal | None
) -> Decimal:
    """A taker fill price on the grid: rounded against us, but kept inside [low, high].

    `px` already carries the slippage. A limit order never fills beyond its limit price.
    """
    px = min(max(px, low), high)
    lo, hi = to_dec(low), to_dec(high)
    if side is Side.BUY:
        p = ceil_to(to_dec(px), inc)
        if p > hi:
            p = floor_to(to_dec(px), inc)
        if limit is not None and p > limit:
            p = limit
    else:
        p = floor_to(to_dec(px), inc)
        if p < lo:
            p = ceil_to(to_dec(px), inc)
        if limit is not None and p < limit:
            p = limit
    return p


def slipped_price(
    side: Side,
    o: float,
    h: float,
    lo: float,
    inc: Decimal,
    limit: Decimal | None,
    u: float,
    slip_bps: float,
    vol_mult: float,
) -> Decimal:
    """A taker fill at the open, moved against the taker by `slip_bps` plus `vol_mult` times
    the candle's range in bps, scaled by `u` (the sim's random draw in [0.5, 1])."""
    slip = (slip_bps + vol_mult * (h - lo) / o * 10_000 * u) / 10_000
    if side is Side.BUY:
        px = o * (1 + slip)
        if limit is not None:
            px = min(px, float(limit))
    else:
        px = o * (1 - slip)
        if limit is not None:
            px = max(px, float(limit))
    return taker_price(side, px, h, lo, inc, limit)


def affordable(qty: Decimal, px: Decimal, rate: Decimal, avail: Decimal, inc: Decimal) -> Decimal:
    """The largest quantity on the grid, at most `qty`, whose notional plus fee fits `avail`."""
    q = min(qty, floor_to(avail / (px * (ONE + rate)), inc))
    while q > 0 and px * q + quantize_fee(px * q * rate) > avail:
        q -= inc
    return max(q, ZERO)


def synthetic_book(quote: Quote, market: Market, level_size: float, levels: int) -> OrderBook:
    """`levels` levels per side, one price increment apart, starting at the quote."""
    inc = market.price_increment
    size = floor_to(to_dec(level_size), market.amount_increment)
    bids = tuple(
        BookLevel(price=quote.bid - i * inc, amount=size)
        for i in range(levels)
        if quote.bid - i * inc > 0
    )
    asks = tuple(BookLevel(price=quote.ask + i * inc, amount=size) for i in range(levels))
    return OrderBook(symbol=market.symbol, bids=bids, asks=asks, ts=quote.ts)


@lru_cache(maxsize=1024)
def is_pow10(inc: Decimal) -> bool:
    """A power-of-ten grid (0.01, 1, 1e-8): `quantize` can round to it in one step."""
    return inc.as_tuple().digits == (1,)


def candle_quote(market: Market, row: CandleRow, half_spread: Decimal, tf_ms: int) -> Quote:
    inc = market.price_increment
    if is_pow10(inc):
        return _pow10_quote(market, row, half_spread, tf_ms)
    close = to_dec(row[4])
    bid = floor_to(close * (1 - half_spread), inc)
    ask = ceil_to(close * (1 + half_spread), inc)
    if bid <= 0:
        bid = inc
    if ask - bid < inc:  # a zero spread would make every post-only order cross
        ask = bid + inc
    last = min(max((close / inc).to_integral_value() * inc, bid), ask)
    return Quote(symbol=market.symbol, bid=bid, ask=ask, last=last, ts=row[0] + tf_ms)


def _pow10_quote(market: Market, row: CandleRow, half_spread: Decimal, tf_ms: int) -> Quote:
    """candle_quote for a power-of-ten price grid (nearly every venue): `quantize` does the
    rounding in one step each, where the general path divides and multiplies."""
    inc = market.price_increment
    close = to_dec(row[4])
    bid = (close * (1 - half_spread)).quantize(inc, ROUND_FLOOR)
    ask = (close * (1 + half_spread)).quantize(inc, ROUND_CEILING)
    if bid <= 0:
        bid = inc
    if ask - bid < inc:
        ask = bid + inc
    last = close.quantize(inc, ROUND_HALF_EVEN)
    last = bid if last < bid else ask if last > ask else last
    return Quote(symbol=market.symbol, bid=bid, ask=ask, last=last, ts=row[0] + tf_ms)


def candle_last(market: Market, row: CandleRow) -> Decimal:
    """candle_quote(...).last without the bid and ask: the close on the price grid. The
    quote's clamp to [bid, ask] can only bind when the close rounds to zero (the bid is then
    raised to one increment), because bid <= close <= ask before rounding."""
    inc = market.price_increment
    close = to_dec(row[4])
    if is_pow10(inc):
        last = close.quantize(inc, ROUND_HALF_EVEN)
    else:
        last = (close / inc).to_integral_value() * inc
    return inc if last < inc else last


def float_spread_bps(close: float, half_spread: float, inc: float) -> float:
    """What candle_quote's Decimal spread comes to, computed in float."""
    bid = math.floor(close * (1.0 - half_spread) / inc) * inc
    ask = math.ceil(close * (1.0 + half_spread) / inc) * inc
    if bid <= 0:
        bid = inc
    if ask - bid < inc * 0.999999:
        ask = bid + inc
    return (ask - bid) / ((ask + bid) / 2.0) * 10_000.0


class SimQuoteBoard(QuoteBoard):
    """Quotes built on first access: a backtest screens every symbol's spread each cycle but
    needs a full Decimal quote only for the few it trades or holds. Valid for the cycle it
    was fetched in."""

    __slots__ = ("_books", "_half", "_half_f", "_tf")

    def __init__(self, books: dict[str, SymbolBook], half_spread: Decimal, tf_ms: int) -> None:
        super().__init__({})
        self._books = books
        self._half = half_spread
        self._half_f = float(half_spread)
        self._tf = tf_ms

    def __getitem__(self, symbol: str) -> Quote:
        book = self._books.get(symbol)
        q = None if book is None else book.quote(self._half, self._tf)
        if q is None:
            raise KeyError(symbol)
        return q

    def __iter__(self) -> Iterator[str]:
        return (s for s, b in self._books.items() if b.history or b.pushed is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, symbol: object) -> bool:
        b = self._books.get(symbol) if isinstance(symbol, str) else None
        return b is not None and (bool(b.history) or b.pushed is not None)

    def last(self, symbol: str) -> Decimal | None:
        book = self._books.get(symbol)
        return None if book is None else book.last(self._half, self._tf)

    def spread_bps(self, symbol: str) -> float | None:
        book = self._books.get(symbol)
        if book is None:
            return None
        hist = book.history
        if book.pushed is None and hist and book.spread_ts == hist[-1][0]:
            return book.spread_f  # candle-derived: SimExchange.on_candle computed it
        return book.spread_bps(self._half_f, self._tf)  # pushed quotes, restored state


def row_to_candle(row: CandleRow) -> Candle:
    ts, o, h, lo, c, v = row
    return Candle(
        ts=ts, open=to_dec(o), high=to_dec(h), low=to_dec(lo), close=to_dec(c), volume=to_dec(v)
    )


class SymbolBook:
    """Everything the sim keeps for one symbol. Mutable, owned by one SimExchange."""

    __slots__ = (
        "cached",
        "history",
        "last_mark",
        "last_ts",
        "market",
        "orders",
        "price_inc_f",
        "pushed",
        "spread_f",
        "spread_ts",
    )

    def __init__(self, market: Market, history_size: int) -> None:
        self.market = market
        self.price_inc_f = float(market.price_increment)
        self.spread_ts = NEVER
        self.spread_f = 0.0
        self.history: deque[CandleRow] = deque(maxlen=history_size)
        self.last_ts = NEVER
        self.pushed: Quote | None = None  # from set_quote (PAPER mode)
        self.cached: Quote | None = None  # built from history[-1] on demand
        self.last_mark: tuple[int, Decimal] | None = None  # (quote ts, its last price)
        self.orders: list[SimOrder] = []  # live orders, oldest first

    def spread_bps(self, half_spread: float, tf_ms: int) -> float | None:
        """The spread of `quote()` in float, without building it (universe screening)."""
        history = self.history
        if history:
            row = history[-1]
            pushed = self.pushed
            if pushed is None or pushed.ts < row[0] + tf_ms:
                if self.spread_ts != row[0]:
                    self.spread_ts = row[0]
                    self.spread_f = float_spread_bps(row[4], half_spread, self.price_inc_f)
                return self.spread_f
        return None if self.pushed is None else float(self.pushed.spread_bps)

    def restore(self, state: Any, orders: list[SimOrder]) -> None:
        """Take a snapshot's view of this symbol (sim_state.SymbolState, or None for none)."""
        self.orders = orders
        self.history.clear()
        self.pushed = None
        self.cached = None
        self.last_mark = None
        self.last_ts = NEVER
        self.spread_ts = NEVER
        if state is not None:
            self.market = replace(self.market, status=state.status)
            self.history.extend(state.history)
            self.pushed = state.pushed
            if self.history:
                self.last_ts = self.history[-1][0]

    def last(self, half_spread: Decimal, tf_ms: int) -> Decimal | None:
        """`quote().last`, without building a Quote for a candle-derived price."""
        history = self.history
        pushed = self.pushed
        if not history:
            return None if pushed is None else pushed.last
        row = history[-1]
        ts = row[0] + tf_ms
        if pushed is not None and pushed.ts >= ts:
            return pushed.last
        cached = self.cached
        if cached is not None and cached.ts == ts:
            return cached.last
        mark = self.last_mark
        if mark is None or mark[0] != ts:
            mark = self.last_mark = (ts, candle_last(self.market, row))
        return mark[1]

    def quote(self, half_spread: Decimal, tf_ms: int) -> Quote | None:
        """The newest of the pushed quote and the one derived from the last candle."""
        derived: Quote | None = None
        if self.history:
            row = self.history[-1]
            derived = self.cached
            if derived is None or derived.ts != row[0] + tf_ms:
                derived = self.cached = candle_quote(self.market, row, half_spread, tf_ms)
        pushed = self.pushed
        if pushed is not None and (derived is None or pushed.ts >= derived.ts):
            return pushed
        return derived


@dataclass(slots=True)
class SimOrder:
    """The engine's mutable record of an order; callers only ever see `to_order()` copies."""

    seq: int
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    amount: Decimal
    price: Decimal | None
    status: OrderStatus
    created_ms: int
    updated_ms: int
    strategy: str = ""
    post_only: bool = False
    reduce_only: bool = False
    reason: str = ""
    filled: Decimal = ZERO
    cost: Decimal = ZERO  # sum of fill notionals, for the volume-weighted average price
    fee: Decimal = ZERO
    reserved: Decimal = ZERO  # quote (buys) or base (sells) still held in `used`
    taker_at_placement: bool = False
    arrived: bool = False  # has seen its first fillable candle
    fill_count: int = 0

    price_f: float = field(default=0.0, init=False, repr=False, compare=False)  # for matching

    def __post_init__(self) -> None:
        self.price_f = float(self.price) if self.price is not None else 0.0

    def to_order(self) -> Order:
        avg = self.cost / self.filled if self.filled else ZERO
        return Order(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            order_type=self.order_type,
            amount=self.amount,
            price=self.price,
            status=self.status,
            created_ms=self.created_ms,
            updated_ms=self.updated_ms,
            filled=self.filled,
            avg_fill_price=avg,
            fee=self.fee,
            exchange_order_id=str(self.seq),
            strategy=self.strategy,
            post_only=self.post_only,
            reduce_only=self.reduce_only,
            reason=self.reason,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "amount": str(self.amount),
            "price": None if self.price is None else str(self.price),
            "status": self.status.value,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "strategy": self.strategy,
            "post_only": self.post_only,
            "reduce_only": self.reduce_only,
            "reason": self.reason,
            "filled": str(self.filled),
            "cost": str(self.cost),
            "fee": str(self.fee),
            "reserved": str(self.reserved),
            "taker_at_placement": self.taker_at_placement,
            "arrived": self.arrived,
            "fill_count": self.fill_count,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SimOrder:
        return cls(
            seq=int(d["seq"]),
            client_order_id=str(d["client_order_id"]),
            symbol=str(d["symbol"]),
            side=Side(d["side"]),
            order_type=OrderType(d["order_type"]),
            amount=Decimal(d["amount"]),
            price=None if d["price"] is None else Decimal(d["price"]),
            status=OrderStatus(d["status"]),
            created_ms=int(d["created_ms"]),
            updated_ms=int(d["updated_ms"]),
            strategy=str(d["strategy"]),
            post_only=bool(d["post_only"]),
            reduce_only=bool(d["reduce_only"]),
            reason=str(d["reason"]),
            filled=Decimal(d["filled"]),
            cost=Decimal(d["cost"]),
            fee=Decimal(d["fee"]),
            reserved=Decimal(d["reserved"]),
            taker_at_placement=bool(d["taker_at_placement"]),
            arrived=bool(d["arrived"]),
            fill_count=int(d["fill_count"]),
        )


def fill_to_json(f: Fill) -> dict[str, Any]:
    return {
        "fill_id": f.fill_id,
        "client_order_id": f.client_order_id,
        "symbol": f.symbol,
        "side": f.side.value,
        "price": str(f.price),
        "amount": str(f.amount),
        "fee": str(f.fee),
        "ts": f.ts,
        "liquidity": f.liquidity.value,
    }


def fill_from_json(d: dict[str, Any]) -> Fill:
    return Fill(
        fill_id=str(d["fill_id"]),
        client_order_id=str(d["client_order_id"]),
        symbol=str(d["symbol"]),
        side=Side(d["side"]),
        price=Decimal(d["price"]),
        amount=Decimal(d["amount"]),
        fee=Decimal(d["fee"]),
        ts=int(d["ts"]),
        liquidity=Liquidity(d["liquidity"]),
    )


def quote_to_json(q: Quote) -> dict[str, Any]:
    return {
        "symbol": q.symbol,
        "bid": str(q.bid),
        "ask": str(q.ask),
        "last": str(q.last),
        "ts": q.ts,
    }


def quote_from_json(d: dict[str, Any]) -> Quote:
    return Quote(
        symbol=str(d["symbol"]),
        bid=Decimal(d["bid"]),
        ask=Decimal(d["ask"]),
        last=Decimal(d["last"]),
        ts=int(d["ts"]),
    )
