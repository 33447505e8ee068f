"""The cycle's stages, one function each: typed values in, typed values out.

`core.cycle.run_cycle` composes them in order: gate -> universe -> regime -> breakers ->
cancels -> exits -> triggers -> strategies -> risk -> the next state. Every stage is pure; the
outputs are NamedTuples (immutable, and cheap enough to build several times a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from operator import attrgetter
from types import MappingProxyType
from typing import Any, NamedTuple

from core.breakers import evaluate as evaluate_breakers
from core.breakers import roll_marks, trading_state
from core.config import PipelineConfig, StrategyBudget
from core.context import CandleHistory, StrategyContext
from core.exits import exit_proposal
from core.features import SymbolFeatures
from core.marks import Marks, guarded_marks
from core.models import (
    ZERO,
    BreakerState,
    CancelRequest,
    EngineState,
    EquityMarks,
    Market,
    Order,
    OrderBook,
    OrderIntent,
    Quote,
    Regime,
    RegimeState,
    RiskVerdict,
    TradeProposal,
    TradingState,
    Trigger,
    UniverseResult,
)
from core.orders import is_stale
from core.portfolio import Portfolio, market_exposure, value
from core.ports import Strategy
from core.proposals import aggregate
from core.reasons import CancelReason, NoTradeReason, TriggerReject, UniverseReason
from core.regime import classify, multiplier, update_regime
from core.risk import RiskInputs, assess
from core.triggers import scan
from core.universe import StaticScreen

_WARMING = frozenset({UniverseReason.WARMING_UP, UniverseReason.NO_DATA, TriggerReject.WARMING_UP})


@dataclass(frozen=True, slots=True)
class StrategySlot:
    """One enabled strategy as the cycle runs it: the instance and its configured budget.
    Resolved outside core (strategy.registry.resolve) and handed to the cycle by the runner."""

    name: str
    strategy: Strategy
    budget: StrategyBudget


# --------------------------------------------------------------------------- gate


class Gate(NamedTuple):
    """Marks, equity, the kill switch and the state's expiries, before any decision."""

    marks: Mapping[str, Decimal]  # symbol -> the guarded price each position is valued at
    equity: Decimal
    kill: bool
    kill_reason: str
    cooldowns: Mapping[str, int]
    bans: Mapping[str, int]
    equity_marks: EquityMarks
    notes: tuple[str, ...]


def _expire(m: Mapping[str, int], now_ms: int) -> Mapping[str, int]:
    for v in m.values():
        if v <= now_ms:
            return MappingProxyType({k: v for k, v in m.items() if v > now_ms})
    return m


def gate(
    prior: EngineState,
    portfolio: Portfolio,
    marks: Marks,
    *,
    kill_file: bool,
    kill_reason: str,
    now_ms: int,
) -> Gate:
    equity = value(portfolio, marks.prices).equity
    notes = (
        tuple(f"mark guard: {g}; valued at the median" for g in marks.guarded)
        if marks.guarded
        else ()
    )
    return Gate(
        marks=marks.prices,
        equity=equity,
        kill=prior.kill_switch or kill_file,
        kill_reason=prior.kill_reason or kill_reason,
        cooldowns=_expire(prior.cooldowns, now_ms) if prior.cooldowns else prior.cooldowns,
        bans=_expire(prior.bans, now_ms) if prior.bans else prior.bans,
        equity_marks=roll_marks(prior.marks, equity, now_ms),
        notes=notes,
    )


_NO_MARKS = Marks(MappingProxyType({}), ())


def cycle_marks(
    portfolio: Portfolio,
    quotes: Mapping[str, Quote],
    features: Mapping[str, SymbolFeatures],
    config: PipelineConfig,
) -> Marks:
    """The guarded marks of the held positions (core.marks), computed once per cycle: the
    runner raises trailing peaks with them and hands them to the cycle in the snapshot."""
    if not portfolio.positions:
        return _NO_MARKS
    return guarded_marks(portfolio.positions, quotes, features, config.triggers)


# --------------------------------------------------------------------------- regime


class RegimeView(NamedTuple):
    state: RegimeState
    regime: Regime
    multiplier: Decimal


def regime_stage(
    prior: RegimeState,
    features: Mapping[str, SymbolFeatures],
    config: PipelineConfig,
    now_ms: int,
) -> RegimeView:
    cfg = config.regime
    idx = features.get(cfg.index_symbol)
    state = update_regime(prior, classify(idx, cfg), cfg, now_ms, idx.ts if idx is not None else -1)
    return RegimeView(state, state.regime, multiplier(cfg, state.regime))


# --------------------------------------------------------------------------- breakers


class BreakerView(NamedTuple):
    states: Mapping[str, BreakerState]
    trading: TradingState
    causes: tuple[str, ...]  # what put trading in this state
    notes: tuple[str, ...]


