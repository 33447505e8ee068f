"""The files `vigil strategies new NAME` writes: a working strategy to edit, and its test.

The template is a real strategy (an RSI dip with a trend guard) that trades on ordinary data,
so the first backtest shows trades; tests/integration/test_user_strategies.py runs it from
outside exactly as docs/strategies.md describes.
"""

from __future__ import annotations

STRATEGY = '''"""{name}: buy oversold RSI dips while price holds near its long trend.

Written by `vigil strategies new {name}`. Edit freely; docs/strategies.md explains every part.
Rules for this file (checked when it is loaded; a violation refuses it with file:line):
no I/O (files, network, databases), no wall clock (time.time, datetime.now), no global
random. Everything a decision needs is in the context the pipeline hands to propose().
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from strategy.base import (
    BaseStrategy,
    ProposalKind,
    Regime,
    Side,
    StrategyContext,
    TradeProposal,
    ref_price,
)
from strategy.registry import register


class Params(BaseModel):
    """Validated from strategies.yaml (strategies.{name}.params); errors name the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # a typo in a key is an error

    rsi_period: int = Field(default=14, ge=2, le=200, description="RSI period (candles).")
    entry_below: float = Field(
        default=30.0, gt=0, lt=50, description="Propose an entry when RSI is at or below this."
    )
    exit_above: float = Field(
        default=55.0, gt=50, lt=100, description="Propose an exit when RSI reaches this."
    )
    trend_ema: int = Field(default=200, ge=10, description="Long EMA period (candles).")
    max_below_trend_pct: float = Field(
        default=3.0,
        ge=0,
        description="Skip dips when the close is more than this % below the long EMA "
        "(a falling knife, not a dip).",
    )
    regimes: tuple[Regime, ...] = Field(
        default=(Regime.BULL, Regime.CHOP), description="Market regimes in which to enter."
    )

    @model_validator(mode="after")
    def _check(self) -> Params:
        if self.entry_below >= self.exit_above:
            raise ValueError("entry_below must be below exit_above")
        return self


@register("{name}")
class Strategy(BaseStrategy):
    """Buy RSI dips near the long trend; sell when RSI recovers."""

    Params = Params

    @classmethod
    def required_features(cls, params: Any) -> frozenset[str]:
        # The indicators this strategy reads, by key (kind:period; see docs/strategies.md).
        # The pipeline computes exactly these, once per closed candle, for every symbol.
        return frozenset({{f"rsi:{{params.rsi_period}}", f"ema:{{params.trend_ema}}"}})

    def propose(self, ctx: StrategyContext) -> Sequence[TradeProposal]:
        p: Params = self.params
        rsi_key, ema_key = f"rsi:{{p.rsi_period}}", f"ema:{{p.trend_ema}}"
        out: list[TradeProposal] = []

        # Exits first: only for positions this strategy opened. The stop loss, take profit,
        # trailing stop and time limit in policy.yaml (exits:) apply on top, to every position.
        for symbol, pos in sorted(ctx.positions.items()):
            f = ctx.features.get(symbol)
            if pos.strategy != self.name or f is None:
                continue
            rsi, price = f.values.get(rsi_key), ref_price(ctx, symbol)
            if rsi is not None and price is not None and rsi >= p.exit_above:
                out.append(
                    TradeProposal(
                        strategy=self.name,
                        symbol=symbol,
                        side=Side.SELL,
                        kind=ProposalKind.EXIT,
                        confidence=1.0,
                        reason="rsi_recovered",
                        ref_price=price,
                        quantity=pos.quantity,  # the whole position
                        reduce_only=True,
                    )
                )

        # Entries: only in allowed regimes, only on symbols the universe made eligible.
        if ctx.regime not in p.regimes:
            return out
        for symbol in ctx.eligible:
            f = ctx.features.get(symbol)
            if f is None or symbol in ctx.positions:
                continue
            rsi, trend = f.values.get(rsi_key), f.values.get(ema_key)
            if rsi is None or trend is None:  # still warming up
                continue
            below_trend_pct = (1.0 - f.close / trend) * 100.0
            if rsi > p.entry_below or below_trend_pct > p.max_below_trend_pct:
                continue
            price = ref_price(ctx, symbol)
            if price is None:
                continue
            out.append(
                TradeProposal(
                    strategy=self.name,
                    symbol=symbol,
                    side=Side.BUY,
                    kind=ProposalKind.ENTRY,
                    # 0..1; the deeper the dip, the higher. Risk ranks entries by it.
                    confidence=round(min(1.0, 0.5 + (p.entry_below - rsi) / 60.0), 6),
                    reason="rsi_dip",
                    ref_price=price,  # no quantity: the risk stage sizes entries
                )
            )
        return out
'''

TEST = '''"""Tests for the {name} strategy. Run: python -m pytest {test_file}

They backtest the strategy through vigil's own pipeline (the same risk checks and simulated
exchange as `vigil backtest`) over generated candles. They pass as written; keep them passing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backtest.harness import backtest_strategy
from runner.strategy_loader import load_user_strategies
from strategy import registry

HERE = Path(__file__).resolve().parent


def test_it_trades_and_every_trade_is_its_own() -> None:
    result = backtest_strategy("{name}", strategies_path=HERE)
    assert result.trades, "no trades: the entry rule never fired, or risk rejected every entry"
    assert {{t.strategy for t in result.trades}} == {{"{name}"}}


def test_same_candles_same_trades() -> None:
    a = backtest_strategy("{name}", strategies_path=HERE)
    b = backtest_strategy("{name}", strategies_path=HERE)
    assert [(t.symbol, t.entry_ts, t.exit_ts, t.pnl) for t in a.trades] == [
        (t.symbol, t.entry_ts, t.exit_ts, t.pnl) for t in b.trades
    ]


def test_bad_params_are_refused() -> None:
    load_user_strategies([HERE])  # what vigil does with strategies_path / --strategy-path
    params = registry.get("{name}").Params
    with pytest.raises(ValidationError, match="entry_below"):
        params.model_validate({{"entry_below": 70}})
'''


def strategy_source(name: str) -> str:
    return STRATEGY.format(name=name)


def test_source(name: str) -> str:
    return TEST.format(name=name, test_file=f"test_{name}.py")
