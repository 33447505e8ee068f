"""Portfolio accounting: positions, cash, realized and unrealized PnL, exposure, equity.

Long-only spot, one accounting currency. Fees are in the quote currency. Realized PnL of a
sale charges the sale's own fee plus the entry fees of the quantity sold, in proportion, so
that equity = starting cash + realized + unrealized at all times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

from core.models import ZERO, Fill, Market, Order, Position, Quote, Side

SHARE_QUANTUM = Decimal("1e-12")  # far below any venue's price or fee resolution


class PortfolioError(ValueError):
    pass


def _frozen(d: dict[str, Position]) -> Mapping[str, Position]:
    return MappingProxyType(d)


@dataclass(frozen=True, slots=True)
class Portfolio:
    cash: Decimal  # quote currency, free plus reserved for open buys
    positions: Mapping[str, Position] = field(default_factory=lambda: _frozen({}))
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    quote: str = "USDT"

    def position(self, symbol: str) -> Position | None:
        return self.positions.get(symbol)


@dataclass(frozen=True, slots=True)
class Booking:
    """What one fill did to the portfolio."""

    portfolio: Portfolio
    realized: Decimal  # PnL realized by this fill (sales only)
    closed: bool  # the position is now flat


def apply_fill(p: Portfolio, fill: Fill, *, strategy: str = "") -> Booking:
    if fill.amount <= 0 or fill.price <= 0:
        raise PortfolioError(f"fill {fill.fill_id}: amount and price must be positive")
    if fill.fee < 0 or fill.base_fee < 0 or fill.quote_fee_paid < 0:
        raise PortfolioError(f"fill {fill.fill_id}: negative fee")
    if fill.base_fee and (fill.side is Side.SELL or fill.base_fee >= fill.amount):
        raise PortfolioError(
            f"fill {fill.fill_id}: a base-asset fee is only understood on buys, below the amount"
        )
    positions = dict(p.positions)
    pos = positions.get(fill.symbol)
    notional = fill.price * fill.amount
    if fill.side is Side.BUY:
        # The fee in base units is paid by holding less; only the quote part leaves the cash.
        received = fill.amount - fill.base_fee
        cash_fee = fill.quote_fee_paid
        if pos is None:
            pos = Position(
                symbol=fill.symbol,
                quantity=received,
                avg_entry_price=notional / received if fill.base_fee else fill.price,
                entry_fees=cash_fee,
                opened_ms=fill.ts,
                peak_price=fill.price,
                strategy=strategy,
                cost=notional,
            )
        else:
            qty = pos.quantity + received
            cost = pos.cost_basis + notional
            pos = replace(
                pos,
                quantity=qty,
                avg_entry_price=cost / qty,
                entry_fees=pos.entry_fees + cash_fee,
                peak_price=max(pos.peak_price, fill.price),
                cost=cost,
            )
        positions[fill.symbol] = pos
        return Booking(
            replace(
                p,
                cash=p.cash - notional - cash_fee,
                positions=_frozen(positions),
                fees_paid=p.fees_paid + fill.fee,
            ),
            ZERO,
            False,
        )

    if pos is None or pos.quantity <= 0:
        raise PortfolioError(f"fill {fill.fill_id}: sell of {fill.symbol} with no position")
    if fill.amount > pos.quantity:
        raise PortfolioError(
            f"fill {fill.fill_id}: sells {fill.amount} {fill.symbol} but only "
            f"{pos.quantity} is held"
        )
    remaining = pos.quantity - fill.amount
    cost = pos.cost_basis
    if remaining == 0:
        # The closing sale takes whatever cost and fees remain, so rounding in earlier
        # partial sales never leaks: a round trip loses exactly its fees.
        share_cost, share_fees = cost, pos.entry_fees
    else:
        # Quantized so that what is taken out and what stays add up exactly: a 28-digit
        # quotient would make the remainder round, and accounting would drift.
        share_cost = (cost * fill.amount / pos.quantity).quantize(SHARE_QUANTUM)
        share_fees = (pos.entry_fees * fill.amount / pos.quantity).quantize(SHARE_QUANTUM)
    realized = notional - share_cost - share_fees - fill.fee
    if remaining == 0:
        del positions[fill.symbol]
    else:
        positions[fill.symbol] = replace(
            pos,
            quantity=remaining,
            entry_fees=pos.entry_fees - share_fees,
            cost=cost - share_cost,
        )
    return Booking(
        replace(
            p,
            cash=p.cash + notional - fill.fee,
            positions=_frozen(positions),
            realized_pnl=p.realized_pnl + realized,
            fees_paid=p.fees_paid + fill.fee,
        ),
        realized,
        remaining == 0,
    )


def resize_position(p: Portfolio, symbol: str, quantity: Decimal) -> Portfolio:
    """Set a holding to what the exchange says it is (never more than we think we hold).

    Cost and fees stay: the coins went somewhere we did not see (a fee in base units, a
    transfer), so the average entry rises and stops judge the smaller holding conservatively.
    """
    pos = p.positions.get(symbol)
    if pos is None or quantity >= pos.quantity:
        return p
    positions = dict(p.positions)
    if quantity <= 0:
        del positions[symbol]
    else:
        cost = pos.cost_basis
        positions[symbol] = replace(
            pos, quantity=quantity, avg_entry_price=cost / quantity, cost=cost
        )
    return replace(p, positions=_frozen(positions))


def update_peaks(p: Portfolio, marks: Mapping[str, Decimal]) -> Portfolio:
    """Raise each position's peak to its mark (trailing stops need the highest mark seen)."""
    changed: dict[str, Position] | None = None
    for sym, pos in p.positions.items():
        m = marks.get(sym)
        if m is not None and m > pos.peak_price:
            if changed is None:
                changed = dict(p.positions)
            changed[sym] = replace(pos, peak_price=m)
    if changed is None:
        return p
    return replace(p, positions=_frozen(changed))


