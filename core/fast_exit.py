"""Exits between cycles, on a streamed price: the cycle's own exit rule, gate and risk check.

Pure: the runner hands in what the engine holds (portfolio, markets, features, the state the
last cycle left, live orders) and the streamed quote, and gets the verdicts and order intents
a cycle would have made for that one exit. The kill switch and the breakers as the last cycle
left them gate it (HALTED: nothing; REDUCING: exits go on), and the risk check refuses a second
sell while one is live (EXIT_PENDING), so a fast exit and the cycle never sell a position twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from core.breakers import trading_state
from core.config import PipelineConfig
from core.exits import exit_proposal
from core.features import SymbolFeatures
from core.marks import guarded_marks
from core.models import (
    ONE,
    EngineState,
    Market,
    Order,
    OrderIntent,
    Quote,
    RiskVerdict,
    TradeProposal,
    TradingState,
)
from core.portfolio import Portfolio, market_exposure, value
from core.risk import RiskInputs, assess


@dataclass(frozen=True, slots=True)
class FastExit:
    proposal: TradeProposal | None
    verdicts: tuple[RiskVerdict, ...] = ()
    intents: tuple[OrderIntent, ...] = ()
    blocked: str = ""  # why nothing was even proposed: kill switch, halted


def plan_fast_exit(
    *,
    symbol: str,
    quote: Quote,
    portfolio: Portfolio,
    markets: Mapping[str, Market],
    features: Mapping[str, SymbolFeatures],
    state: EngineState,
    open_orders: Sequence[Order],
    config: PipelineConfig,
    now_ms: int,
    kill: bool,
    high: Decimal | None = None,
) -> FastExit:
    """`high`: the highest streamed price since the position opened; through the same mark
    guard, it is the trailing stop's peak for this decision when above the stored one."""
    pos = portfolio.positions.get(symbol)
    if pos is None:
        return FastExit(None)
    mode, causes = trading_state(
        state.breakers, config.breakers, kill_switch=kill or state.kill_switch
    )
    if mode is TradingState.HALTED:
        return FastExit(None, blocked=",".join(causes) or "halted")
    quotes = {symbol: quote}
    mark = guarded_marks((symbol,), quotes, features, config.triggers).prices.get(symbol)
    if mark is None:
        return FastExit(None)
    if high is not None and high > pos.peak_price:
        top = Quote(symbol, high, high, high, quote.ts)
        peak = guarded_marks((symbol,), {symbol: top}, features, config.triggers).prices.get(symbol)
        if peak is not None and peak > pos.peak_price:
            pos = replace(pos, peak_price=peak)
    prop = exit_proposal(pos, mark, now_ms, config.exits, markets.get(symbol))
    if prop is None:
        return FastExit(None)
    marks = {symbol: mark}
    ex_all = market_exposure(
        portfolio, marks, open_orders, markets, quotes, config.universe.theme_of
    )
    inputs = RiskInputs(
        now_ms=now_ms,
        state=mode,
        multiplier=ONE,
        eligible=frozenset(),
        markets=markets,
        quotes=quotes,
        books={},
        portfolio=portfolio,
        equity=value(portfolio, marks).equity,
        exposure=ex_all,
        open_orders=tuple(open_orders),
        cooldowns=state.cooldowns,
    )
    verdicts, intents = assess((prop,), inputs, config)
    return FastExit(prop, tuple(verdicts), tuple(intents))
