"""Fee-aware sizing on the market's increment grid."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.models import ONE, ZERO, Market
from core.reasons import RiskReason


def floor_to(x: Decimal, step: Decimal) -> Decimal:
    # `//` is exact; `x / step` rounds in the 28-digit context and could round up first.
    q = x // step
    if q * step > x:  # negative x: // truncates toward zero
        q -= 1
    return q * step


def ceil_to(x: Decimal, step: Decimal) -> Decimal:
    q = x // step
    if q * step < x:
        q += 1
    return q * step


def on_grid(x: Decimal, step: Decimal) -> bool:
    return (x / step) == (x / step).to_integral_value()


@dataclass(frozen=True, slots=True)
class Size:
    quantity: Decimal
    notional: Decimal  # quantity x price
    cost: Decimal  # notional plus the fee
    reason: str  # RiskReason.APPROVED or the refusal


def min_buy_quantity(
    market: Market, price: Decimal, fee_rate: Decimal, margin: Decimal = ONE
) -> Decimal:
    """The smallest quantity on the grid whose post-fee notional clears the minimums.

    Post-fee because what we hold after paying the fee must itself be sellable later, and
    `margin` times the minimum notional so that it is still sellable after the price falls
    to the stop (a position the exchange will not buy back is stuck until the price returns).
    """
    net = price * (ONE - fee_rate)
    by_notional = market.min_notional * margin / net if net > 0 else ZERO
    return ceil_to(
        max(market.min_size, by_notional, market.amount_increment), market.amount_increment
    )


def size_buy(
    *,
    budget: Decimal,
    hard_cap: Decimal,
    price: Decimal,
    market: Market,
    fee_rate: Decimal,
    margin: Decimal = ONE,
) -> Size:
    """Spend at most `budget` (fee included); round up to the minimum only within `hard_cap`."""
    if price <= 0 or budget <= 0:
        return Size(ZERO, ZERO, ZERO, RiskReason.BELOW_MIN_NOTIONAL)
    unit_cost = price * (ONE + fee_rate)
    qty = floor_to(budget / unit_cost, market.amount_increment)
    minimum = min_buy_quantity(market, price, fee_rate, margin)
    if qty < minimum:
        if minimum * unit_cost > hard_cap:
            return Size(ZERO, ZERO, ZERO, RiskReason.BELOW_MIN_NOTIONAL)
        qty = minimum
    notional = qty * price
    return Size(qty, notional, notional * (ONE + fee_rate), RiskReason.APPROVED)


def size_sell(*, quantity: Decimal, price: Decimal, market: Market, fee_rate: Decimal) -> Size:
    """Sell what we hold, rounded down to the grid; refuse dust the market will not take."""
    qty = floor_to(quantity, market.amount_increment)
    notional = qty * price
    if qty <= 0 or qty < market.min_size or notional < market.min_notional:
        return Size(ZERO, ZERO, ZERO, RiskReason.DUST)
    return Size(qty, notional, notional * (ONE - fee_rate), RiskReason.APPROVED)


def is_dust(quantity: Decimal, price: Decimal, market: Market) -> bool:
    """True when the market would refuse to buy this holding back."""
    return size_sell(quantity=quantity, price=price, market=market, fee_rate=ZERO).reason != (
        RiskReason.APPROVED
    )


def fee_for(notional: Decimal, rate: Decimal) -> Decimal:
    if rate < 0:
        raise ValueError("fee rate must not be negative")
    return notional * rate
