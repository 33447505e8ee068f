"""The cycle: universe -> regime -> triggers -> strategies -> risk -> execution plan.

`run_cycle` is the only decision entry point; the daemon and the backtest both call it. It is
pure: the same snapshot, portfolio, config, strategies and time always give the same
decision. Each stage is one function in core/stages.py with typed inputs and outputs;
`run_cycle` only composes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from core.config import PipelineConfig, RiskConfig
from core.context import CandleHistory
from core.exits import EXITS as EXITS
from core.features import SymbolFeatures
from core.marks import Marks
from core.models import (
    CycleDecision,
    EngineState,
    Market,
    Order,
    OrderBook,
    Quote,
    TradeProposal,
    Trigger,
)
from core.portfolio import Portfolio
from core.regime import regime_keys
from core.stages import (
    NO_RISK,
    StateUpdate,
    StrategySlot,
    blocked_reason,
    breaker_stage,
    cancels,
    cycle_marks,
    data_age,
    exit_stage,
    gate,
    no_trade_reason,
    regime_stage,
    risk_stage,
    settle,
    strategy_stage,
    trigger_stage,
)
from core.triggers import trigger_keys
from core.universe import StaticScreen, screen_for, select_universe, volume_key

__all__ = ["MarketSnapshot", "StrategySlot", "note_fill", "run_cycle"]

_EMPTY_BOOKS: Mapping[str, OrderBook] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Everything the cycle may know about the world at `ts`, gathered by the runner."""

    ts: int
    markets: Mapping[str, Market]
    features: Mapping[str, SymbolFeatures]
    quotes: Mapping[str, Quote]
    open_orders: tuple[Order, ...] = ()
    books: Mapping[str, OrderBook] = field(default_factory=lambda: _EMPTY_BOOKS)
    state: EngineState = field(default_factory=EngineState)
    api_errors: tuple[int, ...] = ()  # timestamps of recent API errors
    rejections: tuple[int, ...] = ()  # timestamps of recent order rejections
    kill_switch: bool = False  # the kill-switch file exists right now
    kill_reason: str = ""
    missing: tuple[str, ...] = ()  # critical inputs the runner could not fetch
    exchange_down: bool = False  # the exchange could not be reached this cycle
    history: CandleHistory | None = None
    # A latched exits-only order from the runner (repeated cycle failures, clock drift),
    # named by its cause; empty when none. Entries are refused while it is set.
    exits_only: str = ""
    # why the runner blocks new entries (exits go on), e.g. coins on the venue it cannot place
    entries_blocked: tuple[str, ...] = ()
    # The guarded marks of the held positions (core.stages.cycle_marks), when the runner
    # already computed them this cycle for the trailing peaks; None: the cycle computes them.
    marks: Marks | None = None
    # The universe's static screen of the markets (core.universe.static_screen), kept by the
    # runner, which owns the markets, from one markets load to the next. Used when it fits
    # these markets by value; otherwise (or None) the cycle screens them itself.
    screen: StaticScreen | None = None


def required_features(config: PipelineConfig, strategies: Sequence[StrategySlot]) -> frozenset[str]:
    """Every feature key any stage or enabled strategy reads."""
    common, extra = feature_plan(config, strategies)
    return common.union(*extra.values())


def feature_plan(
    config: PipelineConfig, strategies: Sequence[StrategySlot]
) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """Keys every symbol needs, and keys only some symbols need: the regime's long trend
    indicators are read for the index symbol alone, so other symbols do not pay for them."""
    keys = set(trigger_keys(config.triggers))
    keys.add(volume_key(config.timeframe_ms))
    for slot in strategies:
        keys |= slot.strategy.required_features(slot.strategy.params)
    return frozenset(keys), {config.regime.index_symbol: frozenset(regime_keys(config.regime))}


def history_needed(strategies: Sequence[StrategySlot]) -> int:
    """Raw candles the enabled strategies read through StrategyContext.history."""
    return max((slot.strategy.history_bars for slot in strategies), default=0)


Timer = Callable[[], float]


class _Stages:
    """Collects per-stage durations when the runner hands in a timer."""

    __slots__ = ("_last", "_timer", "spans")

    def __init__(self, timer: Timer) -> None:
        self._timer = timer
        self._last = timer()
        self.spans: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = self._timer()
        self.spans.append((name, round((now - self._last) * 1000.0, 4)))
        self._last = now


class _NoTimer:
    """The stage timer of a cycle nobody times (a backtest): free."""

    __slots__ = ()
    spans: tuple[tuple[str, float], ...] = ()

    def mark(self, name: str) -> None:
        return None


_NO_TIMER = _NoTimer()


