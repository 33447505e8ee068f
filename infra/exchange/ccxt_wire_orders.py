"""Wire models for ccxt's fees, orders and trades, and their conversion into core.models.

Order status: canceled / expired / rejected map one to one; otherwise filled >= amount is
FILLED, "closed" is FILLED (ccxt's "done trading"), and "open" / "canceling" is PARTIAL when
something filled, else OPEN.

Fees are folded into the quote currency (fee_in_quote); QuoteFee says how.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pydantic import Field

from core.models import ZERO, Fill, Liquidity, Order, OrderStatus, OrderType, Side
from infra.exchange.ccxt_wire_base import Ms, Num, Text, Wire, _bad, _need


def _side(value: str | None, what: str) -> Side:
    try:
        return Side((value or "").lower())
    except ValueError:
        raise _bad(what, "side", f"expected buy or sell, got {value!r}") from None


class FeeSource(StrEnum):
    NONE = "none"  # no fee reported
    QUOTE = "quote"  # charged in the quote currency
    ASSUMED_QUOTE = "assumed_quote"  # no currency given (Coinbase orders): taken as quote
    BASE_AT_TRADE_PRICE = "base_at_trade_price"  # charged in base, converted at the fill price
    AT_GIVEN_RATE = "at_given_rate"  # another asset (BNB), converted with a rate passed in
    UNPRICED = "unpriced"  # another asset and no rate: left out of `fee`, see `unpriced`
    MIXED = "mixed"  # several of the above


class FeeWire(Wire):
    cost: Num = None
    currency: Text = None


@dataclass(frozen=True, slots=True)
class QuoteFee:
    """A fee list folded into the quote currency, and how it was done."""

    amount: Decimal
    source: FeeSource
    base_fee: Decimal  # base units charged: a buy delivers that much less than it filled
    unpriced: tuple[tuple[str, Decimal], ...]  # (currency, cost) we could not convert

    @property
    def detail(self) -> str:
        parts = [f"{self.amount} quote via {self.source}"]
        if self.base_fee:
            parts.append(f"{self.base_fee} base deducted")
        parts += [f"{cost} {cur} unpriced" for cur, cost in self.unpriced]
        return "; ".join(parts)


def fee_in_quote(
    fees: Iterable[FeeWire],
    *,
    base: str,
    quote: str,
    price: Decimal,
    rates: Mapping[str, Decimal] | None = None,
    what: str = "fee",
) -> QuoteFee:
    """`rates` maps other fee assets to their price in `quote` (e.g. {"BNB": Decimal(300)})."""
    total, base_fee = ZERO, ZERO
    sources: set[FeeSource] = set()
    unpriced: list[tuple[str, Decimal]] = []
    for fee in fees:
        if fee.cost is None or fee.cost == 0:
            continue
        cost = fee.cost
        if cost < 0:
            raise _bad(what, "fee.cost", f"negative fee {cost} (rebates are not supported)")
        currency = fee.currency
        if currency is None:
            total += cost
            sources.add(FeeSource.ASSUMED_QUOTE)
        elif currency == quote:
            total += cost
            sources.add(FeeSource.QUOTE)
        elif currency == base and price > 0:
            total += cost * price
            base_fee += cost
            sources.add(FeeSource.BASE_AT_TRADE_PRICE)
        elif rates is not None and currency in rates:
            total += cost * rates[currency]
            sources.add(FeeSource.AT_GIVEN_RATE)
        else:
            unpriced.append((currency, cost))
            sources.add(FeeSource.UNPRICED)
            if currency == base:
                base_fee += cost
    if not sources:
        source = FeeSource.NONE
    elif len(sources) == 1:
        source = next(iter(sources))
    else:
        source = FeeSource.MIXED
    return QuoteFee(amount=total, source=source, base_fee=base_fee, unpriced=tuple(unpriced))


class _Charged(Wire):
    """The fee fields orders and trades share."""

    symbol: str = Field(min_length=1)
    fee: FeeWire | None = None
    fees: list[FeeWire] = Field(default_factory=list)

    def quote_fee(self, price: Decimal, rates: Mapping[str, Decimal] | None, what: str) -> QuoteFee:
        base, sep, quote = self.symbol.partition("/")
        if not sep or not base or not quote:
            raise _bad(what, "symbol", f"expected a unified BASE/QUOTE symbol: {self.symbol!r}")
        # ccxt repeats a single fee in both `fee` and `fees`; count it once.
        charged = self.fees or ([self.fee] if self.fee is not None else [])
        quote = quote.split(":")[0]
        return fee_in_quote(charged, base=base, quote=quote, price=price, rates=rates, what=what)


_OPEN_STATES = frozenset({"open", "canceling", "pending"})
_TERMINAL_STATES = {
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}
_ORDER_TYPES = {
    "limit": OrderType.LIMIT,
    "limit_maker": OrderType.LIMIT,
    "market": OrderType.MARKET,
}


class OrderWire(_Charged):
    id: Text = None
    clientOrderId: Text = None
    type: Text = None
    side: Text = None
    price: Num = None
    amount: Num = None
    filled: Num = None
    remaining: Num = None
    cost: Num = None
    average: Num = None
    status: Text = None
    timestamp: Ms = None
    lastUpdateTimestamp: Ms = None
    lastTradeTimestamp: Ms = None
    postOnly: bool | None = None
    reduceOnly: bool | None = None

    def order_status(self, amount: Decimal, filled: Decimal) -> OrderStatus:
        what = f"order {self.clientOrderId or self.id}"
        state = (self.status or "").lower()
        if state in _TERMINAL_STATES:
            return _TERMINAL_STATES[state]
        if filled >= amount and filled > 0:
            return OrderStatus.FILLED
        if state == "closed":
            if filled == 0:
                raise _bad(what, "filled", "status is closed but nothing was filled")
            return OrderStatus.FILLED
        if state in _OPEN_STATES:
            return OrderStatus.PARTIAL if filled > 0 else OrderStatus.OPEN
        raise _bad(what, "status", f"unknown order status {self.status!r}")

    def to_domain(
        self,
        *,
        strategy: str = "",
        received_ms: int | None = None,
        fee_rates: Mapping[str, Decimal] | None = None,
    ) -> Order:
        """A foreign order without a client order id gets "" (it never matches one of ours)."""
        what = f"order {self.clientOrderId or self.id}"
        side = _side(self.side, what)
        order_type = _ORDER_TYPES.get((self.type or "").lower())
        if order_type is None:
            raise _bad(what, "type", f"unsupported order type {self.type!r}")
        amount, filled = self.amount, self.filled
        if filled is None and amount is not None and self.remaining is not None:
            filled = amount - self.remaining
        if amount is None and (self.status or "").lower() == "closed":
            amount = filled  # a quote-sized market order: what filled is what it was
        amount = _need(amount, what, "amount", positive=True)
        filled = _need(filled, what, "filled")
        if filled > amount:
            raise _bad(what, "filled", f"filled {filled} exceeds amount {amount}")
        avg = self.average
        if (avg is None or avg == 0) and filled > 0 and self.cost:
            avg = self.cost / filled
        avg = _need(avg, what, "average") if avg is not None else ZERO
        price: Decimal | None = None
        if order_type is OrderType.LIMIT:
            price = _need(self.price, what, "price", positive=True)
        created = self.timestamp or self.lastUpdateTimestamp or received_ms
        if created is None:
            raise _bad(what, "timestamp", "missing (pass received_ms= to date it)")
        updated = max(t for t in (created, self.lastUpdateTimestamp, self.lastTradeTimestamp) if t)
        fee = self.quote_fee(avg if avg > 0 else (price or ZERO), fee_rates, what)
        return Order(
            client_order_id=self.clientOrderId or "",
            symbol=self.symbol,
            side=side,
            order_type=order_type,
            amount=amount,
            price=price,
            status=self.order_status(amount, filled),
            created_ms=created,
            updated_ms=updated,
            filled=filled,
            avg_fill_price=avg,
            fee=fee.amount,
            exchange_order_id=self.id or "",
            strategy=strategy,
            post_only=bool(self.postOnly),
            reduce_only=bool(self.reduceOnly),
        )


def fill_side_is_buy(side: str | None) -> bool:
    return (side or "").lower() == "buy"


@dataclass(frozen=True, slots=True)
class ConvertedFill:
    fill: Fill
    fee: QuoteFee  # how fill.fee was reached (source, base deducted, unpriced parts)
    exchange_order_id: str


class TradeWire(_Charged):
    id: Text = None
    order: Text = None  # the venue's order id
    clientOrderId: Text = None
    side: Text = None
    takerOrMaker: Text = None
    price: Num = None
    amount: Num = None
    timestamp: Ms = None

    def to_fill(
        self, *, client_order_id: str | None = None, fee_rates: Mapping[str, Decimal] | None = None
    ) -> ConvertedFill:
        """`client_order_id` is the id of our order this trade belongs to (the adapter knows it
        from `order`); without it the trade's own, if any, else ""."""
        what = f"trade {self.id}"
        if not self.id:
            raise _bad(what, "id", "missing")
        price = _need(self.price, what, "price", positive=True)
        amount = _need(self.amount, what, "amount", positive=True)
        if self.timestamp is None:
            raise _bad(what, "timestamp", "missing")
        fee = self.quote_fee(price, fee_rates, what)
        fill = Fill(
            fill_id=self.id,
            client_order_id=client_order_id or self.clientOrderId or "",
            symbol=self.symbol,
            side=_side(self.side, what),
            price=price,
            amount=amount,
            fee=fee.amount,
            ts=self.timestamp,
            liquidity=Liquidity.MAKER if self.takerOrMaker == "maker" else Liquidity.TAKER,
            base_fee=fee.base_fee if fill_side_is_buy(self.side) else ZERO,
        )
        return ConvertedFill(fill=fill, fee=fee, exchange_order_id=self.order or "")

    def to_domain(
        self, *, client_order_id: str | None = None, fee_rates: Mapping[str, Decimal] | None = None
    ) -> Fill:
        return self.to_fill(client_order_id=client_order_id, fee_rates=fee_rates).fill
