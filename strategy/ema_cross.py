"""EMA-cross trend follower: enter on a golden cross, leave its own positions on a death cross."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.models import ProposalKind, Regime, Side, TradeProposal
from strategy.base import BaseStrategy, StrategyContext, ref_price
from strategy.registry import register


class EmaCrossParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fast: int = Field(default=12, ge=2, description="Fast EMA period (candles).")
    slow: int = Field(default=26, ge=3, description="Slow EMA period (candles).")
    min_gap_pct: float = Field(
        default=0.0, ge=0, description="After the cross, fast must sit this % above slow."
    )
    regimes: tuple[Regime, ...] = Field(
        default=(Regime.BULL, Regime.CHOP), description="Regimes in which entries are proposed."
    )
    exit_on_cross_down: bool = Field(
        default=True, description="Propose exiting this strategy's positions on a death cross."
    )

    @cached_property
    def feature_keys(self) -> tuple[str, str]:
        return f"ema:{self.fast}", f"ema:{self.slow}"

    @model_validator(mode="after")
    def _check(self) -> EmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


@register("ema_cross")
class EmaCrossStrategy(BaseStrategy):
    """Enter on a golden EMA cross; leave its own positions on a death cross."""

    Params = EmaCrossParams
    supports_backtest = True
    __slots__ = ()

    @classmethod
    def required_features(cls, params: Any) -> frozenset[str]:
        return frozenset({f"ema:{params.fast}", f"ema:{params.slow}"})

    def propose(self, ctx: StrategyContext) -> Sequence[TradeProposal]:
        p: EmaCrossParams = self.params
        kf, ks = p.feature_keys
        entries_ok = ctx.regime in p.regimes
        gap_min = p.min_gap_pct / 100.0
        out: list[TradeProposal] = []
        features = ctx.features
        for symbol in ctx.eligible:
            f = features.get(symbol)
            if f is None:
                continue
            fast, slow = f.values.get(kf), f.values.get(ks)
            pfast, pslow = f.prev.get(kf), f.prev.get(ks)
            if fast is None or slow is None or pfast is None or pslow is None:
                continue
            held = ctx.positions.get(symbol)
            if entries_ok and held is None and pfast <= pslow and fast > slow:
                gap = fast / slow - 1.0
                if gap < gap_min:
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
                        confidence=round(min(1.0, 0.6 + gap * 20.0), 6),
                        reason="ema_cross_up",
                        ref_price=ref,
                    )
                )
        if p.exit_on_cross_down:
            for symbol, pos in sorted(ctx.positions.items()):
                if pos.strategy != self.name:
                    continue
                f = features.get(symbol)
                if f is None:
                    continue
                fast, slow = f.values.get(kf), f.values.get(ks)
                pfast, pslow = f.prev.get(kf), f.prev.get(ks)
                if None in (fast, slow, pfast, pslow):
                    continue
                if pfast >= pslow and fast < slow:  # type: ignore[operator]
                    ref = ref_price(ctx, symbol)
                    if ref is None:
                        continue
                    out.append(
                        TradeProposal(
                            strategy=self.name,
                            symbol=symbol,
                            side=Side.SELL,
                            kind=ProposalKind.EXIT,
                            confidence=1.0,
                            reason="ema_cross_down",
                            ref_price=ref,
                            quantity=pos.quantity,
                            reduce_only=True,
                        )
                    )
        return out