@dataclass(frozen=True, slots=True)
class Valuation:
    equity: Decimal
    unrealized: Decimal
    position_value: Decimal
    by_symbol: Mapping[str, Decimal]  # market value per held symbol


_NO_VALUES: Mapping[str, Decimal] = MappingProxyType({})


def value(p: Portfolio, marks: Mapping[str, Decimal]) -> Valuation:
    """Mark to market. A position without a mark is valued at its entry price."""
    if not p.positions:
        return Valuation(p.cash, ZERO, ZERO, _NO_VALUES)
    total = ZERO
    unrealized = ZERO
    by_symbol: dict[str, Decimal] = {}
    for sym, pos in p.positions.items():
        m = marks.get(sym)
        mv = pos.cost_basis if m is None else pos.quantity * m
        by_symbol[sym] = mv
        total += mv
        unrealized += mv - pos.cost_basis - pos.entry_fees
    return Valuation(p.cash + total, unrealized, total, by_symbol)


@dataclass(frozen=True, slots=True)
class Exposure:
    """Quote value at risk: held positions plus the unfilled rest of live buy orders."""

    total: Decimal
    by_asset: Mapping[str, Decimal]
    by_theme: Mapping[str, Decimal]
    by_strategy: Mapping[str, Decimal]
    pending_buy_cost: Decimal  # cash reserved by live buys


def exposure(
    p: Portfolio,
    marks: Mapping[str, Decimal],
    open_orders: Iterable[Order],
    *,
    base_of: Callable[[str], str],
    theme_of: Callable[[str], str],
    price_of: Callable[[str], Decimal | None] = lambda s: None,
) -> Exposure:
    """`price_of` prices pending market buys on symbols without a mark (their ask)."""
    by_asset: dict[str, Decimal] = {}
    by_theme: dict[str, Decimal] = {}
    by_strategy: dict[str, Decimal] = {}
    total = ZERO
    pending = ZERO

    def add(sym: str, strategy: str, amount: Decimal) -> None:
        nonlocal total
        base = base_of(sym)
        theme = theme_of(base)
        by_asset[base] = by_asset.get(base, ZERO) + amount
        by_theme[theme] = by_theme.get(theme, ZERO) + amount
        by_strategy[strategy] = by_strategy.get(strategy, ZERO) + amount
        total += amount

    for sym, pos in p.positions.items():
        add(sym, pos.strategy, pos.quantity * marks.get(sym, pos.avg_entry_price))
    for o in open_orders:
        if o.side is Side.BUY and o.status.is_live:
            ref = o.price if o.price is not None else marks.get(o.symbol) or price_of(o.symbol)
            amt = o.remaining * (ref or ZERO)
            pending += amt
            add(o.symbol, o.strategy, amt)
    return Exposure(total, by_asset, by_theme, by_strategy, pending)


def market_exposure(
    p: Portfolio,
    marks: Mapping[str, Decimal],
    open_orders: Iterable[Order],
    markets: Mapping[str, Market],
    quotes: Mapping[str, Quote],
    theme_of: Callable[[str], str],
) -> Exposure:
    """Exposure as risk judges it, in the cycle and in a fast exit alike: each symbol's base
    asset from its market (else the symbol's first part), pending market buys at the ask."""
    return exposure(
        p,
        marks,
        open_orders,
        base_of=lambda s: markets[s].base if s in markets else s.split("/")[0],
        theme_of=theme_of,
        price_of=lambda s: quotes[s].ask if s in quotes else None,
    )
