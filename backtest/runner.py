"""The backtest: the daemon's own engine driven by a SimClock over recorded candles.

Nothing here decides anything. `Engine.step` runs `run_cycle`, the executor and the
reconciliation exactly as the daemon does; this loop only moves the clock to each candle
close and collects what happened.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.clock import SimClock
from core.models import Position
from infra.settings import VigilConfig
from runner.app import ReplayInputs, build_engine, replay_venue
from runner.recorder import DECISION_KINDS, AuditSink, MemorySink
from runner.store import MemoryStore

Progress = Callable[[int, int], None]  # (cycles done, cycles expected)


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip: from flat to flat on a symbol."""

    symbol: str
    strategy: str
    entry_ts: int
    exit_ts: int
    quantity: Decimal
    entry_price: Decimal  # volume-weighted
    exit_price: Decimal
    fees: Decimal
    pnl: Decimal  # realized, fees included
    exit_reason: str

    @property
    def cost(self) -> Decimal:
        return self.quantity * self.entry_price

    @property
    def pnl_pct(self) -> float:
        return float(self.pnl / self.cost * 100) if self.cost else 0.0


@dataclass(repr=False)
class BacktestResult:
    config: VigilConfig
    config_hash: str
    seed: int
    inputs: ReplayInputs
    starting_cash: Decimal
    final_cash: Decimal = Decimal(0)
    final_equity: Decimal = Decimal(0)
    positions: dict[str, Position] = field(default_factory=dict)
    equity_ts: list[int] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    exposed: list[bool] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    no_trade: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    cycles: int = 0
    candles: int = 0
    bad_ticks: int = 0
    wall_s: float = 0.0
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __repr__(self) -> str:
        # The generated repr would format every equity point and record: asyncio formats a
        # finished task's result in places, and that alone cost a noticeable part of a run.
        return (
            f"BacktestResult(cycles={self.cycles}, candles={self.candles}, "
            f"trades={len(self.trades)}, final_equity={self.final_equity})"
        )


class _TradeBook:
    """Pairs fills into round trips, using the realized PnL the engine booked."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, Any]] = {}
        self.trades: list[Trade] = []

    def add(self, f: dict[str, Any]) -> None:
        sym = f["symbol"]
        qty, px, fee = Decimal(f["amount"]), Decimal(f["price"]), Decimal(f["fee"])
        t = self._open.get(sym)
        if f["side"] == "buy":
            if t is None:
                t = self._open[sym] = {
                    "strategy": f["strategy"],
                    "entry_ts": f["ts"],
                    "qty": Decimal(0),
                    "cost": Decimal(0),
                    "sold": Decimal(0),
                    "proceeds": Decimal(0),
                    "fees": Decimal(0),
                    "pnl": Decimal(0),
                }
            t["qty"] += qty
            t["cost"] += qty * px
            t["fees"] += fee
            return
        if t is None:
            return
        t["sold"] += qty
        t["proceeds"] += qty * px
        t["fees"] += fee
        t["pnl"] += Decimal(f["realized"])
        if t["sold"] >= t["qty"]:
            self.trades.append(
                Trade(
                    symbol=sym,
                    strategy=t["strategy"],
                    entry_ts=t["entry_ts"],
                    exit_ts=f["ts"],
                    quantity=t["qty"],
                    entry_price=t["cost"] / t["qty"],
                    exit_price=t["proceeds"] / t["sold"],
                    fees=t["fees"],
                    pnl=t["pnl"],
                    exit_reason=f["order_reason"],
                )
            )
            del self._open[sym]


class _Collect:
    """The engine's audit sink during a backtest: keeps the decision stream and books trades."""

    def __init__(self, result: BacktestResult, trades: _TradeBook, also: AuditSink | None) -> None:
        self._result = result
        self._trades = trades
        self._also = also
        self._mem = MemorySink(keep=DECISION_KINDS)

    def append(self, kind: str, data: Any, *, sync: bool = False) -> None:
        if kind == "fill":
            self._result.fills.append(dict(data))
            self._trades.add(data)
        elif kind == "verdict" and not data["approved"]:
            self._result.rejections[data["reason"]] += 1
        self._mem.append(kind, data)
        if self._also is not None:
            self._also.append(kind, data, sync=False)

    @property
    def records(self) -> list[tuple[str, dict[str, Any]]]:
        return self._mem.records


async def run_backtest(
    config: VigilConfig,
    inputs: ReplayInputs,
    *,
    config_hash: str,
    seed: int | None = None,
    audit: AuditSink | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    sim_cfg = config.sim if seed is None else config.sim.model_copy(update={"seed": seed})
    clock = SimClock(inputs.start_ms)
    venue = replay_venue(inputs, sim_cfg, clock)  # what `vigil run --replay` trades on too
    feed = venue.feed
    result = BacktestResult(
        config=config,
        config_hash=config_hash,
        seed=sim_cfg.seed,
        inputs=inputs,
        starting_cash=sim_cfg.starting_balances.get(config.universe.quote_currency, Decimal(0)),
    )
    trades = _TradeBook()
    sink = _Collect(result, trades, audit)
    engine = build_engine(
        config=config,
        exchange=venue.exchange,
        feed=feed,
        store=MemoryStore(),
        sink=sink,
        listeners=venue.listeners,
        cycle_summaries=audit is not None,
        stage_timing=audit is not None,
    )
    t0 = time.perf_counter()
    await engine.start(inputs.start_ms, warmup_bars=config.loop.warmup_candles)
    expected = (inputs.end_ms - inputs.start_ms) // inputs.timeframe_ms + 1
    every = max(1, expected // 200)
    t: int | None = inputs.start_ms
    eq_ts, eq, exposed, no_trade = result.equity_ts, result.equity, result.exposed, result.no_trade
    # float(Decimal) goes through a string: flat cycles repeat the same equity object.
    reasons: dict[str, str] = {}  # no-trade reason -> its kind (the part before ':')
    last_equity: Decimal | None = None
    last_float = 0.0
    while t is not None and t <= inputs.end_ms:
        clock.advance_to(t)
        d = await engine.step(t)
        eq_ts.append(t)
        if d.equity is not last_equity:
            last_equity, last_float = d.equity, float(d.equity)
        eq.append(last_float)
        exposed.append(bool(engine.portfolio.positions))
        if d.no_trade_reason is not None:
            reason = d.no_trade_reason
            kind = reasons.get(reason)
            if kind is None:
                kind = reasons[reason] = reason.split(":", 1)[0]
            no_trade[kind] += 1
        result.cycles += 1
        if progress is not None and result.cycles % every == 0:
            progress(result.cycles, expected)
        t = feed.next_close_ms()
    result.wall_s = time.perf_counter() - t0
    result.candles = sum(len(s) for s in inputs.series.values())
    result.bad_ticks = engine.bad_ticks
    result.final_cash = engine.portfolio.cash
    result.positions = dict(engine.portfolio.positions)
    result.final_equity = Decimal(str(eq[-1])) if eq else result.starting_cash
    if engine.last_decision is not None:
        result.final_equity = engine.last_decision.equity
    result.trades = trades.trades
    result.records = sink.records
    if progress is not None:
        progress(result.cycles, result.cycles)
    return result
