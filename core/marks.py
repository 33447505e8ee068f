"""Marks: the price each held position is valued at, behind the triggers' bad-tick guard.

Every price that values a position, marks equity, moves the high-water mark or a trailing
stop's peak, or feeds a loss breaker comes from `guarded_marks`. A price the guard calls an
outlier (far from the recent median close without the volume to back it, see
`core.triggers.is_outlier`) is replaced by that median for this cycle, so one bad print
cannot lift the high-water mark or trip a latched drawdown breaker. A real move that lasts
moves the median too, and from then on the price is used again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import NamedTuple

from core.config import TriggerConfig
from core.features import SymbolFeatures
from core.models import Quote, QuoteBoard
from core.triggers import is_outlier


class Marks(NamedTuple):
    prices: Mapping[str, Decimal]  # symbol -> the price it is valued at
    guarded: tuple[str, ...]  # "SYM price P vs median M": prices the guard replaced


def guarded_marks(
    symbols: Iterable[str],
    quotes: Mapping[str, Quote],
    features: Mapping[str, SymbolFeatures],
    cfg: TriggerConfig,
) -> Marks:
    """The quote's last price, else the latest closed candle's close; the median close of
    the bars before when that price is an outlier above it. No price, no mark."""
    out: dict[str, Decimal] = {}
    guarded: list[str] = []
    board = QuoteBoard.of(quotes)
    k_med, k_vavg = cfg.feature_keys[:2]
    for sym in symbols:
        f = features.get(sym)
        price = board.last(sym)
        if price is None:
            if f is None:
                continue
            price = Decimal(repr(f.close))
        if f is not None:
            med = f.values.get(k_med)
            if med is not None and med > 0.0:
                fp = float(price)  # through a string: once per position, not twice
                if med < fp and is_outlier(fp, f.volume, med, f.values.get(k_vavg), cfg.outlier):
                    guarded.append(f"{sym} price {price} vs median {med:g}")
                    price = Decimal(repr(med))
        out[sym] = price
    return Marks(out, tuple(guarded))
