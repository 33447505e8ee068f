"""Builders for pipeline test data: markets, quotes, candles, features and strategy contexts.

Two ways to get features:
- `feed` / `features_of` run candles through a real `FeatureBank`, for realistic series;
- `make_features` builds a `SymbolFeatures` directly, for exact threshold tests where the
  indicator value must sit precisely on a boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from core.config import StrategyBudget
from core.features import FeatureBank, SymbolFeatures
from core.models import (
    Candle,
    Market,
    MarketStatus,
    Position,
    Quote,
    Regime,
    Trigger,
)
from strategy.base import StrategyContext

# 2024-01-01T00:00:00Z, a Monday: day and ISO-week boundaries fall on it.
T0 = 1_704_067_200_000
MINUTE = 60_000
TF = 5 * MINUTE  # the default 5m timeframe

Num = int | float | str | Decimal


def dec(x: Num) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


# --------------------------------------------------------------------------- markets, quotes


def market(
    symbol: str,
    *,
    status: MarketStatus = MarketStatus.ONLINE,
    price_increment: Num = "0.01",
    amount_increment: Num = "0.0001",
    min_size: Num = "0.0001",
    min_notional: Num = "5",
    maker_fee: Num = "0.001",
    taker_fee: Num = "0.001",
) -> Market:
    base, _, quote_ccy = symbol.partition("/")
    return Market(
        symbol=symbol,
        base=base,
        quote=quote_ccy,
        price_increment=dec(price_increment),
        amount_increment=dec(amount_increment),
        min_size=dec(min_size),
        min_notional=dec(min_notional),
        status=status,
        maker_fee=dec(maker_fee),
        taker_fee=dec(taker_fee),
    )


def markets(*symbols: str, **kw: Any) -> dict[str, Market]:
    return {s: market(s, **kw) for s in symbols}


def quote(symbol: str, mid: Num = 100, *, spread_bps: Num = 2, ts: int = T0) -> Quote:
    """A quote centred on `mid` whose spread is exactly `spread_bps`."""
    m = dec(mid)
    half = m * dec(spread_bps) / Decimal(20_000)
    return Quote(symbol=symbol, bid=m - half, ask=m + half, last=m, ts=ts)


def quotes(*symbols: str, **kw: Any) -> dict[str, Quote]:
    return {s: quote(s, **kw) for s in symbols}


# --------------------------------------------------------------------------- candles


def candle(
    ts: int,
    close: Num,
    *,
    open: Num | None = None,
    high: Num | None = None,
    low: Num | None = None,
    volume: Num = 1,
) -> Candle:
    c = dec(close)
    o = dec(open) if open is not None else c
    h = dec(high) if high is not None else max(o, c)
    lo = dec(low) if low is not None else min(o, c)
    return Candle(ts=ts, open=o, high=h, low=lo, close=c, volume=dec(volume))


def series(
    closes: Sequence[Num],
    *,
    volumes: Sequence[Num] | None = None,
    start_ms: int = T0,
    tf_ms: int = TF,
) -> list[Candle]:
    """Candles whose open is the previous close (the first opens at its own close) and whose
    high and low are the larger and smaller of open and close."""
    out: list[Candle] = []
    prev: Num | None = None
    for i, c in enumerate(closes):
        v = volumes[i] if volumes is not None else 1
        out.append(candle(start_ms + i * tf_ms, c, open=prev if prev is not None else c, volume=v))
        prev = c
    return out


def last_ts(n_candles: int, *, start_ms: int = T0, tf_ms: int = TF) -> int:
    """Open time of the last of `n_candles` candles built by `series`."""
    return start_ms + (n_candles - 1) * tf_ms


# --------------------------------------------------------------------------- features


def feed(
    candles: Iterable[Candle],
    keys: Iterable[str],
    *,
    symbol: str = "BTC/USDT",
    bank: FeatureBank | None = None,
    history: int = 64,
) -> FeatureBank:
    """Push `candles` for `symbol` into `bank` (a new one over `keys` when None)."""
    b = bank if bank is not None else FeatureBank(keys, history=history)
    for c in candles:
        b.push_candle(symbol, c)
    return b


def features_of(
    closes: Sequence[Num],
    keys: Iterable[str],
    *,
    symbol: str = "BTC/USDT",
    volumes: Sequence[Num] | None = None,
    start_ms: int = T0,
    tf_ms: int = TF,
) -> SymbolFeatures:
    """The features after the last of `closes`, computed by a real FeatureBank."""
    bank = feed(
        series(closes, volumes=volumes, start_ms=start_ms, tf_ms=tf_ms), keys, symbol=symbol
    )
    f = bank.get(symbol)
    assert f is not None
    return f


def volume_features(
    symbol: str,
    quote_volume_24h: float,
    *,
    key: str = "qvol:288",
    end_ts: int = T0,
    tf_ms: int = TF,
    price: float = 100.0,
) -> SymbolFeatures:
    """Features whose 24h quote volume is (about) `quote_volume_24h`, from a real FeatureBank."""
    n = int(key.partition(":")[2])
    per_bar = quote_volume_24h / (n * price)
    start = end_ts - (n - 1) * tf_ms
    bank = FeatureBank([key])
    f: SymbolFeatures | None = None
    for i in range(n):
        f = bank.push(symbol, start + i * tf_ms, price, price, price, price, per_bar)
    assert f is not None
    return f


def make_features(
    symbol: str = "X/USDT",
    *,
    ts: int = T0,
    close: float = 100.0,
    open: float | None = None,
    high: float | None = None,
    low: float | None = None,
    volume: float = 1.0,
    values: Mapping[str, float | None] | None = None,
    prev: Mapping[str, float | None] | None = None,
    bars: int = 1_000,
) -> SymbolFeatures:
    """A SymbolFeatures with exactly the indicator values given."""
    o = close if open is None else open
    return SymbolFeatures(
        symbol=symbol,
        ts=ts,
        open=o,
        high=max(o, close) if high is None else high,
        low=min(o, close) if low is None else low,
        close=close,
        volume=volume,
        values=dict(values or {}),
        prev=dict(prev or {}),
        bars=bars,
    )


# --------------------------------------------------------------------------- portfolio, strategies


def position(
    symbol: str,
    quantity: Num = 1,
    entry: Num = 100,
    *,
    peak: Num | None = None,
    opened_ms: int = T0,
    entry_fees: Num = 0,
    strategy: str = "",
) -> Position:
    return Position(
        symbol=symbol,
        quantity=dec(quantity),
        avg_entry_price=dec(entry),
        entry_fees=dec(entry_fees),
        opened_ms=opened_ms,
        peak_price=dec(peak) if peak is not None else dec(entry),
        strategy=strategy,
    )


def trigger(symbol: str, kind: str, strength: float = 1.0, ts: int = T0) -> Trigger:
    return Trigger(symbol=symbol, kind=kind, strength=strength, ts=ts)


def context(
    *,
    params: Any,
    regime: Regime = Regime.BULL,
    eligible: Sequence[str] = (),
    triggers: Sequence[Trigger] = (),
    features: Mapping[str, SymbolFeatures] | None = None,
    quotes: Mapping[str, Quote] | None = None,
    positions: Mapping[str, Position] | None = None,
    equity: Num = 10_000,
    ts: int = T0,
    tf_ms: int = TF,
) -> StrategyContext:
    return StrategyContext(
        ts=ts,
        timeframe_ms=tf_ms,
        regime=regime,
        risk_multiplier=Decimal(1),
        eligible=tuple(eligible),
        triggers=tuple(triggers),
        features=MappingProxyType(dict(features or {})),
        quotes=MappingProxyType(dict(quotes or {})),
        positions=MappingProxyType(dict(positions or {})),
        equity=dec(equity),
        budget=StrategyBudget(),
        params=params,
    )
