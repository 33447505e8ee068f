"""Wire models for ccxt's unified structures, and their conversion into core.models.

The adapter hands ccxt's dicts to `<Model>.parse(raw)`, then calls `.to_domain(...)`. Numbers
arrive as floats (ccxt's default) or strings (`exchange.number = str`); both go through str()
into Decimal, never Decimal(float). Anything missing or malformed raises
core.errors.BadResponse naming the structure and the field.

Market status: the most restrictive signal wins (ONLINE < LIMIT_ONLY < POST_ONLY <
CANCEL_ONLY < OFFLINE); the table is `_VENUE_STATUS` and `_FLAG_STATUS` below. Binance TRADING
is ONLINE; HALT, AUCTION_MATCH, POST_TRADING, END_OF_DAY are CANCEL_ONLY (no new orders,
cancels accepted; an auction has no discovered price yet); BREAK, PRE_TRADING are OFFLINE.
Coinbase's status and its cancel_only / auction_mode / view_only, post_only, limit_only,
trading_disabled flags map the same way. With nothing restrictive found, ccxt's `active` False
means OFFLINE (this covers statuses we do not know, e.g. MEXC's numeric ones, which ccxt
interprets) and `active` None (unknown) means ONLINE.

Order status: canceled / expired / rejected map one to one; otherwise filled >= amount is
FILLED, "closed" is FILLED (ccxt's "done trading"), and "open" / "canceling" is PARTIAL when
something filled, else OPEN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from core.errors import BadResponse
from core.models import (
    ZERO,
    Balance,
    BookLevel,
    Candle,
    Fill,
    Liquidity,
    Market,
    MarketStatus,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    Quote,
    Side,
)


class PrecisionMode(IntEnum):
    """ccxt's precisionMode constants (same values as ccxt.DECIMAL_PLACES etc.)."""

    DECIMAL_PLACES = 2
    SIGNIFICANT_DIGITS = 3
    TICK_SIZE = 4


# -- field types -------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {str(value)[:40]!r}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    number = _decimal(value)
    if number is None or number != number.to_integral_value() or number < 0:
        raise ValueError(f"expected epoch milliseconds, got {str(value)[:40]!r}")
    return int(number)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return str(value)


Num = Annotated[Decimal | None, BeforeValidator(_decimal)]
Ms = Annotated[int | None, BeforeValidator(_ms)]
Text = Annotated[str | None, BeforeValidator(_text)]


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def parse(cls, raw: Any) -> Self:
        """Validate one ccxt structure; BadResponse names the field that is wrong."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise BadResponse(_describe(cls.__name__, exc)) from None


def _describe(what: str, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    got = repr(first.get("input"))[:60]
    return f"bad {what} from the exchange: field {where!r}: {first['msg']} (got {got}){more}"


def _bad(what: str, field: str, problem: str) -> BadResponse:
    return BadResponse(f"bad {what} from the exchange: field {field!r}: {problem}")


def _need(value: Decimal | None, what: str, field: str, *, positive: bool = False) -> Decimal:
    if value is None:
        raise _bad(what, field, "missing")
    if value < 0 or (positive and value == 0):
        raise _bad(what, field, f"must be {'positive' if positive else '>= 0'}, got {value}")
    return value


def _side(value: str | None, what: str) -> Side:
    try:
        return Side((value or "").lower())
    except ValueError:
        raise _bad(what, "side", f"expected buy or sell, got {value!r}") from None


# -- markets ------------------------------------------------------------------------------

_VENUE_STATUS: Mapping[str, MarketStatus] = {
    # Binance spot exchangeInfo symbol status
    "TRADING": MarketStatus.ONLINE,
    "HALT": MarketStatus.CANCEL_ONLY,
    "AUCTION_MATCH": MarketStatus.CANCEL_ONLY,
    "POST_TRADING": MarketStatus.CANCEL_ONLY,
    "END_OF_DAY": MarketStatus.CANCEL_ONLY,
    "BREAK": MarketStatus.OFFLINE,
    "PRE_TRADING": MarketStatus.OFFLINE,
    "PENDING_TRADING": MarketStatus.OFFLINE,
    # Coinbase Advanced product status (and Kraken's pair status, same words)
    "online": MarketStatus.ONLINE,
    "offline": MarketStatus.OFFLINE,
    "delisted": MarketStatus.OFFLINE,
    "cancel_only": MarketStatus.CANCEL_ONLY,
    "post_only": MarketStatus.POST_ONLY,
    "limit_only": MarketStatus.LIMIT_ONLY,
}
_ORDERED = ("ONLINE", "LIMIT_ONLY", "POST_ONLY", "CANCEL_ONLY", "OFFLINE")
_SEVERITY = {MarketStatus(name): rank for rank, name in enumerate(_ORDERED)}
_FLAG_STATUS = (
    ("trading_disabled", MarketStatus.OFFLINE),
    ("is_disabled", MarketStatus.OFFLINE),
    ("cancel_only", MarketStatus.CANCEL_ONLY),
    ("auction_mode", MarketStatus.CANCEL_ONLY),
    ("view_only", MarketStatus.CANCEL_ONLY),
    ("post_only", MarketStatus.POST_ONLY),
    ("limit_only", MarketStatus.LIMIT_ONLY),
)


class VenueFlags(Wire):
    """The few fields of a market's raw `info` that say whether it trades."""

    status: Text = None
    trading_disabled: bool | None = None
    is_disabled: bool | None = None
    cancel_only: bool | None = None
    auction_mode: bool | None = None
    view_only: bool | None = None
    post_only: bool | None = None
    limit_only: bool | None = None


