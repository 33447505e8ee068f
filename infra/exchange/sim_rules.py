"""The venue's order-entry rules, as the simulated exchange enforces them.

A pure check: it reads the market, the current quote and the free balances, and either raises
the error a real venue would answer with or says what to reserve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from core.errors import InsufficientFunds, InvalidOrder, PostOnlyWouldTake
from core.models import ONE, ZERO, Market, MarketStatus, OrderIntent, OrderType, Quote, Side
from infra.exchange.sim_prices import on_grid

HALTED = frozenset({MarketStatus.OFFLINE, MarketStatus.CANCEL_ONLY})
NO_TAKING = frozenset({MarketStatus.POST_ONLY, MarketStatus.LIMIT_ONLY})


@dataclass(frozen=True, slots=True)
class Admission:
    price: Decimal | None  # None for market orders
    taker: bool  # marketable when placed
    asset: str  # what is reserved: the quote for buys, the base for sells
    reserve: Decimal


def admit(
    intent: OrderIntent,
    market: Market,
    quote: Quote | None,
    fees: tuple[Decimal, Decimal],
    free: Mapping[str, Decimal],
) -> Admission:
    """Check `intent` against the market's rules; raise InvalidOrder or InsufficientFunds."""
    sym = market.symbol
    if market.status in HALTED:
        raise InvalidOrder(f"{sym}: market is {market.status}; new orders are not accepted")
    amount = intent.amount
    if amount <= 0:
        raise InvalidOrder(f"{sym}: amount must be positive, got {amount}")
    if not on_grid(amount, market.amount_increment):
        raise InvalidOrder(
            f"{sym}: amount {amount} is not a multiple of the amount increment "
            f"{market.amount_increment}; round it down to the grid"
        )
    if amount < market.min_size:
        raise InvalidOrder(f"{sym}: amount {amount} is below the minimum size {market.min_size}")
    buy = intent.side is Side.BUY
    price: Decimal | None = None
    if intent.order_type is OrderType.MARKET:
        if market.status in NO_TAKING:
            raise InvalidOrder(f"{sym}: market is {market.status}; market orders are refused")
        if quote is None:
            raise InvalidOrder(f"{sym}: no price yet for a market order; wait for market data")
        ref = quote.ask if buy else quote.bid
        taker = True
    else:
        price = intent.price
        if price is None or price <= 0:
            raise InvalidOrder(f"{sym}: a limit order needs a positive price, got {price}")
        if not on_grid(price, market.price_increment):
            raise InvalidOrder(
                f"{sym}: price {price} is not a multiple of the price increment "
                f"{market.price_increment}; round it to the grid"
            )
        ref = price
        taker = quote is not None and (price >= quote.ask if buy else price <= quote.bid)
        if taker and quote is not None and intent.post_only:
            raise PostOnlyWouldTake(
                f"{sym}: post-only {intent.side} at {price} would cross the quote "
                f"(bid {quote.bid}, ask {quote.ask}); price it inside the spread"
            )
        if taker and market.status is MarketStatus.POST_ONLY:
            raise InvalidOrder(f"{sym}: market is POST_ONLY; a crossing limit order is refused")
    notional = amount * ref
    if notional < market.min_notional:
        raise InvalidOrder(f"{sym}: notional {notional} is below the minimum {market.min_notional}")
    maker_rate, taker_rate = fees
    if buy:
        # Limit buys reserve the larger fee: a resting order may still fill as a taker.
        rate = taker_rate if price is None else max(maker_rate, taker_rate)
        reserve = notional * (ONE + rate)
        have = free.get(market.quote, ZERO)
        if reserve > have:
            raise InsufficientFunds(
                f"{sym}: buying {amount} needs {reserve} {market.quote} (amount x price + fee) "
                f"but only {have} is free"
            )
        return Admission(price=price, taker=taker, asset=market.quote, reserve=reserve)
    have = free.get(market.base, ZERO)
    if amount > have:
        raise InsufficientFunds(f"{sym}: selling {amount} {market.base} but only {have} is free")
    return Admission(price=price, taker=taker, asset=market.base, reserve=amount)
