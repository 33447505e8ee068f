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

Fees, orders and trades live in ccxt_wire_orders (re-exported here); the shared field types
and the `Wire` base in ccxt_wire_base.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from enum import IntEnum
from typing import Any

from pydantic import Field, model_validator

from core.errors import BadResponse
from core.models import (
    ZERO,
    Balance,
    BookLevel,
    Candle,
    Market,
    MarketStatus,
    OrderBook,
    Quote,
)
from infra.exchange.ccxt_wire_base import Ms as Ms
from infra.exchange.ccxt_wire_base import Num as Num
from infra.exchange.ccxt_wire_base import Text as Text
from infra.exchange.ccxt_wire_base import Wire as Wire
from infra.exchange.ccxt_wire_base import _bad, _need
from infra.exchange.ccxt_wire_orders import ConvertedFill as ConvertedFill
from infra.exchange.ccxt_wire_orders import FeeSource as FeeSource
from infra.exchange.ccxt_wire_orders import FeeWire as FeeWire
from infra.exchange.ccxt_wire_orders import OrderWire as OrderWire
from infra.exchange.ccxt_wire_orders import QuoteFee as QuoteFee
from infra.exchange.ccxt_wire_orders import TradeWire as TradeWire
from infra.exchange.ccxt_wire_orders import fee_in_quote as fee_in_quote
from infra.exchange.ccxt_wire_orders import fill_side_is_buy as fill_side_is_buy


class PrecisionMode(IntEnum):
    """ccxt's precisionMode constants (same values as ccxt.DECIMAL_PLACES etc.)."""

    DECIMAL_PLACES = 2
    SIGNIFICANT_DIGITS = 3
    TICK_SIZE = 4


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
