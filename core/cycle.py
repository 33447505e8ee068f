"""The cycle: universe -> regime -> triggers -> strategies -> risk -> execution plan.

`run_cycle` is the only decision entry point; the daemon and the backtest both call it. It is
pure: the same snapshot, portfolio, config and time always give the same decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from core.breakers import evaluate as evaluate_breakers
from core.breakers import roll_marks, trading_state
from core.config import PipelineConfig, RiskConfig
from core.exits import EXITS as EXITS
from core.exits import exit_proposal
from core.features import SymbolFeatures
from core.marks import guarded_marks
from core.models import (
    ZERO,
    CancelRequest,
    CycleDecision,
    EngineState,
    Market,
    Order,
    OrderBook,
    Quote,
    TradeProposal,
    TradingState,
    Trigger,
    UniverseResult,
)
from core.orders import is_stale
from core.portfolio import Portfolio, exposure, value
from core.reasons import CancelReason, NoTradeReason, TriggerReject, UniverseReason
from core.regime import classify, multiplier, regime_keys, update_regime
from core.risk import RiskInputs, assess
from core.triggers import scan, trigger_keys
from core.universe import candidates, select_universe, static_screen, volume_key
from strategy.aggregate import aggregate
from strategy.base import CandleHistory, StrategyContext
from strategy.registry import get as get_strategy

_EMPTY_BOOKS: Mapping[str, OrderBook] = MappingProxyType({})
_WARMING = frozenset({UniverseReason.WARMING_UP, UniverseReason.NO_DATA, TriggerReject.WARMING_UP})


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


def required_features(config: PipelineConfig) -> frozenset[str]:
    """Every feature key any stage or enabled strategy reads."""
    common, extra = feature_plan(config)
    return common.union(*extra.values())


def feature_plan(config: PipelineConfig) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """Keys every symbol needs, and keys only some symbols need: the regime's long trend
    indicators are read for the index symbol alone, so other symbols do not pay for them."""
    keys = set(trigger_keys(config.triggers))
    keys.add(volume_key(config.timeframe_ms))
    for name, spec in config.enabled_strategies():
        keys |= get_strategy(name).required_features(spec.resolved_params)
    return frozenset(keys), {config.regime.index_symbol: frozenset(regime_keys(config.regime))}


def history_needed(config: PipelineConfig) -> int:
    """Raw candles the enabled strategies read through StrategyContext.history."""
    return max((strat.history_bars for _, _, strat in config.strategy_plan), default=0)


Timer = Callable[[], float]


class _Stages:
    """Collects per-stage durations when the runner hands in a timer; free otherwise."""

    __slots__ = ("_last", "_timer", "spans")

    def __init__(self, timer: Timer | None) -> None:
        self._timer = timer
        self._last = timer() if timer is not None else 0.0
        self.spans: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        if self._timer is not None:
            now = self._timer()
            self.spans.append((name, round((now - self._last) * 1000.0, 4)))
            self._last = now


def _data_age(snapshot: MarketSnapshot, symbols: list[str], tf_ms: int, now_ms: int) -> int | None:
    get = snapshot.features.get
    newest = -1
    for s in symbols:
        f = get(s)
        if f is not None and f.ts > newest:
            newest = f.ts
    return None if newest < 0 else now_ms - (newest + tf_ms)


def _expire(m: Mapping[str, int], now_ms: int) -> Mapping[str, int]:
    if all(v > now_ms for v in m.values()):
        return m
    return MappingProxyType({k: v for k, v in m.items() if v > now_ms})


def run_cycle(
    snapshot: MarketSnapshot,
    portfolio: Portfolio,
    config: PipelineConfig,
    now_ms: int,
    *,
    timer: Timer | None = None,
) -> CycleDecision:
    st = _Stages(timer)
    tf = config.timeframe_ms
    prior = snapshot.state
    feats, quotes, markets = snapshot.features, snapshot.quotes, snapshot.markets
    notes: list[str] = []

    # --- gate: marks, equity, kill switch, expired cooldowns and bans
    marks, guarded = guarded_marks(portfolio.positions, quotes, feats, config.triggers)
    for g in guarded:
        notes.append(f"mark guard: {g}; valued at the median")
    val = value(portfolio, marks)
    equity = val.equity
    kill = prior.kill_switch or snapshot.kill_switch
    kill_reason = prior.kill_reason or snapshot.kill_reason
    cooldowns = _expire(prior.cooldowns, now_ms)
    bans = _expire(prior.bans, now_ms)
    eq_marks = roll_marks(prior.marks, equity, now_ms)
    st.mark("gate")

    # --- universe
    cands = candidates(config.universe, markets)
    universe = select_universe(
        cfg=config.universe,
        markets=markets,
        features=feats,
        quotes=quotes,
        bans=bans,
        now_ms=now_ms,
        timeframe_ms=tf,
        symbols=cands,
    )
    st.mark("universe")

    # --- regime
    idx = feats.get(config.regime.index_symbol)
    regime_state = update_regime(
        prior.regime,
        classify(idx, config.regime),
        config.regime,
        now_ms,
        idx.ts if idx is not None else -1,
    )
    regime = regime_state.regime
    mult = multiplier(config.regime, regime)
    st.mark("regime")

    # --- breakers and the trading state
    screen = static_screen(config.universe, markets, cands)
    known, degraded = screen.known, screen.degraded
    degraded_pct = Decimal(degraded * 100) / Decimal(known) if degraded else ZERO
    breakers, events = evaluate_breakers(
        prior.breakers,
        config.breakers,
        config.risk,
        now_ms=now_ms,
        data_age_ms=_data_age(snapshot, cands, tf, now_ms),
        api_errors=snapshot.api_errors,
        rejections=snapshot.rejections,
        degraded_share_pct=degraded_pct,
        regime=regime,
        marks=eq_marks,
        equity=equity,
    )
    state_now, causes = trading_state(breakers, config.breakers, kill_switch=kill)
    if snapshot.exits_only and state_now is TradingState.ACTIVE:
        state_now, causes = TradingState.REDUCING, (snapshot.exits_only,)
    if snapshot.entries_blocked and state_now is TradingState.ACTIVE:
        state_now, causes = TradingState.REDUCING, snapshot.entries_blocked
        notes.append(f"entries blocked: {', '.join(causes)}")
    for e in events:
        notes.append(f"breaker {e.name} {e.event}: {e.reason}")
    st.mark("breakers")

    # --- cancels: halted withdraws everything, reducing withdraws entries, stale orders go
    cancels = _cancels(snapshot.open_orders, state_now, kill, now_ms, config)

    def decide(
        *,
        triggers: tuple[Trigger, ...] = (),
        proposals: tuple[TradeProposal, ...] = (),
        verdicts: tuple[Any, ...] = (),
        intents: tuple[Any, ...] = (),
        no_trade: str | None,
        new_bans: Mapping[str, int] = bans,
        universe_: UniverseResult = universe,
    ) -> CycleDecision:
        if (
            regime_state is prior.regime
            and breakers is prior.breakers
            and cooldowns is prior.cooldowns
            and new_bans is prior.bans
            and kill is prior.kill_switch
            and kill_reason == prior.kill_reason
            and eq_marks is prior.marks
        ):
            state = prior  # the usual quiet cycle changes nothing worth a new object
        else:
            state = EngineState(
                regime=regime_state,
                breakers=breakers,
                cooldowns=cooldowns,
                bans=new_bans,
                kill_switch=kill,
                kill_reason=kill_reason,
                marks=eq_marks,
            )
        st.mark("plan")
        return CycleDecision(
            ts=now_ms,
            trading_state=state_now,
            regime=regime,
            risk_multiplier=mult,
            universe=universe_,
            triggers=triggers,
            proposals=proposals,
            verdicts=verdicts,
            intents=intents,
            cancels=cancels,
            no_trade_reason=None if intents else no_trade,
            state=state,
            equity=equity,
            timings_ms=tuple(st.spans),
            notes=tuple(notes),
        )

    if kill:
        return decide(no_trade=NoTradeReason.KILL_SWITCH)
    if snapshot.exchange_down:
        return decide(no_trade=f"{NoTradeReason.EXCHANGE_DOWN}:{','.join(snapshot.missing)}")
    if snapshot.missing:
        return decide(no_trade=f"{NoTradeReason.MISSING_DATA}:{','.join(snapshot.missing)}")
    if state_now is TradingState.HALTED:
        return decide(no_trade=f"{NoTradeReason.BREAKER_HALT}:{','.join(causes)}")

    # --- exits first: they only lower risk
    exit_props: list[TradeProposal] = []
    for sym in sorted(portfolio.positions):
        mark = marks.get(sym)
        if mark is None:
            continue
        prop = exit_proposal(portfolio.positions[sym], mark, now_ms, config.exits, markets.get(sym))
        if prop is not None:
            exit_props.append(prop)
    st.mark("exits")

    # --- triggers on the eligible symbols
    tscan = scan(universe.eligible, feats, config.triggers, now_ms=now_ms, timeframe_ms=tf)
    new_bans = bans
    if tscan.red_flags:
        until = now_ms + config.universe.ban_minutes * 60_000
        merged = dict(bans)
        for sym in tscan.red_flags:
            merged[sym] = max(merged.get(sym, 0), until)
            notes.append(f"red flag {sym}: banned until {until}")
        new_bans = MappingProxyType(merged)
    if tscan.rejected:
        dropped = {e.symbol for e in tscan.rejected}
        universe = UniverseResult(
            eligible=tuple(s for s in universe.eligible if s not in dropped),
            excluded=universe.excluded + tscan.rejected,
        )
    st.mark("triggers")

    # --- strategies
    positions = portfolio.positions
    raw: list[TradeProposal] = list(exit_props)
    for _name, spec, strat in config.strategy_plan:
        ctx = StrategyContext(
            ts=now_ms,
            timeframe_ms=tf,
            regime=regime,
            risk_multiplier=mult,
            eligible=universe.eligible,
            triggers=tscan.triggers,
            features=feats,
            quotes=quotes,
            positions=positions,
            equity=equity,
            budget=spec.budget,
            params=strat.params,
            history=snapshot.history,
        )
        raw.extend(strat.propose(ctx))
    proposals = tuple(aggregate(raw))
    st.mark("strategies")

    # --- risk and sizing
    if proposals:
        ex_all = exposure(
            portfolio,
            marks,
            snapshot.open_orders,
            base_of=lambda s: markets[s].base if s in markets else s.split("/")[0],
            theme_of=config.universe.theme_of,
            price_of=lambda s: quotes[s].ask if s in quotes else None,
        )
        inputs = RiskInputs(
            now_ms=now_ms,
            state=state_now,
            multiplier=mult,
            eligible=frozenset(universe.eligible),
            markets=markets,
            quotes=quotes,
            books=snapshot.books,
            portfolio=portfolio,
            equity=equity,
            exposure=ex_all,
            open_orders=snapshot.open_orders,
            cooldowns=cooldowns,
        )
        verdicts, intents = assess(proposals, inputs, config)
    else:
        verdicts, intents = [], []
    st.mark("risk")

    if not proposals:
        if not universe.eligible:
            warming = all(e.reason in _WARMING for e in universe.excluded)
            reason: str = NoTradeReason.WARMING_UP if warming else NoTradeReason.NO_ELIGIBLE_SYMBOLS
        elif state_now is TradingState.REDUCING:
            reason = NoTradeReason.EXITS_ONLY_NOTHING_TO_EXIT
        else:
            reason = NoTradeReason.NO_SIGNAL
    else:
        reason = NoTradeReason.ALL_REJECTED
    return decide(
        triggers=tscan.triggers,
        proposals=proposals,
        verdicts=tuple(verdicts),
        intents=tuple(intents),
        no_trade=reason,
        new_bans=new_bans,
        universe_=universe,
    )


def _cancels(
    orders: tuple[Order, ...],
    state: TradingState,
    kill: bool,
    now_ms: int,
    config: PipelineConfig,
) -> tuple[CancelRequest, ...]:
    out: list[CancelRequest] = []
    ttl = config.execution.ttl_ms
    for o in orders:
        if not o.status.is_live:
            continue
        if state is TradingState.HALTED:
            why = CancelReason.KILL_SWITCH if kill else CancelReason.HALTED
        elif state is TradingState.REDUCING and not o.reduce_only:
            why = CancelReason.REDUCING
        elif is_stale(o, now_ms, ttl):
            why = CancelReason.STALE_ORDER
        else:
            continue
        out.append(CancelRequest(o.client_order_id, o.symbol, why))
    return tuple(out)


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
