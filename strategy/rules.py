"""The trigger-driven rules engine: weighted triggers combine into an entry confidence."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from core.models import ProposalKind, Regime, Side, TradeProposal, Trigger
from strategy.base import BaseStrategy, StrategyContext, ref_price
from strategy.registry import register


class RulesParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "breakout": 0.6,
            "momentum": 0.35,
            "volume_spike": 0.3,
            "rsi_reversion": 0.5,
        },
        description="Trigger kind -> weight in 0..1; a trigger's contribution is weight x "
        "strength, combined as 1 - prod(1 - contribution).",
    )
    min_triggers: int = Field(default=1, ge=1, description="Distinct trigger kinds needed.")
    min_score: float = Field(default=0.5, ge=0, le=1, description="Combined score needed.")
    regimes: tuple[Regime, ...] = Field(
        default=(Regime.BULL, Regime.CHOP), description="Regimes in which entries are proposed."
    )


@register("rules")
class RulesStrategy(BaseStrategy):
    """Weighted triggers (breakout, momentum, volume spike, RSI) combine into an entry score."""

    Params = RulesParams
    supports_backtest = True
    __slots__ = ()

    def propose(self, ctx: StrategyContext) -> Sequence[TradeProposal]:
        p: RulesParams = self.params
        if ctx.regime not in p.regimes or not ctx.triggers:
            return ()
        by_symbol: dict[str, list[Trigger]] = {}
        for t in ctx.triggers:
            if t.kind in p.weights:
                by_symbol.setdefault(t.symbol, []).append(t)
        out: list[TradeProposal] = []
        for symbol in sorted(by_symbol):
            if symbol in ctx.positions:
                continue
            trig = by_symbol[symbol]
            kinds = {t.kind for t in trig}
            if len(kinds) < p.min_triggers:
                continue
            miss = 1.0
            for t in trig:
                miss *= 1.0 - min(1.0, p.weights[t.kind] * t.strength)
            score = round(1.0 - miss, 6)
            if score < p.min_score:
                continue
            ref = ref_price(ctx, symbol)
            if ref is None:
                continue
            out.append(
                TradeProposal(
                    strategy=self.name,
                    symbol=symbol,
                    side=Side.BUY,
                    kind=ProposalKind.ENTRY,
                    confidence=score,
                    reason="+".join(sorted(kinds)),
                    ref_price=ref,
                )
            )
        return out
