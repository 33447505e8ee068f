"""What a strategy sees in one cycle. The cycle (core) builds it; strategies (strategy/) read
it; `strategy.base` re-exports both names for strategy authors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from core.config import StrategyBudget
from core.features import SymbolFeatures
from core.models import Candle, Position, Quote, Regime, Trigger


class CandleSource(Protocol):
    """Whatever keeps recent closed candles (the runner's feature bank)."""

    def recent_candles(self, symbol: str, n: int) -> tuple[Candle, ...]: ...


class CandleHistory:
    """Read-only access to recent closed candles, materialised only when a strategy asks."""

    __slots__ = ("_source",)

    def __init__(self, source: CandleSource) -> None:
        self._source = source

    def recent(self, symbol: str, n: int) -> tuple[Candle, ...]:
        return self._source.recent_candles(symbol, n)


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What one strategy sees in one cycle; built by the pipeline, read-only.

    Every value is as of the latest *closed* candle (`ts` is the cycle time): the candle still
    forming is never in it, so a strategy cannot look ahead.
    """

    ts: int
    timeframe_ms: int
    regime: Regime
    risk_multiplier: Decimal
    eligible: tuple[str, ...]
    triggers: tuple[Trigger, ...]
    features: Mapping[str, SymbolFeatures]
    quotes: Mapping[str, Quote]
    positions: Mapping[str, Position]
    equity: Decimal
    budget: StrategyBudget
    params: Any
    history: CandleHistory | None = None