class MinMax(Wire):
    min: Num = None
    max: Num = None


class Limits(Wire):
    amount: MinMax = Field(default_factory=MinMax)
    cost: MinMax = Field(default_factory=MinMax)
    price: MinMax = Field(default_factory=MinMax)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class Precision(Wire):
    price: Num = None
    amount: Num = None


class MarketWire(Wire):
    symbol: str = Field(min_length=1)
    base: str = Field(min_length=1)
    quote: str = Field(min_length=1)
    active: bool | None = None
    spot: bool | None = None
    maker: Num = None
    taker: Num = None
    precision: Precision = Field(default_factory=Precision)
    limits: Limits = Field(default_factory=Limits)
    venue: VenueFlags = Field(default_factory=VenueFlags)

    @model_validator(mode="before")
    @classmethod
    def _venue_from_info(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        info = data.get("info")
        out = {k: v for k, v in data.items() if k != "info" and v is not None}
        if isinstance(info, Mapping):
            keep = set(VenueFlags.model_fields)
            out["venue"] = {k: v for k, v in info.items() if k in keep and v is not None}
        return out

    def status(self) -> MarketStatus:
        found = MarketStatus.ONLINE
        flags = self.venue
        named = _VENUE_STATUS.get(flags.status or "")
        if named is not None:
            found = named
        for flag, status in _FLAG_STATUS:
            if getattr(flags, flag) and _SEVERITY[status] > _SEVERITY[found]:
                found = status
        if self.active is False and found is MarketStatus.ONLINE:
            found = MarketStatus.OFFLINE
        return found

    def to_domain(self, precision_mode: int, *, reference_price: Decimal | None = None) -> Market:
        """`reference_price` (e.g. the last price) is needed in SIGNIFICANT_DIGITS mode, where
        the price step depends on the price: the step is exact near that price only, so
        refresh markets as prices move. The amount step there is taken at the minimum size."""
        what = f"market {self.symbol}"
        mode = _mode(precision_mode)
        min_amount = self.limits.amount.min
        if mode is PrecisionMode.SIGNIFICANT_DIGITS and reference_price is None:
            raise ValueError(
                f"{what}: precision mode SIGNIFICANT_DIGITS needs reference_price= "
                "(e.g. the last traded price) to derive a price increment"
            )
        price_inc = _increment(self.precision.price, mode, what, "precision.price", reference_price)
        amount_inc = _increment(self.precision.amount, mode, what, "precision.amount", min_amount)
        min_size = _need(min_amount, what, "limits.amount.min") if min_amount else amount_inc
        min_notional = (
            _need(self.limits.cost.min, what, "limits.cost.min")
            if (self.limits.cost.min is not None)
            else ZERO
        )
        return Market(
            symbol=self.symbol,
            base=self.base,
            quote=self.quote,
            price_increment=price_inc,
            amount_increment=amount_inc,
            min_size=min_size,
            min_notional=min_notional,
            status=self.status(),
            # A rebate is planned as zero: never count on being paid to trade.
            maker_fee=max(_fee(self.maker, what, "maker"), ZERO),
            taker_fee=max(_fee(self.taker, what, "taker"), ZERO),
        )


def _mode(value: int) -> PrecisionMode:
    try:
        return PrecisionMode(int(value))
    except ValueError:
        raise ValueError(
            f"unknown ccxt precisionMode {value!r}: expected 2 (DECIMAL_PLACES), "
            "3 (SIGNIFICANT_DIGITS) or 4 (TICK_SIZE); pass exchange.precisionMode"
        ) from None


def _fee(value: Decimal | None, what: str, field: str) -> Decimal:
    if value is None:
        raise _bad(what, field, "missing fee rate")
    return value


def _increment(
    value: Decimal | None, mode: PrecisionMode, what: str, field: str, ref: Decimal | None
) -> Decimal:
    if value is None:
        raise _bad(what, field, "missing")
    if mode is PrecisionMode.TICK_SIZE:
        step = value
    else:
        if value != value.to_integral_value():
            raise _bad(what, field, f"{mode.name} needs a whole number of digits, got {value}")
        digits = int(value)
        if mode is PrecisionMode.DECIMAL_PLACES:
            step = Decimal(1).scaleb(-digits)
        else:
            if digits < 1:
                raise _bad(what, field, f"needs at least 1 significant digit, got {digits}")
            if ref is None or ref <= 0:
                raise _bad(what, field, "SIGNIFICANT_DIGITS needs a positive reference value")
            step = Decimal(1).scaleb(ref.adjusted() - digits + 1)
    if step <= 0:
        raise _bad(what, field, f"increment must be positive, got {step}")
    return step


def parse_markets(
    raw: Mapping[str, Any] | Iterable[Any], precision_mode: int, *, spot_only: bool = True
) -> tuple[dict[str, Market], list[str]]:
    """ccxt's `exchange.markets` (or a list of market dicts) -> (markets by symbol, problems).

    One malformed market is reported in `problems` and left out instead of failing the lot.
    """
    items = raw.values() if isinstance(raw, Mapping) else raw
    markets: dict[str, Market] = {}
    problems: list[str] = []
    for item in items:
        try:
            wire = MarketWire.parse(item)
            if spot_only and wire.spot is False:
                continue
            markets[wire.symbol] = wire.to_domain(precision_mode)
        except (BadResponse, ValueError) as exc:
            problems.append(str(exc))
    return markets, problems


# -- quotes, books, candles, fees ---------------------------------------------------------


class TickerWire(Wire):
    symbol: str = Field(min_length=1)
    bid: Num = None
    ask: Num = None
    last: Num = None
    close: Num = None
    timestamp: Ms = None

    def to_domain(self, *, received_ms: int | None = None) -> Quote:
        """`received_ms` dates tickers that carry no timestamp (Binance bookTicker). A missing
        last price falls back to close, then to the mid."""
        what = f"ticker {self.symbol}"
        bid = _need(self.bid, what, "bid", positive=True)
        ask = _need(self.ask, what, "ask", positive=True)
        if bid > ask:
            raise _bad(what, "bid", f"crossed quote: bid {bid} above ask {ask}")
        last = self.last if self.last is not None else self.close
        last = _need(last, what, "last", positive=True) if last is not None else (bid + ask) / 2
        ts = self.timestamp if self.timestamp is not None else received_ms
        if ts is None:
            raise _bad(what, "timestamp", "missing (pass received_ms= to date it)")
        return Quote(symbol=self.symbol, bid=bid, ask=ask, last=last, ts=ts)


class LevelWire(Wire):
    price: Num
    amount: Num

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if isinstance(data, list | tuple) and len(data) >= 2:
            return {"price": data[0], "amount": data[1]}
        return data


class OrderBookWire(Wire):
    symbol: Text = None
    bids: list[LevelWire]
    asks: list[LevelWire]
    timestamp: Ms = None

    def to_domain(self, *, symbol: str | None = None, received_ms: int | None = None) -> OrderBook:
        name = self.symbol or symbol
        what = f"order book {name}"
        if not name:
            raise _bad(what, "symbol", "missing")
        bids = _levels(self.bids, what, "bids", descending=True)
        asks = _levels(self.asks, what, "asks", descending=False)
        if bids and asks and bids[0].price >= asks[0].price:
            raise _bad(what, "bids", f"crossed book: best bid {bids[0].price} >= {asks[0].price}")
        ts = self.timestamp if self.timestamp is not None else received_ms
        if ts is None:
            raise _bad(what, "timestamp", "missing (pass received_ms= to date it)")
        return OrderBook(symbol=name, bids=bids, asks=asks, ts=ts)


def _levels(
    rows: list[LevelWire], what: str, side: str, *, descending: bool
) -> tuple[BookLevel, ...]:
    out: list[BookLevel] = []
    for i, row in enumerate(rows):
        price = _need(row.price, what, f"{side}.{i}.price", positive=True)
        amount = _need(row.amount, what, f"{side}.{i}.amount", positive=True)
        if out and (price >= out[-1].price if descending else price <= out[-1].price):
            order = "descending" if descending else "ascending"
            raise _bad(what, f"{side}.{i}.price", f"levels must be strictly {order}")
        out.append(BookLevel(price=price, amount=amount))
    return tuple(out)


class OhlcvWire(Wire):
    ts: Ms
    open: Num
    high: Num
    low: Num
    close: Num
    volume: Num

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            if len(data) < 6:
                raise ValueError(f"an OHLCV row has 6 values [ts, o, h, l, c, v], got {len(data)}")
            return dict(zip(("ts", "open", "high", "low", "close", "volume"), data, strict=False))
        return data

    def to_domain(self) -> Candle:
        what = "OHLCV row"
        if self.ts is None:
            raise _bad(what, "ts", "missing")
        values = {
            name: _need(getattr(self, name), f"{what} {self.ts}", name)
            for name in ("open", "high", "low", "close", "volume")
        }
        try:
            return Candle(ts=self.ts, **values)
        except ValueError as exc:
            raise BadResponse(f"bad {what} from the exchange: {exc}") from None


class TradingFeeWire(Wire):
    symbol: str = Field(min_length=1)
    maker: Num = None
    taker: Num = None

    def to_domain(self) -> tuple[Decimal, Decimal]:
        """(maker, taker); rebates are planned as zero."""
        what = f"trading fee {self.symbol}"
        return (
            max(_fee(self.maker, what, "maker"), ZERO),
            max(_fee(self.taker, what, "taker"), ZERO),
        )


class AccountWire(Wire):
    free: Num = None
    used: Num = None
    total: Num = None


_BALANCE_META = frozenset({"info", "timestamp", "datetime", "free", "used", "total", "debt"})


class BalanceWire(Wire):
    assets: dict[str, AccountWire]

    @model_validator(mode="before")
    @classmethod
    def _from_ccxt(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "assets" in data:
            return data
        return {"assets": {k: v for k, v in data.items() if k not in _BALANCE_META}}

    def to_domain(self) -> dict[str, Balance]:
        out: dict[str, Balance] = {}
        for asset, acc in sorted(self.assets.items()):
            what = f"balance {asset}"
            free, used = acc.free, acc.used
            if free is None and acc.total is not None:
                free = acc.total - (used or ZERO)
            if used is None:
                used = acc.total - free if (acc.total is not None and free is not None) else ZERO
            out[asset] = Balance(
                asset=asset, free=_need(free, what, "free"), used=_need(used, what, "used")
            )
        return out


# -- fees, orders, trades -----------------------------------------------------------------


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
