"""Market metadata for offline runs: derived from candles when no exchange is asked."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

from core.candles import CandleSeries
from core.models import Market

# Binance spot's current minimum order value for USDT pairs, and its base fee rate.
DEFAULT_MIN_NOTIONAL = Decimal(5)
DEFAULT_FEE = Decimal("0.001")


def _decimals(values: list[float]) -> int:
    best = 0
    for x in values:
        text = repr(x)
        if "e" in text or "E" in text:
            return 8
        if "." in text:
            best = max(best, len(text.split(".")[1].rstrip("0")))
    return min(best, 8)


def market_for(series: CandleSeries, *, quote: str | None = None) -> Market:
    """A plausible market: price grid from the data's own decimals, an amount grid worth
    about 0.1 quote units a step, Binance's minimum notional and fees."""
    base, q = series.symbol.split("/")
    sample = series.close[-500:].tolist() if len(series) else [1.0]
    price_dec = max(_decimals(sample), 2 if sample[-1] >= 1 else 0)
    last = sample[-1] if sample else 1.0
    amount_exp = math.floor(math.log10(0.1 / last)) if last > 0 else -8
    amount_exp = max(-8, min(amount_exp, 0))
    return Market(
        symbol=series.symbol,
        base=base,
        quote=quote or q,
        price_increment=Decimal(1).scaleb(-price_dec),
        amount_increment=Decimal(1).scaleb(amount_exp),
        min_size=Decimal(1).scaleb(amount_exp),
        min_notional=DEFAULT_MIN_NOTIONAL,
        maker_fee=DEFAULT_FEE,
        taker_fee=DEFAULT_FEE,
    )


def markets_from_series(series: Mapping[str, CandleSeries]) -> dict[str, Market]:
    return {s: market_for(v) for s, v in sorted(series.items())}
