"""Symbols of the fake exchange: filters, statuses and number formatting as Binance shows them.

Filters come, in this order, from markets the caller passes, from the real exchangeInfo in
../shared/data (real tick sizes, lot steps and minimum notionals of 2021-10-12), or from a
plausible fallback derived from the price level.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.models import Market, MarketStatus, OrderStatus

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
EXCHANGE_INFO_FILE = SHARED_DATA / "exchange_api/binance_spot/exchange_info_full_20211012.json"

# Rough 2024 prices for synthetic candles and fallback filters; anything else starts at 100.
REFERENCE_PRICES: dict[str, float] = {
    "BTC": 60_000.0, "ETH": 3_000.0, "BNB": 550.0, "SOL": 150.0, "XRP": 0.6, "DOGE": 0.15,
    "ADA": 0.45, "AVAX": 30.0, "LINK": 15.0, "LTC": 80.0, "BCH": 400.0, "ATOM": 8.0,
    "NEAR": 5.0, "MATIC": 0.6, "UNI": 8.0, "TRX": 0.12, "SHIB": 0.00002, "DOT": 6.0,
}  # fmt: skip

ORDER_STATUS = {
    OrderStatus.NEW: "NEW",
    OrderStatus.OPEN: "NEW",
    OrderStatus.PARTIAL: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
    OrderStatus.REJECTED: "REJECTED",
    OrderStatus.FAILED: "REJECTED",
}
# The sim's statuses that stand for Binance's BREAK and HALT (both: no new orders, no fills).
SYMBOL_STATUS = {
    "TRADING": MarketStatus.ONLINE,
    "BREAK": MarketStatus.OFFLINE,
    "HALT": MarketStatus.CANCEL_ONLY,
}
_BINANCE_STATUS = {MarketStatus.OFFLINE: "BREAK", MarketStatus.CANCEL_ONLY: "HALT"}


def market_status_name(status: MarketStatus) -> str:
    return _BINANCE_STATUS.get(status, "TRADING")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A symbol as exchangeInfo shows it: the sim's Market plus Binance-only filter bounds."""

    market: Market
    id: str
    min_price: Decimal
    max_price: Decimal
    max_qty: Decimal
    base_precision: int = 8
    quote_precision: int = 8


def symbol_id(symbol: str) -> str:
    return symbol.replace("/", "")


def reference_price(symbol: str) -> float:
    return REFERENCE_PRICES.get(symbol.split("/")[0], 100.0)


def _dec(text: str) -> Decimal:
    d = Decimal(text)
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


@lru_cache(maxsize=4)
def _exchange_info_symbols(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return {s["symbol"]: s for s in data["symbols"]}


def spec_from_exchange_info(symbol: str, raw: Mapping[str, Any]) -> SymbolSpec:
    filters = {f["filterType"]: f for f in raw["filters"]}
    price, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {"minNotional": "0"}
    base, quote = symbol.split("/")
    market = Market(
        symbol=symbol,
        base=base,
        quote=quote,
        price_increment=_dec(price["tickSize"]),
        amount_increment=_dec(lot["stepSize"]),
        min_size=_dec(lot["minQty"]),
        min_notional=_dec(notional["minNotional"]),
    )
    return SymbolSpec(
        market=market,
        id=raw["symbol"],
        min_price=_dec(price["minPrice"]),
        max_price=_dec(price["maxPrice"]),
        max_qty=_dec(lot["maxQty"]),
        base_precision=int(raw.get("baseAssetPrecision", 8)),
        quote_precision=int(raw.get("quotePrecision", 8)),
    )


def fallback_market(symbol: str, price: float) -> Market:
    """Plausible filters for a price level: a tick of about 1e-6 of the price (at most 0.01),
    a lot step worth 0.1 to 1 quote units, and the minimum notional of 5 Binance has now."""
    base, quote = symbol.split("/")
    exp = math.floor(math.log10(price))
    tick = Decimal(1).scaleb(max(-8, min(-2, exp - 4)))
    step = Decimal(1).scaleb(max(-8, min(0, math.floor(math.log10(1 / price)))))
    return Market(
        symbol=symbol,
        base=base,
        quote=quote,
        price_increment=tick,
        amount_increment=step,
        min_size=step,
        min_notional=Decimal(5),
    )


def _wide(market: Market) -> SymbolSpec:
    return SymbolSpec(
        market=market,
        id=symbol_id(market.symbol),
        min_price=market.price_increment,
        max_price=Decimal(10_000_000),
        max_qty=Decimal(10**10),
    )


def build_specs(
    symbols: Sequence[str],
    *,
    markets: Mapping[str, Market] | None,
    exchange_info_path: Path | None,
    prices: Mapping[str, float],
) -> dict[str, SymbolSpec]:
    """Explicit markets first, then the real exchangeInfo file, then fallback filters."""
    real: dict[str, dict[str, Any]] = {}
    if exchange_info_path is not None and exchange_info_path.is_file():
        real = _exchange_info_symbols(str(exchange_info_path))
    out: dict[str, SymbolSpec] = {}
    for symbol in symbols:
        if symbol.count("/") != 1 or not all(symbol.split("/")):
            raise ValueError(f"symbol {symbol!r} must look like BASE/QUOTE, e.g. BTC/USDT")
        if markets is not None and symbol in markets:
            out[symbol] = _wide(markets[symbol])
        elif symbol_id(symbol) in real:
            out[symbol] = spec_from_exchange_info(symbol, real[symbol_id(symbol)])
        else:
            out[symbol] = _wide(fallback_market(symbol, prices[symbol]))
    return out


# ---- numbers ---------------------------------------------------------------------------------


def fmt(x: Decimal, places: int = 8) -> str:
    """A Decimal as Binance prints it: fixed point with `places` decimals."""
    return f"{x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):f}"


def ffmt(x: float) -> str:
    return f"{x:.8f}"


def floor_to(x: Decimal, inc: Decimal) -> Decimal:
    return (x / inc).to_integral_value(ROUND_FLOOR) * inc
