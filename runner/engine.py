"""The engine: one cycle of I/O around the pure `run_cycle`.

ingest candles -> reconcile with the exchange -> snapshot -> run_cycle -> record -> execute
-> persist. The daemon and the backtest both call `Engine.step`; they differ only in the
clock, the exchange adapter, the feed and where records go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

from core.config import PipelineConfig
from core.context import CandleHistory
from core.cycle import MarketSnapshot, StrategySlot, run_cycle
from core.errors import ExchangeError, ExchangeUnavailable
from core.fast_exit import FastExit, plan_fast_exit
from core.features import BadTick, FeatureBank
from core.models import (
    CancelRequest,
    CycleDecision,
    EngineState,
    Market,
    OrderBook,
    Quote,
    Side,
)
from core.portfolio import Portfolio, update_peaks
from core.ports import CandleFeed, CandleSink, Exchange, Store
from core.reasons import NoTradeReason
from core.stages import cycle_marks
from core.universe import StaticScreen, static_screen
from infra.logfmt import CYCLE
from runner.execution import Executor, OrderBookkeeper
from runner.reconcile import Reconciler
from runner.recorder import Recorder, proposal_data, verdict_data

log = logging.getLogger("vigil.engine")

MARKETS_CHECK_MS = 60_000
# Levels of an entry candidate's book fetched for the depth check: the levels
# OrderBook.depth_notional counts.
DEPTH_LEVELS = 10
# Exits-only causes that stay until an operator resumes (others clear by themselves).
LATCHED_BY_RESUME = frozenset({"cycle_errors"})


class EngineSink:
    """The per-candle path into the engine: a CandleSink (`sink(symbol, ts, o, h, lo, c, v)`)
    that can also hand a feed one symbol's parts, its candle step and its listener, so a replay
    calls them directly (a million candles in a backtest: one Python call less each).
    A feed that uses `parts` must send BadTick from the step to `bad_tick` and call the
    listener only for candles the step accepted, exactly as `__call__` does."""

    __slots__ = ("_listeners", "_parts", "_pusher_for", "bad_tick")

    def __init__(
        self,
        pusher_for: Callable[[str], Callable[..., Any]],
        listeners: Sequence[CandleSink],
        bad_tick: Callable[[BadTick], None],
    ) -> None:
        self._pusher_for = pusher_for
        self._listeners = tuple(listeners)
        self._parts: dict[str, tuple[Callable[..., Any], CandleSink | None]] = {}
        self.bad_tick = bad_tick

    def parts(self, symbol: str) -> tuple[Callable[..., Any], CandleSink | None]:
        p = self._parts.get(symbol)
        if p is None:
            listeners = self._listeners
            listener: CandleSink | None
            if not listeners:
                listener = None
            elif len(listeners) == 1:
                listener = listeners[0]
            else:

                def listener(*candle: Any) -> None:
                    for each in listeners:
                        each(*candle)

            p = self._parts[symbol] = (self._pusher_for(symbol), listener)
        return p

    def __call__(
        self, symbol: str, ts: int, o: float, h: float, lo: float, c: float, v: float
    ) -> None:
        push, listener = self._parts.get(symbol) or self.parts(symbol)
        try:
            push(ts, o, h, lo, c, v)
        except BadTick as exc:
            self.bad_tick(exc)
            return
        if listener is not None:
            listener(symbol, ts, o, h, lo, c, v)


class Telemetry(Protocol):
    def cycle(self, d: CycleDecision, engine: Engine, seconds: float) -> None: ...

    def event(self, name: str, **labels: str) -> None: ...


class NullTelemetry:
    def cycle(self, d: CycleDecision, engine: Engine, seconds: float) -> None:
        return None

    def event(self, name: str, **labels: str) -> None:
        return None


@dataclass
class Health:
    """Last successful update per component (ms) and a short status each."""

    market_data_ms: int = 0
    exchange_ms: int = 0
    execution_ms: int = 0
    strategies_ms: int = 0
    store_ms: int = 0
    exchange_error: str = ""
    started: bool = False
    # The clock-drift check (runner/clock_watch.py); clock_ms 0: never measured.
    clock_offset_ms: float | None = None
    clock_ok: bool = True
    clock_detail: str = "not measured"
    clock_ms: int = 0
    # coins on the venue the state does not know (runner/holdings.py): symbol -> amount
    unknown_holdings: dict[str, str] = field(default_factory=dict)
    unknown_policy: str = ""


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
    ) -> None:
        self.config = config
        self.strategies = tuple(strategies)
        self.exchange = exchange
        self.feed = feed
        self.bank = bank
        self.store = store
        self.recorder = recorder
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        self.quote = quote_currency or config.universe.quote_currency
        self._listeners = tuple(candle_listeners)
        self._sink = self._make_sink()
        self._timer = time.perf_counter if stage_timing else None
        self.markets: dict[str, Market] = {}
        self.state = EngineState()
        self.portfolio = Portfolio(cash=Decimal(0), quote=self.quote)
        self.book = OrderBookkeeper()
        self.api_errors: deque[int] = deque(maxlen=1000)
        self.rejections: deque[int] = deque(maxlen=1000)
        self._rejected_by: deque[tuple[int, str]] = deque(maxlen=1000)  # (ts, symbol)
        self._error_window = error_window_ms
        self._depth_check = config.execution.min_depth_multiple > 0
        self.health = Health()
        self.kill_file = False  # the kill-switch file is present (set by the loop's watcher)
        self.kill_reason = ""
        # Exits-only orders from the runner's own guards: cause -> detail (see set_exits_only).
        self.exits_only: dict[str, str] = {}
        self.last_decision: CycleDecision | None = None
        self.bad_ticks = 0
        self._down = False  # an ExchangeUnavailable happened during this cycle
        self._down_cycles = 0  # cycles in a row that ended with the exchange unreachable
        self._markets_ms = 0
        self._screen: StaticScreen | None = None  # of self.markets; see _quote_symbols
        self._history = CandleHistory(bank)
        # One owner of the portfolio at a time: a cycle and a fast exit never interleave.
        self.lock = asyncio.Lock()
        self.reconciler = Reconciler(self)
        self.executor = Executor(
            exchange=exchange,
            recorder=recorder,
            book=self.book,
            kill_active=self.kill_active,
            on_rejection=self._rejected,
            on_api_error=self._api_error,
            persist=store.save_order,
            on_order=lambda result: self.telemetry.event("order", result=result),
        )

    # ---- lifecycle --------------------------------------------------------------------------

    def kill_active(self) -> bool:
        return self.kill_file or self.state.kill_switch

    def _exchange_failed(self, now_ms: int, exc: ExchangeError) -> None:
        self._api_error(now_ms, type(exc).__name__)
        self.health.exchange_error = type(exc).__name__
        if isinstance(exc, ExchangeUnavailable):
            if not self._down and not self._down_cycles:
                log.error(
                    "exchange unreachable (%s: %s); trading nothing, retrying every cycle",
                    type(exc).__name__,
                    " ".join(str(exc).split())[:200],
                )
            self._down = True

    def _api_error(self, ts: int, kind: str) -> None:
        # Feeds the API-error breaker. vigil_api_errors_total is counted per failed request
        # by the venue adapter itself (runner/live.py), retries included.
        self.api_errors.append(ts)

    def _rejected(self, ts: int, symbol: str) -> None:
        """An order the venue refused. `breakers.rejection_count` of them on one symbol within
        `breakers.rejection_window_seconds` ban that symbol alone for `universe.ban_minutes`
        (its exits still go), and those rejections stop counting toward the rejections
        breaker, which is for refusals spread over symbols (the account, not one product)."""
        b = self.config.breakers
        self.rejections.append(ts)
        self._rejected_by.append((ts, symbol))
        lo = ts - b.rejection_window_seconds * 1000
        mine = sum(1 for t, s in self._rejected_by if s == symbol and t > lo)
        if mine < b.rejection_count:
            return
        until = ts + self.config.universe.ban_minutes * 60_000
        bans = dict(self.state.bans)
        bans[symbol] = max(bans.get(symbol, 0), until)
        self.state = replace(self.state, bans=MappingProxyType(bans))
        kept = [(t, s) for t, s in self._rejected_by if s != symbol]
        self._rejected_by = deque(kept, maxlen=1000)
        self.rejections = deque((t for t, _ in kept), maxlen=1000)
        detail = f"{mine} orders rejected in {b.rejection_window_seconds}s"
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
        """Restore state, load markets, warm indicators up, reconcile once."""
        self.state = self.store.load_engine_state()
        positions = self.store.load_positions()
        self.book = OrderBookkeeper(self.store.load_orders(live_only=True))
        self.executor._book = self.book
        self.markets = await self.exchange.load_markets()
        self._markets_ms = now_ms
        balances = await self.exchange.fetch_balances()
        cash = balances[self.quote].total if self.quote in balances else Decimal(0)
        self.portfolio = Portfolio(cash=cash, positions=positions, quote=self.quote)
        self.reconciler.restore(self.store.load_fills())
        if warmup_bars > 0:
            await self.feed.warmup(now_ms, warmup_bars, self._sink)
        self.health.started = True
        self.health.store_ms = now_ms

    # ---- the cycle --------------------------------------------------------------------------

    def _make_sink(self) -> EngineSink:
        return EngineSink(self.bank.pusher, self._listeners, self._bad_tick)

    def _bad_tick(self, exc: BadTick) -> None:
        self.bad_ticks += 1
        log.warning("bad tick rejected: %s", exc)
        self.recorder.event(
            "bad_tick",
            {"symbol": exc.symbol, "ts": exc.ts, "reason": exc.reason, "detail": exc.detail},
        )
        self.telemetry.event("bad_tick", reason=exc.reason)

    async def poll_market(self, now_ms: int) -> None:
        """New candles in, outside a cycle (a flatten waiting for fills: in PAPER the
        simulated fills come from these candles)."""
        try:
            if await self.feed.poll(now_ms, self._sink):
                self.health.market_data_ms = now_ms
        except ExchangeError as exc:
            self._exchange_failed(now_ms, exc)

    async def step(self, now_ms: int) -> CycleDecision:
        async with self.lock:
            return await self._step(now_ms)

    async def _step(self, now_ms: int) -> CycleDecision:
        t0 = time.perf_counter()
        CYCLE.set(now_ms)  # JSON log lines name the cycle they belong to
        missing: list[str] = []
        self._down = False
        try:
            if await self.feed.poll(now_ms, self._sink):
                self.health.market_data_ms = now_ms
        except ExchangeError as exc:
            self._exchange_failed(now_ms, exc)
            missing.append("candles")
        if now_ms - self._markets_ms >= MARKETS_CHECK_MS:
            await self._refresh_markets(now_ms)
        await self.reconciler.run(now_ms, missing)
        symbols = self._quote_symbols()
        try:
            quotes: Mapping[str, Quote] = await self.exchange.fetch_quotes(symbols)
            self.health.exchange_ms = now_ms
        except ExchangeError as exc:
            self._exchange_failed(now_ms, exc)
            quotes = {}
            missing.append("quotes")
        features = self.bank.latest()
        # The guarded marks the cycle values positions at, computed once: a bad print must
        # not lift a trailing stop's peak either.
        marks = cycle_marks(self.portfolio, quotes, features, self.config)
        if marks.prices:
            self.portfolio = update_peaks(self.portfolio, marks.prices)
        prior = self.state
        snapshot = MarketSnapshot(
            ts=now_ms,
            markets=self.markets,
            features=features,
            quotes=quotes,
            open_orders=tuple(self.book.live()) if self.book.has_live() else (),
            state=prior,
            api_errors=self._recent(self.api_errors, now_ms) if self.api_errors else (),
            rejections=self._recent(self.rejections, now_ms) if self.rejections else (),
            kill_switch=self.kill_file,
            kill_reason=self.kill_reason,
            missing=tuple(missing) if missing else (),
            exchange_down=self._down,
            history=self._history,
            exits_only=",".join(sorted(self.exits_only)) if self.exits_only else "",
            entries_blocked=self.reconciler.unknown.entry_blocks(),
            marks=marks,
            screen=self._screen,
        )
        decision = run_cycle(
            snapshot,
            self.portfolio,
            self.config,
            now_ms,
            strategies=self.strategies,
            timer=self._timer,
        )
        if decision.intents and self._depth_check:
            decision = await self._with_books(snapshot, decision, now_ms)
        if self._down:
            self._down_cycles += 1
        elif self._down_cycles:
            log.warning("exchange reachable again after %d cycle(s)", self._down_cycles)
            self._down_cycles = 0
        self.state = decision.state
        self.health.strategies_ms = now_ms
        self.recorder.decision(
            decision,
            prior.breakers,
            positions=len(self.portfolio.positions),
            open_orders=len(snapshot.open_orders),
        )
        if decision.state.kill_switch and not prior.kill_switch:
            self.recorder.event(
                "kill_switch", {"reason": decision.state.kill_reason, "source": "cycle"}, sync=True
            )
        if decision.cancels or decision.intents:
            await self._execute(decision, now_ms)
        self.store.save_cycle(self.state, self.portfolio, now_ms)
        self.health.store_ms = now_ms
        self.last_decision = decision
        self.telemetry.cycle(decision, self, time.perf_counter() - t0)
        if len(self.book.orders) > 1000:
            self.book.forget_terminal()
        return decision

    async def _with_books(
        self, snapshot: MarketSnapshot, decision: CycleDecision, now_ms: int
    ) -> CycleDecision:
        """The depth check, for entry candidates only: the symbols risk approved an entry
        on get their order book, and the (pure) cycle runs again with those books. An entry
        approved only on that second run (room freed by a thin book) gets its book and
        another run, until every approved entry was judged on its book. No book can be
        fetched: an empty one, so the entry is refused (THIN_BOOK), never sent unchecked."""
        books: dict[str, OrderBook] = {}
        while True:
            want = [
                i.symbol
                for i in decision.intents
                if i.side is Side.BUY and not i.reduce_only and i.symbol not in books
            ]
            if not want:
                return decision
            for sym in want:
                books[sym] = await self._book(sym, now_ms)
            snapshot = replace(snapshot, books=MappingProxyType(dict(books)))
            decision = run_cycle(
                snapshot,
                self.portfolio,
                self.config,
                now_ms,
                strategies=self.strategies,
                timer=self._timer,
            )

    async def _book(self, symbol: str, now_ms: int) -> OrderBook:
        try:
            return await self.exchange.fetch_order_book(symbol, DEPTH_LEVELS)
        except ExchangeError as exc:
            self._api_error(now_ms, type(exc).__name__)
            log.warning("order book of %s unavailable (%s): entry refused", symbol, exc)
            return OrderBook(symbol=symbol, bids=(), asks=(), ts=now_ms)

    async def _refresh_markets(self, now_ms: int) -> None:
        """The adapter caches markets and reloads them on its own schedule; asking once a
        minute means a product whose status degrades stops being traded within a cycle or
        two of the adapter seeing it."""
        self._markets_ms = now_ms
        try:
            self.markets = await self.exchange.load_markets()
        except ExchangeError as exc:
            self._exchange_failed(now_ms, exc)  # keep trading on the markets we have

    def _recent(self, dq: deque[int], now_ms: int) -> tuple[int, ...]:
        if not dq:
            return ()
        lo = now_ms - self._error_window
        while dq and dq[0] <= lo:
            dq.popleft()
        return tuple(dq)

    def _quote_symbols(self) -> Sequence[str]:
        screen = self._screen
        if screen is None or not screen.fits(self.config.universe, self.markets):
            screen = self._screen = static_screen(self.config.universe, self.markets)
        syms = screen.symbols
        extra = [s for s in self.portfolio.positions if s not in syms]
        return [*syms, *extra] if extra else syms

    async def _execute(self, d: CycleDecision, now_ms: int) -> None:
        for c in d.cancels:
            await self.executor.cancel(c, now_ms)
        for intent in d.intents:
            await self.executor.submit(intent, now_ms)
        if d.cancels or d.intents:
            self.health.execution_ms = now_ms

    async def fast_exit(
        self, symbol: str, quote: Quote, now_ms: int, high: Decimal | None = None
    ) -> FastExit:
        """A streamed price for a held position, between cycles: the cycle's exit rule, gate
        and risk check (core/fast_exit.py), then the same executor and audit records."""
        async with self.lock:
            plan = plan_fast_exit(
                symbol=symbol,
                quote=quote,
                portfolio=self.portfolio,
                markets=self.markets,
                features=self.bank.latest(),
                state=self.state,
                open_orders=self.book.live() if self.book.has_live() else (),
                config=self.config,
                now_ms=now_ms,
                kill=self.kill_active(),
                high=high,
            )
            if plan.proposal is None:
                return plan
            self.recorder.event(
                "fast_exit",
                {"symbol": symbol, "ts": now_ms, "last": str(quote.last), "bid": str(quote.bid)},
            )
            self.recorder.event("proposal", proposal_data(plan.proposal, now_ms))
            for v in plan.verdicts:
                self.recorder.event("verdict", verdict_data(v, now_ms))
            for intent in plan.intents:
                await self.executor.submit(intent, now_ms)
                self.health.execution_ms = now_ms
            return plan

    # ---- operator actions -------------------------------------------------------------------

    async def engage_kill(self, reason: str, now_ms: int, source: str) -> int:
        """Block new orders at once, cancel every live order, latch the halt."""
        first = not self.state.kill_switch
        self.kill_file = True
        self.kill_reason = reason
        self.state = replace(self.state, kill_switch=True, kill_reason=reason)
        self.store.set_kill(True, reason)
        if first:
            self.recorder.event("kill_switch", {"reason": reason, "source": source}, sync=True)
        return await self.cancel_all(now_ms, reason="KILL_SWITCH")

    def set_exits_only(self, cause: str, detail: str, now_ms: int) -> None:
        """Refuse entries from the next cycle on (exits still run) until `clear_exits_only`
        or an operator's resume. Recorded (and so alerted) when it starts."""
        if self.exits_only.get(cause) == detail:
            return
        first = cause not in self.exits_only
        self.exits_only[cause] = detail
        if first:
            self.recorder.event(
                "exits_only", {"ts": now_ms, "cause": cause, "detail": detail}, sync=True
            )
            log.error("EXITS ONLY (%s): %s", cause, detail)

    def clear_exits_only(self, cause: str, now_ms: int) -> None:
        if self.exits_only.pop(cause, None) is not None:
            self.recorder.event("exits_only_clear", {"ts": now_ms, "cause": cause}, sync=True)
            log.warning("exits-only (%s) cleared", cause)

    def resume(self, now_ms: int, source: str) -> None:
        self.kill_file = False
        self.kill_reason = ""
        for cause in list(self.exits_only):
            if cause in LATCHED_BY_RESUME:
                self.clear_exits_only(cause, now_ms)
        self.state = replace(self.state, kill_switch=False, kill_reason="")
        self.store.set_kill(False, "")
        self.recorder.event("resume", {"ts": now_ms, "source": source}, sync=True)

    async def cancel_all(self, now_ms: int, *, reason: str) -> int:
        live = self.book.live()
        for o in live:
            await self.executor.cancel(CancelRequest(o.client_order_id, o.symbol, reason), now_ms)
        return len(live)
