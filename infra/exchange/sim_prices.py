"""Prices on a market's grid, as the simulated exchange makes them.

Rounding to the price and amount increments, taker fill prices with slippage, fees, what a
wallet can afford, the quote and float spread derived from a candle's close, and the synthetic
order book. Pure functions (and the small `PriceGrid`); the books and the matcher call them.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from core.models import ONE, ZERO, BookLevel, Market, OrderBook, Quote, Side

FEE_QUANTUM = Decimal("1e-8")


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