def run_cycle(
    snapshot: MarketSnapshot,
    portfolio: Portfolio,
    config: PipelineConfig,
    now_ms: int,
    *,
    strategies: Sequence[StrategySlot],
    timer: Timer | None = None,
) -> CycleDecision:
    st = _Stages(timer) if timer is not None else _NO_TIMER
    prior = snapshot.state
    feats, quotes, markets = snapshot.features, snapshot.quotes, snapshot.markets
    tf = config.timeframe_ms

    marks = snapshot.marks
    if marks is None:
        marks = cycle_marks(portfolio, quotes, feats, config)
    g = gate(
        prior,
        portfolio,
        marks,
        kill_file=snapshot.kill_switch,
        kill_reason=snapshot.kill_reason,
        now_ms=now_ms,
    )
    st.mark("gate")

    screen = screen_for(config.universe, markets, snapshot.screen)
    universe = select_universe(
        cfg=config.universe,
        features=feats,
        quotes=quotes,
        bans=g.bans,
        now_ms=now_ms,
        timeframe_ms=tf,
        screen=screen,
    )
    st.mark("universe")

    regime = regime_stage(prior.regime, feats, config, now_ms)
    st.mark("regime")

    brk = breaker_stage(
        prior.breakers,
        config,
        screen=screen,
        age_ms=data_age(feats, screen.symbols, tf, now_ms),
        api_errors=snapshot.api_errors,
        rejections=snapshot.rejections,
        regime=regime.regime,
        gate=g,
        exits_only=snapshot.exits_only,
        entries_blocked=snapshot.entries_blocked,
        now_ms=now_ms,
    )
    st.mark("breakers")
    cancel = cancels(snapshot.open_orders, brk.trading, g.kill, now_ms, config.execution.ttl_ms)

    blocked = blocked_reason(g.kill, snapshot.exchange_down, snapshot.missing, brk)
    triggers: tuple[Trigger, ...] = ()
    proposals: tuple[TradeProposal, ...] = ()
    notes: tuple[str, ...] = ()
    risk, bans = NO_RISK, g.bans
    if blocked is not None:
        reason = blocked
    else:
        exits = exit_stage(portfolio, g.marks, markets, config, now_ms)
        st.mark("exits")
        tv = trigger_stage(universe, feats, config, g.bans, now_ms)
        universe, triggers, bans, notes = tv.universe, tv.triggers, tv.bans, tv.notes
        st.mark("triggers")
        proposals = strategy_stage(
            strategies,
            exits,
            now_ms=now_ms,
            config=config,
            regime=regime,
            eligible=universe.eligible,
            triggers=triggers,
            features=feats,
            quotes=quotes,
            portfolio=portfolio,
            equity=g.equity,
            history=snapshot.history,
        )
        st.mark("strategies")
        risk = risk_stage(
            proposals,
            config=config,
            portfolio=portfolio,
            gate=g,
            trading=brk.trading,
            multiplier=regime.multiplier,
            eligible=universe.eligible,
            markets=markets,
            quotes=quotes,
            books=snapshot.books,
            open_orders=snapshot.open_orders,
            now_ms=now_ms,
        )
        st.mark("risk")
        reason = no_trade_reason(proposals, universe, brk.trading)

    state = settle(
        prior,
        StateUpdate(
            regime=regime.state,
            breakers=brk.states,
            cooldowns=g.cooldowns,
            bans=bans,
            kill_switch=g.kill,
            kill_reason=g.kill_reason,
            marks=g.equity_marks,
        ),
    )
    st.mark("plan")
    return CycleDecision(
        ts=now_ms,
        trading_state=brk.trading,
        regime=regime.regime,
        risk_multiplier=regime.multiplier,
        universe=universe,
        triggers=triggers,
        proposals=proposals,
        verdicts=risk.verdicts,
        intents=risk.intents,
        cancels=cancel,
        no_trade_reason=None if risk.intents else reason,
        state=state,
        equity=g.equity,
        timings_ms=tuple(st.spans),
        notes=g.notes + brk.notes + notes,
    )


def note_fill(
    state: EngineState, symbol: str, ts: int, *, stop_out: bool, risk: RiskConfig
) -> EngineState:
    """Start the symbol's cooldown after a fill; a stop-out earns the longer one."""
    minutes = risk.cooldown_after_stop_minutes if stop_out else risk.cooldown_after_fill_minutes
    if minutes <= 0:
        return state
    until = ts + minutes * 60_000
    if state.cooldowns.get(symbol, 0) >= until:
        return state
    cooldowns = dict(state.cooldowns)
    cooldowns[symbol] = until
    return replace(state, cooldowns=MappingProxyType(cooldowns))