def data_age(
    features: Mapping[str, SymbolFeatures], symbols: Sequence[str], tf_ms: int, now_ms: int
) -> int | None:
    """How old the newest closed candle among `symbols` is; None when there is none."""
    newest = -1
    for f in map(features.get, symbols):
        if f is not None and f.ts > newest:
            newest = f.ts
    return None if newest < 0 else now_ms - (newest + tf_ms)


def breaker_stage(
    prior: Mapping[str, BreakerState],
    config: PipelineConfig,
    *,
    screen: StaticScreen,
    age_ms: int | None,
    api_errors: tuple[int, ...],
    rejections: tuple[int, ...],
    regime: Regime,
    gate: Gate,
    exits_only: str,
    entries_blocked: tuple[str, ...],
    now_ms: int,
) -> BreakerView:
    known, degraded = screen.known, screen.degraded
    degraded_pct = Decimal(degraded * 100) / Decimal(known) if degraded else ZERO
    states, events = evaluate_breakers(
        prior,
        config.breakers,
        config.risk,
        now_ms=now_ms,
        data_age_ms=age_ms,
        api_errors=api_errors,
        rejections=rejections,
        degraded_share_pct=degraded_pct,
        regime=regime,
        marks=gate.equity_marks,
        equity=gate.equity,
    )
    trading, causes = trading_state(states, config.breakers, kill_switch=gate.kill)
    notes: tuple[str, ...] = ()
    if exits_only and trading is TradingState.ACTIVE:
        trading, causes = TradingState.REDUCING, (exits_only,)
    if entries_blocked and trading is TradingState.ACTIVE:
        trading, causes = TradingState.REDUCING, entries_blocked
        notes = (f"entries blocked: {', '.join(causes)}",)
    if events:
        notes += tuple(f"breaker {e.name} {e.event}: {e.reason}" for e in events)
    return BreakerView(states, trading, causes, notes)


def blocked_reason(
    kill: bool, exchange_down: bool, missing: tuple[str, ...], breakers: BreakerView
) -> str | None:
    """Why the cycle stops before exits and strategies (no order but its cancels), or None."""
    if kill:
        return NoTradeReason.KILL_SWITCH
    if exchange_down:
        return f"{NoTradeReason.EXCHANGE_DOWN}:{','.join(missing)}"
    if missing:
        return f"{NoTradeReason.MISSING_DATA}:{','.join(missing)}"
    if breakers.trading is TradingState.HALTED:
        return f"{NoTradeReason.BREAKER_HALT}:{','.join(breakers.causes)}"
    return None


def cancels(
    orders: tuple[Order, ...], trading: TradingState, kill: bool, now_ms: int, ttl_ms: int
) -> tuple[CancelRequest, ...]:
    """Halted withdraws everything, reducing withdraws entries, stale orders go."""
    out: list[CancelRequest] = []
    for o in orders:
        if not o.status.is_live:
            continue
        if trading is TradingState.HALTED:
            why = CancelReason.KILL_SWITCH if kill else CancelReason.HALTED
        elif trading is TradingState.REDUCING and not o.reduce_only:
            why = CancelReason.REDUCING
        elif is_stale(o, now_ms, ttl_ms):
            why = CancelReason.STALE_ORDER
        else:
            continue
        out.append(CancelRequest(o.client_order_id, o.symbol, why))
    return tuple(out)


# --------------------------------------------------------------------------- exits, triggers


def exit_stage(
    portfolio: Portfolio,
    marks: Mapping[str, Decimal],
    markets: Mapping[str, Market],
    config: PipelineConfig,
    now_ms: int,
) -> tuple[TradeProposal, ...]:
    """Exit rules first: they only lower risk. A position without a mark waits."""
    positions = portfolio.positions
    if not positions:
        return ()
    out: list[TradeProposal] = []
    rules = config.exits
    for sym in sorted(positions):
        mark = marks.get(sym)
        if mark is None:
            continue
        prop = exit_proposal(positions[sym], mark, now_ms, rules, markets.get(sym))
        if prop is not None:
            out.append(prop)
    return tuple(out)


class TriggerView(NamedTuple):
    triggers: tuple[Trigger, ...]
    universe: UniverseResult  # without the symbols the scan rejected
    bans: Mapping[str, int]  # with the red-flagged symbols banned
    notes: tuple[str, ...]


def trigger_stage(
    universe: UniverseResult,
    features: Mapping[str, SymbolFeatures],
    config: PipelineConfig,
    bans: Mapping[str, int],
    now_ms: int,
) -> TriggerView:
    tscan = scan(
        universe.eligible,
        features,
        config.triggers,
        now_ms=now_ms,
        timeframe_ms=config.timeframe_ms,
    )
    notes: list[str] = []
    if tscan.red_flags:
        until = now_ms + config.universe.ban_minutes * 60_000
        merged = dict(bans)
        for sym in tscan.red_flags:
            merged[sym] = max(merged.get(sym, 0), until)
            notes.append(f"red flag {sym}: banned until {until}")
        bans = MappingProxyType(merged)
    if tscan.rejected:
        dropped = {e.symbol for e in tscan.rejected}
        universe = UniverseResult(
            eligible=tuple(s for s in universe.eligible if s not in dropped),
            excluded=universe.excluded + tscan.rejected,
        )
    return TriggerView(tscan.triggers, universe, bans, tuple(notes))


