"""The strategy plugin surface: an immutable context in, proposals out. No exchange in reach."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from core.config import StrategyBudget
from core.features import SymbolFeatures
from core.models import Candle, Position, ProposalKind, Quote, Regime, TradeProposal, Trigger


class NoParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CandleHistory:
    """Read-only access to recent closed candles, materialised only when a strategy asks."""

    __slots__ = ("_source",)

    def __init__(self, source: Any) -> None:
        self._source = source

    def recent(self, symbol: str, n: int) -> tuple[Candle, ...]:
        result: tuple[Candle, ...] = self._source.recent_candles(symbol, n)
        return result


@dataclass(frozen=True, slots=True)
class StrategyContext:
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


class BaseStrategy:
    """Subclass, declare `Params`, implement `propose`, decorate with `@register("name")`."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    supports_backtest: ClassVar[bool] = True
    history_bars: ClassVar[int] = 0  # raw candles it reads via ctx.history (0: none)

    __slots__ = ("params",)

    def __init__(self, params: Any) -> None:
        self.params = params

    @classmethod
    def required_features(cls, params: Any) -> frozenset[str]:
        """Feature keys (see core.features) this strategy reads."""
        return frozenset()

    def propose(self, ctx: StrategyContext) -> Sequence[TradeProposal]:
        raise NotImplementedError


def aggregate(proposals: Sequence[TradeProposal]) -> list[TradeProposal]:
    """Keep the highest-confidence proposal per (symbol, kind); ties go to the strategy name
    that sorts first, so the outcome never depends on dict order."""
    best: dict[tuple[str, str], TradeProposal] = {}
    for p in proposals:
        key = (p.symbol, p.kind.value)
        cur = best.get(key)
        if (
            cur is None
            or p.confidence > cur.confidence
            or (p.confidence == cur.confidence and p.strategy < cur.strategy)
        ):
            best[key] = p
    # Exits sort first; then by confidence, symbol and strategy, so order never depends on
    # the order strategies ran in.
    return sorted(
        best.values(),
        key=lambda p: (p.kind is not ProposalKind.EXIT, -p.confidence, p.symbol, p.strategy),
    )
