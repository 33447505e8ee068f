"""Internals of the simulated exchange: per-symbol books, mutable order records, price rounding.

Nothing here is public API; `infra.exchange.sim.SimExchange` is the adapter others use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
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


class PriceGrid:
    """A market's price increment, and rounding to it. On a power-of-ten grid (nearly every
    venue) `quantize` rounds in one step; any other grid divides and multiplies."""

    __slots__ = ("inc", "inc_f", "pow10")

    def __init__(self, inc: Decimal) -> None:
        self.inc = inc
        self.inc_f = float(inc)
        self.pow10 = inc.as_tuple().digits == (1,)

    def round(self, x: Decimal, rounding: str) -> Decimal:
        if self.pow10:
            return x.quantize(self.inc, rounding)
        return (x / self.inc).to_integral_value(rounding) * self.inc


def candle_last(grid: PriceGrid, close: Decimal) -> Decimal:
    """The last price of a candle-derived quote: the close on the grid, at least one increment
    (where the bid is raised to). It lies in [bid, ask] of `candle_quote`, because
    bid <= close <= ask before rounding (tests/infra/test_sim_exchange_state.py)."""
    last = grid.round(close, ROUND_HALF_EVEN)
    return grid.inc if last < grid.inc else last


def candle_quote(
    symbol: str, grid: PriceGrid, close_f: float, lo_k: Decimal, hi_k: Decimal, ts: int
) -> Quote:
    """The quote the sim derives from a candle's close: `lo_k` and `hi_k` are 1 -/+ the half
    spread; the bid rounds down, the ask up, and they stay at least one increment apart."""
    inc = grid.inc
    close = to_dec(float(close_f))  # an int close prices like the equal float
    bid = grid.round(close * lo_k, ROUND_FLOOR)
    ask = grid.round(close * hi_k, ROUND_CEILING)
    if bid <= 0:
        bid = inc
    if ask - bid < inc:  # a zero spread would make every post-only order cross
        ask = bid + inc
    return Quote(symbol=symbol, bid=bid, ask=ask, last=candle_last(grid, close), ts=ts)


def float_spread_bps(close: float, lo_k: float, hi_k: float, inc: float) -> float:
    """What candle_quote's Decimal spread comes to, computed in float: the universe screens
    every symbol's spread every cycle, and needs no Decimal quote for that."""
    # `x // 1.0` is floor(x) and `-(-x // 1.0)` ceil(x), exactly, without a call each.
    bid = close * lo_k / inc // 1.0 * inc
    ask = -(-close * hi_k / inc // 1.0) * inc
    if bid <= 0:
        bid = inc
    if ask - bid < inc * 0.999999:
        ask = bid + inc
    return (ask - bid) / ((ask + bid) / 2.0) * 10_000.0


class SimQuoteBoard(QuoteBoard):
    """Quotes built on first access: a backtest screens every symbol's spread each cycle but
    needs a full Decimal quote only for the few it trades or holds. It reads the books live,
    so one board serves every cycle."""

    __slots__ = ("_books",)

    def __init__(self, books: dict[str, SymbolBook]) -> None:
        super().__init__({})
        self._books = books

    def __getitem__(self, symbol: str) -> Quote:
        book = self._books.get(symbol)
        q = None if book is None else book.quote()
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

    # Marks and the universe ask these for every symbol, every cycle: a close already in the
    # book's memo is answered here without another call (with no pushed quote the candle's is
    # the newest), anything else by the book.

    def last(self, symbol: str) -> Decimal | None:
        book = self._books.get(symbol)
        if book is None:
            return None
        history = book.history
        if history and book.pushed is None:
            last = book.lasts.get(history[-1][4])
            if last is not None:
                return last
        return book.last()

    def spread_bps(self, symbol: str) -> float | None:
        book = self._books.get(symbol)
        if book is None:
            return None
        history = book.history
        if history and book.pushed is None:
            close = history[-1][4]
            spread = book.spreads.get(close)
            return book.spread_of(close) if spread is None else spread
        return book.spread_bps()


def row_to_candle(row: CandleRow) -> Candle:
    ts, o, h, lo, c, v = row
    return Candle(
        ts=ts, open=to_dec(o), high=to_dec(h), low=to_dec(lo), close=to_dec(c), volume=to_dec(v)
    )


class SymbolBook:
    """Everything the sim keeps for one symbol. Mutable, owned by one SimExchange.

    `on_candle` appends each closed candle to `history`; the quote, its last price and its
    float spread are derived from `history[-1]` when asked for. They depend on the close
    alone (and this market's constants), so they are cached by the close's value: the last
    price and the spread in a memo of recent closes (prices revisit the same levels: about
    three candles in four find theirs there), the quote for the last close. A restored history
    needs no invalidation."""

    __slots__ = (
        "_hi_f",
        "_hi_k",
        "_lo_f",
        "_lo_k",
        "_quote",
        "_quote_close",
        "_tf",
        "grid",
        "history",
        "last_ts",
        "lasts",
        "market",
        "orders",
        "pushed",
        "spreads",
    )

    def __init__(
        self, market: Market, history_size: int, *, half_spread: Decimal, timeframe_ms: int
    ) -> None:
        self.market = market
        self.grid = PriceGrid(market.price_increment)  # increments never change, statuses do
        self._tf = timeframe_ms  # a candle's quote is stamped at its close: open time + this
        self._lo_k, self._hi_k = 1 - half_spread, 1 + half_spread
        half_f = float(half_spread)
        self._lo_f, self._hi_f = 1.0 - half_f, 1.0 + half_f
        self.history: deque[CandleRow] = deque(maxlen=history_size)
        self.last_ts = NEVER
        self.pushed: Quote | None = None  # from set_quote (PAPER mode)
        self.orders: list[SimOrder] = []  # live orders, oldest first
        self.spreads: dict[float, float] = {}  # close -> float_spread_bps
        self.lasts: dict[float, Decimal] = {}  # close -> candle_last
        self._quote_close = math.nan  # equal to no close
        self._quote: Quote | None = None

    def _candle(self) -> CandleRow | None:
        """The last candle, when the quote derived from it is newer than any pushed quote."""
        history = self.history
        if not history:
            return None
        row = history[-1]
        pushed = self.pushed
        return row if pushed is None or pushed.ts < row[0] + self._tf else None

    def spread_bps(self) -> float | None:
        """The spread of `quote()` in float, without building it (universe screening)."""
        row = self._candle()
        if row is None:
            return None if self.pushed is None else float(self.pushed.spread_bps)
        spread = self.spreads.get(row[4])
        return self.spread_of(row[4]) if spread is None else spread

    def spread_of(self, close: float) -> float:
        """float_spread_bps of a close not in the memo yet, remembered."""
        spread = float_spread_bps(close, self._lo_f, self._hi_f, self.grid.inc_f)
        spreads = self.spreads
        if len(spreads) >= MEMO_SIZE:
            spreads.clear()  # prices drift: the next closes are near the current one
        spreads[close] = spread
        return spread

    def last(self) -> Decimal | None:
        """`quote().last`, without building a Quote for a candle-derived price."""
        row = self._candle()
        if row is None:
            return None if self.pushed is None else self.pushed.last
        close = row[4]
        last = self.lasts.get(close)
        if last is None:
            last = candle_last(self.grid, to_dec(float(close)))
            _remember(self.lasts, close, last)
        return last

    def quote(self) -> Quote | None:
        """The newest of the pushed quote and the one derived from the last candle."""
        row = self._candle()
        if row is None:
            return self.pushed
        ts, close = row[0] + self._tf, row[4]
        q = self._quote
        if q is None or q.ts != ts or close != self._quote_close:
            q = candle_quote(self.market.symbol, self.grid, close, self._lo_k, self._hi_k, ts)
            self._quote, self._quote_close = q, close
        return q

    def restore(self, state: Any, orders: list[SimOrder]) -> None:
        """Take a snapshot's view of this symbol (sim_state.SymbolState, or None for none)."""
        self.orders = orders
        self.history.clear()
        self.pushed = None
        self.last_ts = NEVER
        if state is not None:
            self.market = replace(self.market, status=state.status)
            self.history.extend(state.history)
            self.pushed = state.pushed
            if self.history:
                self.last_ts = self.history[-1][0]


MEMO_SIZE = 4096  # closes remembered per symbol and value: about 0.5 MB each when full


def _remember(memo: dict[float, Any], close: float, value: Any) -> None:
    if len(memo) >= MEMO_SIZE:
        memo.clear()  # prices drift: the next closes are near the current one, not the old
    memo[close] = value


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