# --------------------------------------------------------------------------- strategies, risk


def strategy_stage(
    slots: Sequence[StrategySlot],
    exits: tuple[TradeProposal, ...],
    *,
    now_ms: int,
    config: PipelineConfig,
    regime: RegimeView,
    eligible: tuple[str, ...],
    triggers: tuple[Trigger, ...],
    features: Mapping[str, SymbolFeatures],
    quotes: Mapping[str, Quote],
    portfolio: Portfolio,
    equity: Decimal,
    history: CandleHistory | None,
) -> tuple[TradeProposal, ...]:
    """Each strategy's proposals next to the exit rules', one per (symbol, kind)."""
    raw: list[TradeProposal] = list(exits)
    for slot in slots:
        strat = slot.strategy
        ctx = StrategyContext(
            ts=now_ms,
            timeframe_ms=config.timeframe_ms,
            regime=regime.regime,
            risk_multiplier=regime.multiplier,
            eligible=eligible,
            triggers=triggers,
            features=features,
            quotes=quotes,
            positions=portfolio.positions,
            equity=equity,
            budget=slot.budget,
            params=strat.params,
            history=history,
        )
        raw.extend(strat.propose(ctx))
    if not raw:
        return ()
    return tuple(aggregate(raw))


class RiskView(NamedTuple):
    verdicts: tuple[RiskVerdict, ...]
    intents: tuple[OrderIntent, ...]


NO_RISK = RiskView((), ())


def risk_stage(
    proposals: tuple[TradeProposal, ...],
    *,
    config: PipelineConfig,
    portfolio: Portfolio,
    gate: Gate,
    trading: TradingState,
    multiplier: Decimal,
    eligible: tuple[str, ...],
    markets: Mapping[str, Market],
    quotes: Mapping[str, Quote],
    books: Mapping[str, OrderBook],
    open_orders: tuple[Order, ...],
    now_ms: int,
) -> RiskView:
    if not proposals:
        return NO_RISK
    ex_all = market_exposure(
        portfolio, gate.marks, open_orders, markets, quotes, config.universe.theme_of
    )
    inputs = RiskInputs(
        now_ms=now_ms,
        state=trading,
        multiplier=multiplier,
        eligible=frozenset(eligible),
        markets=markets,
        quotes=quotes,
        books=books,
        portfolio=portfolio,
        equity=gate.equity,
        exposure=ex_all,
        open_orders=open_orders,
        cooldowns=gate.cooldowns,
    )
    verdicts, intents = assess(proposals, inputs, config)
    return RiskView(tuple(verdicts), tuple(intents))


def no_trade_reason(
    proposals: tuple[TradeProposal, ...], universe: UniverseResult, trading: TradingState
) -> str:
    """Why a cycle that reached the strategies placed nothing (ignored when it did)."""
    if proposals:
        return NoTradeReason.ALL_REJECTED
    if not universe.eligible:
        warming = all(e.reason in _WARMING for e in universe.excluded)
        return NoTradeReason.WARMING_UP if warming else NoTradeReason.NO_ELIGIBLE_SYMBOLS
    if trading is TradingState.REDUCING:
        return NoTradeReason.EXITS_ONLY_NOTHING_TO_EXIT
    return NoTradeReason.NO_SIGNAL


# --------------------------------------------------------------------------- the next state


class StateUpdate(NamedTuple):
    """The EngineState fields a cycle computes, each named like its EngineState field, all
    required (the cycle cannot leave one out). `settle` compares every one of them with the
    prior state by value: a field added here takes part without any other edit."""

    regime: RegimeState
    breakers: Mapping[str, BreakerState]
    cooldowns: Mapping[str, int]
    bans: Mapping[str, int]
    kill_switch: bool
    kill_reason: str
    marks: EquityMarks


def settle(prior: EngineState, update: StateUpdate) -> EngineState:
    """The prior state itself when the update equals it field by field (the usual quiet
    cycle), else the prior state with the fields that differ replaced. Fields the cycle does
    not compute (written between cycles by the runner) carry over untouched."""
    names = update._fields
    before = attrgetter(*names)(prior)  # the prior's values of the update's fields, in order
    if before == update:
        return prior
    changed: dict[str, Any] = {
        k: v for k, old, v in zip(names, before, update, strict=True) if old != v
    }
    return replace(prior, **changed)
