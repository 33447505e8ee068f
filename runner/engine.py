"""The engine: one cycle of I/O around the pure `run_cycle`.

ingest candles -> reconcile with the exchange -> snapshot -> run_cycle -> record -> execute
-> persist. The daemon and the backtest both call `Engine.step`; they differ only in the
clock, the exchange adapter, the feed and where records go.

The engine is the one owner of the account state (markets, portfolio, engine state, the
order book): others read it through read-only properties. The parts it builds get narrow
interfaces, never the engine: the executor the order gate and callbacks, the reconciler the
values it reconciles (it hands back new ones), `MarketData` (runner/market_data.py: markets,
candles, quotes, depth books) the venue and failure callbacks. It hands out narrow controls:
the kill watcher's `KillControl`, the runner guards' `GuardControl` (with the `ExitsOnly`
causes, runner/exits_only.py). Lifecycle (runner/engine_parts.py): new -> started ->
stopping -> stopped; `step` runs only while started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType

from core.config import PipelineConfig
from core.context import CandleHistory
from core.cycle import MarketSnapshot, StrategySlot, run_cycle
from core.errors import ExchangeError, ExchangeUnavailable
from core.fast_exit import FastExit, plan_fast_exit
from core.features import FeatureBank
from core.models import CycleDecision, EngineState, Market, Quote
from core.portfolio import Portfolio, update_peaks
from core.ports import CandleFeed, CandleSink, Exchange, Store
from core.reasons import NoTradeReason
from core.stages import cycle_marks
from infra.logfmt import CYCLE
from runner.cycle_guard import GuardControl
from runner.depth import with_books
from runner.engine_parts import (
    AccountListener,
    EngineStatus,
    Health,
    Lifecycle,
    NullTelemetry,
    Telemetry,
)
from runner.error_windows import ErrorWindows, Outage
from runner.execution import Executor, OrderBookkeeper, OrderGate
from runner.exits_only import ExitsOnly
from runner.kill import KillControl
from runner.market_data import MarketData
from runner.reconcile import Account, Reconciler
from runner.recorder import Recorder

log = logging.getLogger("vigil.engine")


class Engine:
    def __init__(
        self,
        *,
        config: PipelineConfig,
        strategies: Sequence[StrategySlot],
        exchange: Exchange,
        feed: CandleFeed,
        bank: FeatureBank,
        store: Store,
        recorder: Recorder,
        candle_listeners: Sequence[CandleSink] = (),
        telemetry: Telemetry | None = None,
        quote_currency: str | None = None,
        error_window_ms: int = 3_600_000,
        stage_timing: bool = True,
        on_account: AccountListener | None = None,
    ) -> None:
        self.config = config
        self.strategies = tuple(strategies)
        self.exchange = exchange
        self.feed = feed
        self.bank = bank
        self.store = store
        self.recorder = recorder
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        self._timed = telemetry is not None  # a cycle's duration goes to real telemetry only
        self.quote = quote_currency or config.universe.quote_currency
        self._errors = ErrorWindows(config, error_window_ms)
        self._data = MarketData(
            universe=config.universe,
            exchange=exchange,
            feed=feed,
            bank=bank,
            listeners=candle_listeners,
            record=recorder.event,
            telemetry=self.telemetry,
            on_failed=self._exchange_failed,
            on_api_error=self._errors.api_error,
        )
        self._timer = time.perf_counter if stage_timing else None
        self._on_account = on_account
        self._life = Lifecycle()
        self._state = EngineState()
        self._portfolio = Portfolio(cash=Decimal(0), quote=self.quote)
        self._book = OrderBookkeeper()
        self._gate = OrderGate(latched=lambda: self._state.kill_switch)
        self._depth_check = config.execution.min_depth_multiple > 0
        self.health = Health(unknown_policy=config.reconcile.unknown_holdings)
        self._exits_only = ExitsOnly(recorder.event)
        self.last_decision: CycleDecision | None = None
        self._outage = Outage()
        self._history = CandleHistory(bank)
        # One owner of the portfolio at a time: a cycle and a fast exit never interleave.
        self.lock = asyncio.Lock()
        self._reconciler = Reconciler(
            config=config,
            exchange=exchange,
            book=self._book,
            store=store,
            recorder=recorder,
            quote=self.quote,
            on_exchange_failed=self._exchange_failed,
            on_api_error=self._errors.api_error,
            on_fill=lambda f: self.telemetry.event("fill", side=f.side.value),
        )
        self.executor = Executor(
            exchange=exchange,
            recorder=recorder,
            book=self._book,
            gate=self._gate,
            on_rejection=self._rejected,
            on_api_error=self._errors.api_error,
            persist=store.save_order,
            on_order=lambda result: self.telemetry.event("order", result=result),
        )

    # ---- the state it owns, read-only for everyone else -------------------------------------

    @property
    def status(self) -> EngineStatus:
        return self._life.status

    @property
    def markets(self) -> Mapping[str, Market]:
        return self._data.markets

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def portfolio(self) -> Portfolio:
        return self._portfolio

    @property
    def book(self) -> OrderBookkeeper:
        return self._book

    @property
    def errors(self) -> ErrorWindows:
        return self._errors

    @property
    def exits_only(self) -> ExitsOnly:
        """The runner guards' exits-only causes, cause -> detail."""
        return self._exits_only

    @property
    def bad_ticks(self) -> int:
        return self._data.bad_ticks

    @property
    def kill_reason(self) -> str:
        return self._gate.reason

    def kill_active(self) -> bool:
        return self._gate.kill_active()

    def kill_control(self) -> KillControl:
        """What the kill-switch watcher gets: the gate, and the engine's kill and resume."""
        return KillControl(
            gate=self._gate,
            in_flight=self.executor.in_flight,
            blocked=self.executor.blocked,
            engage=self.engage_kill,
            cancel_open=lambda now_ms: self.cancel_all(now_ms, reason="KILL_SWITCH"),
            resume=self.resume,
            latched=lambda: self._state.kill_switch,
        )

    def guard_control(self) -> GuardControl:
        """What the runner's guards get: exits only, the halt, the audit record, telemetry."""
        return GuardControl(
            exits_only=self._exits_only,
            halt=self.engage_kill,
            halted=lambda: self._state.kill_switch,
            record=self.recorder.event,
            event=self.telemetry.event,
        )

    # ---- lifecycle --------------------------------------------------------------------------

    def _exchange_failed(self, now_ms: int, exc: ExchangeError) -> None:
        self._errors.api_error(now_ms)
        self.health.exchange_error = type(exc).__name__
        if isinstance(exc, ExchangeUnavailable):
            self._outage.unreachable(exc)

    def _rejected(self, ts: int, symbol: str) -> None:
        until, detail = self._errors.rejected(ts, symbol)
        if until is None:
            return
        bans = dict(self._state.bans)
        bans[symbol] = max(bans.get(symbol, 0), until)
        self._state = replace(self._state, bans=MappingProxyType(bans))
        self.recorder.event(
            "symbol_banned", {"ts": ts, "symbol": symbol, "until": until, "reason": detail}
        )
        log.warning("%s banned until %d: %s", symbol, until, detail)

    def start_failed(self, now_ms: int, exc: ExchangeError) -> None:
        """A start attempt failed on the exchange: counted like a cycle that could not trade.
        Not fed to the API-error breaker: a venue that was down at start and answers now is
        no reason to halt the first cycles (its failed requests are in the metric already)."""
        self.health.exchange_error = type(exc).__name__
        down = isinstance(exc, ExchangeUnavailable)
        reason = NoTradeReason.EXCHANGE_DOWN if down else NoTradeReason.MISSING_DATA
        self.telemetry.event("no_trade", reason=reason.value)

    async def start(self, now_ms: int, *, warmup_bars: int) -> None:
        """Restore state, load markets, warm indicators up. A start that fails on the
        exchange leaves the engine new: it may be started again."""
        self._life.check("start")
        self._state = self.store.load_engine_state()
        positions = self.store.load_positions()
        self._book.load(self.store.load_orders(live_only=True))
        await self._data.load_markets(now_ms)
        balances = await self.exchange.fetch_balances()
        cash = balances[self.quote].total if self.quote in balances else Decimal(0)
        self._portfolio = Portfolio(cash=cash, positions=positions, quote=self.quote)
        self._reconciler.restore(self.store.load_fills())
        if warmup_bars > 0:
            await self._data.warmup(now_ms, warmup_bars)
        self._life.to("start")
        self.health.started = True
        self.health.store_ms = now_ms
        if self._on_account is not None:
            self._on_account(self._data.markets, self._portfolio.positions)

    async def stop(self, now_ms: int, *, cancel_open: bool, timeout_s: float = 5.0) -> int:
        """Stopping: no new order may leave from here on (the gate refuses them), open ones
        are canceled when `cancel_open` (within `timeout_s`). Returns how many were canceled.
        The state is saved by `persist` (also allowed once stopped)."""
        self._life.to("stop")
        self._gate.stopping = True
        canceled = 0
        if cancel_open and self._book.has_live():
            try:
                canceled = await asyncio.wait_for(
                    self.cancel_all(now_ms, reason="SHUTDOWN"), timeout=timeout_s
                )
            except TimeoutError:
                log.error("cancelling open orders timed out; they may still rest on the exchange")
        self._life.to("stopped")
        return canceled

    def persist(self, now_ms: int) -> None:
        self.store.save_cycle(self._state, self._portfolio, now_ms)

    # ---- the cycle --------------------------------------------------------------------------

    async def poll_market(self, now_ms: int) -> None:
        """New candles in, outside a cycle (a flatten waiting for fills: in PAPER the
        simulated fills come from these candles)."""
        if await self._data.poll(now_ms):
            self.health.market_data_ms = now_ms

    async def step(self, now_ms: int) -> CycleDecision:
        self._life.require_started("step")
        async with self.lock:
            return await self._step(now_ms)

    async def reconcile(self, now_ms: int) -> None:
        """One reconcile outside a cycle (a flatten waiting for its fills)."""
        await self._reconcile(now_ms, [])
        if self._on_account is not None:
            self._on_account(self._data.markets, self._portfolio.positions)

    async def _reconcile(self, now_ms: int, missing: list[str]) -> None:
        acct = await self._reconciler.run(
            now_ms, missing, Account(self._portfolio, self._state), self._data.markets
        )
        if acct is None:
            return
        self._portfolio, self._state = acct
        self.health.exchange_ms = now_ms
        self.health.exchange_error = ""
        self.health.unknown_holdings = self._reconciler.unknown.published

    async def _step(self, now_ms: int) -> CycleDecision:
        t0 = time.perf_counter() if self._timed else 0.0
        CYCLE.set(now_ms)  # JSON log lines name the cycle they belong to
        missing: list[str] = []
        health = self.health
        data = self._data
        self._outage.cycle_begins()
        polled = await data.poll(now_ms)
        if polled:
            health.market_data_ms = now_ms
        elif polled is None:
            missing.append("candles")
        await data.refresh_markets(now_ms)
        await self._reconcile(now_ms, missing)
        quotes = await data.quotes(now_ms, self._portfolio.positions)
        if quotes is None:
            quotes = {}
            missing.append("quotes")
        else:
            health.exchange_ms = now_ms
        features = self.bank.latest()
        # The guarded marks the cycle values positions at, computed once: a bad print must
        # not lift a trailing stop's peak either.
        marks = cycle_marks(self._portfolio, quotes, features, self.config)
        if marks.prices:
            self._portfolio = update_peaks(self._portfolio, marks.prices)
        prior = self._state
        gate = self._gate
        book = self._book
        errors = self._errors
        snapshot = MarketSnapshot(
            ts=now_ms,
            markets=data.markets,
            features=features,
            quotes=quotes,
            open_orders=tuple(book.live()) if book.has_live() else (),
            state=prior,
            api_errors=errors.recent_api_errors(now_ms) if errors.api_errors else (),
            rejections=errors.recent_rejections(now_ms) if errors.rejections else (),
            kill_switch=gate.killed,
            kill_reason=gate.reason,
            missing=tuple(missing) if missing else (),
            exchange_down=self._outage.now,
            history=self._history,
            exits_only=self._exits_only.joined(),
            entries_blocked=self._reconciler.unknown.entry_blocks(),
            marks=marks,
            screen=data.screen,
        )
        decision = run_cycle(
            snapshot,
            self._portfolio,
            self.config,
            now_ms,
            strategies=self.strategies,
            timer=self._timer,
        )
        if decision.intents and self._depth_check:
            decision = await with_books(
                snapshot,
                decision,
                self._portfolio,
                self.config,
                self.strategies,
                data.order_book,
                self._timer,
            )
        self._outage.cycle_ends()
        self._state = decision.state
        health.strategies_ms = now_ms
        self.recorder.decision(
            decision,
            prior,
            positions=len(self._portfolio.positions),
            open_orders=len(snapshot.open_orders),
        )
        if decision.cancels or decision.intents:
            await self.executor.execute(decision.cancels, decision.intents, now_ms)
            health.execution_ms = now_ms
        self.store.save_cycle(self._state, self._portfolio, now_ms)
        health.store_ms = now_ms
        self.last_decision = decision
        if self._timed:
            self.telemetry.cycle(decision, self, time.perf_counter() - t0)
        if len(book.orders) > 1000:
            book.forget_terminal()
        if self._on_account is not None:
            self._on_account(self._data.markets, self._portfolio.positions)
        return decision

    async def fast_exit(
        self, symbol: str, quote: Quote, now_ms: int, high: Decimal | None = None
    ) -> FastExit:
        """A streamed price for a held position, between cycles: the cycle's exit rule, gate
        and risk check (core/fast_exit.py), then the same executor and audit records."""
        self._life.require_started("fast-exit")
        async with self.lock:
            plan = plan_fast_exit(
                symbol=symbol,
                quote=quote,
                portfolio=self._portfolio,
                markets=self._data.markets,
                features=self.bank.latest(),
                state=self._state,
                open_orders=self._book.live() if self._book.has_live() else (),
                config=self.config,
                now_ms=now_ms,
                kill=self.kill_active(),
                high=high,
            )
            if plan.proposal is None:
                return plan
            self.recorder.fast_exit(symbol, quote, plan, now_ms)
            for intent in plan.intents:
                await self.executor.submit(intent, now_ms)
                self.health.execution_ms = now_ms
            return plan

    # ---- operator actions -------------------------------------------------------------------

    async def engage_kill(self, reason: str, now_ms: int, source: str) -> int:
        """Block new orders at once, cancel every live order, latch the halt."""
        first = not self._state.kill_switch
        self._gate.close(reason)
        self._state = replace(self._state, kill_switch=True, kill_reason=reason)
        self.store.set_kill(True, reason)
        if first:
            self.recorder.event("kill_switch", {"reason": reason, "source": source}, sync=True)
        return await self.cancel_all(now_ms, reason="KILL_SWITCH")

    def resume(self, now_ms: int, source: str) -> None:
        self._gate.open()
        self._exits_only.resume(now_ms)
        self._state = replace(self._state, kill_switch=False, kill_reason="")
        self.store.set_kill(False, "")
        self.recorder.event("resume", {"ts": now_ms, "source": source}, sync=True)

    async def cancel_all(self, now_ms: int, *, reason: str) -> int:
        return await self.executor.cancel_all(now_ms, reason=reason)
