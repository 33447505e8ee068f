"""The strategy plugin surface: an immutable context in, proposals out. No exchange in reach.

Everything a strategy module needs is importable from here and from strategy.registry:

    from strategy.base import BaseStrategy, ProposalKind, Side, StrategyContext, TradeProposal
    from strategy.registry import register

docs/strategies.md walks through writing, testing and running one.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from core.config import StrategyBudget
from core.context import CandleHistory, StrategyContext
from core.features import SymbolFeatures
from core.indicators import Indicator
from core.models import Candle, Position, ProposalKind, Quote, Regime, Side, TradeProposal, Trigger

__all__ = [
    "BaseStrategy",
    "Candle",
    "CandleHistory",
    "Indicator",
    "NoParams",
    "Position",
    "ProposalKind",
    "Quote",
    "Regime",
    "Side",
    "StrategyBudget",
    "StrategyContext",
    "SymbolFeatures",
    "TradeProposal",
    "Trigger",
    "ref_price",
]


class NoParams(BaseModel):
    """The parameter model of a strategy that takes none."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseStrategy:
    """A strategy: reads a StrategyContext, returns TradeProposals. Pure: no I/O, no clock.

    To write one: subclass, declare `Params` (a pydantic model; the config's
    `strategies.<name>.params` are validated against it and handed to `__init__`), list the
    indicators you read in `required_features` (and define your own in `indicators`),
    implement `propose`, and decorate the class with
    `@register("name")`. The first line of the class docstring is its description in
    `vigil strategies list`. Proposals are requests, not orders: the risk stage sizes entries,
    and may reject any proposal.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    supports_backtest: ClassVar[bool] = True
    history_bars: ClassVar[int] = 0  # raw candles it reads via ctx.history (0: none)
    # Its own indicator kinds (core.indicators.Indicator subclasses), usable in
    # required_features next to the built-ins while this strategy is enabled.
    indicators: ClassVar[tuple[type[Indicator], ...]] = ()

    __slots__ = ("params",)

    def __init__(self, params: Any) -> None:
        self.params = params

    @classmethod
    def required_features(cls, params: Any) -> frozenset[str]:
        """Feature keys (see core.features, e.g. "rsi:14", "ema:50", or a kind of its own
        `indicators`) this strategy reads from ctx.features[symbol].values; the pipeline
        computes exactly the keys some stage needs."""
        return frozenset()

    def propose(self, ctx: StrategyContext) -> Sequence[TradeProposal]:
        """Entries (BUY, ProposalKind.ENTRY) and exits of this strategy's own positions (SELL,
        ProposalKind.EXIT, quantity=position.quantity, reduce_only=True) for this cycle."""
        raise NotImplementedError


def ref_price(ctx: StrategyContext, symbol: str) -> Decimal | None:
    """The price to put in a proposal: the latest quote, else the last close; None if neither."""
    q = ctx.quotes.get(symbol)
    if q is not None:
        return q.last
    f = ctx.features.get(symbol)
    return Decimal(repr(f.close)) if f is not None else None
