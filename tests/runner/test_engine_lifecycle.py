"""The engine's lifecycle and the order gate: step only while started, nothing sent once
stopping, and a kill-switch block acknowledged only when no send is still in flight."""

from __future__ import annotations

import asyncio
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backtest.synthetic import generate_candles
from core.clock import SimClock
from core.models import Order, OrderIntent, OrderStatus, OrderType, Side
from infra.candle_files import write_candles
from infra.settings import VigilConfig
from runner.app import build_engine, prepare_replay, replay_venue
from runner.engine import Engine
from runner.engine_parts import EngineNotRunning, EngineStatus
from runner.kill import KillFiles, KillWatcher
from runner.recorder import MemorySink
from runner.store import MemoryStore

START = 1_704_067_200_000


class SlowOrders:
    """The sim exchange, with create_order held until `release` is set."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.release = asyncio.Event()
        self.sending = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def create_order(self, intent: OrderIntent) -> Order:
        self.sending.set()
        await self.release.wait()
        order: Order = await self._inner.create_order(intent)
        return order


def make(tmp_path: Path, *, slow: bool = False) -> tuple[Engine, Any, SimClock, Any]:
    write_candles(
        tmp_path / "BTC_USDT-5m.feather",
        generate_candles("BTC/USDT", "5m", START, 400, seed=1, start_price=100.0),
    )
    cfg = VigilConfig.model_validate(
        {
            "universe": {"symbols": ["BTC/USDT"], "min_quote_volume_24h": 0},
            "strategies": {"rules": {"enabled": False}},
        }
    )
    inputs = prepare_replay(cfg, tmp_path, warmup_candles=300)
    clock = SimClock(inputs.start_ms)
    venue = replay_venue(inputs, cfg.sim, clock)
    exchange: Any = SlowOrders(venue.exchange) if slow else venue.exchange
    engine = build_engine(
        config=cfg,
        exchange=exchange,
        feed=venue.feed,
        store=MemoryStore(),
        sink=MemorySink(),
        listeners=venue.listeners,
    )
    return engine, exchange, clock, inputs


def intent(coid: str, price: Decimal) -> OrderIntent:
    return OrderIntent(coid, "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal(1), price, "manual", 0)


def test_step_before_start_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    engine, _, _, inputs = make(tmp_path)
    assert engine.status is EngineStatus.NEW
    with pytest.raises(EngineNotRunning, match=r"engine is new: cannot step; call start"):
        asyncio.run(engine.step(inputs.start_ms))


def test_lifecycle_runs_new_started_stopping_stopped(tmp_path: Path) -> None:
    async def go() -> None:
        engine, _, _, inputs = make(tmp_path)
        await engine.start(inputs.start_ms, warmup_bars=300)
        assert engine.status is EngineStatus.STARTED
        with pytest.raises(EngineNotRunning, match="engine is started: cannot start"):
            await engine.start(inputs.start_ms, warmup_bars=300)
        await engine.step(inputs.start_ms)
        assert await engine.stop(inputs.start_ms, cancel_open=True) == 0
        assert engine.status is EngineStatus.STOPPED
        engine.persist(inputs.start_ms)  # saving the state stays allowed
        with pytest.raises(EngineNotRunning, match="engine is stopped: cannot step"):
            await engine.step(inputs.start_ms + 300_000)
        with pytest.raises(EngineNotRunning):
            await engine.stop(inputs.start_ms, cancel_open=True)

    asyncio.run(go())


def test_a_stopping_engine_sends_nothing_and_cancels_what_rests(tmp_path: Path) -> None:
    async def go() -> None:
        engine, sim, clock, inputs = make(tmp_path)
        await engine.start(inputs.start_ms, warmup_bars=300)
        bid = (await sim.fetch_quotes(["BTC/USDT"]))["BTC/USDT"].bid
        await engine.executor.submit(intent("rest1", bid / 2), clock.now_ms())
        assert len(await sim.fetch_open_orders()) == 1
        assert await engine.stop(clock.now_ms(), cancel_open=True) == 1
        assert await sim.fetch_open_orders() == []
        late = await engine.executor.submit(intent("late1", bid / 2), clock.now_ms())
        assert late.status is OrderStatus.REJECTED
        assert "shutting down" in late.reason
        assert await sim.fetch_open_orders() == []
        assert not engine.kill_active()  # a shutdown is not a kill switch

    asyncio.run(go())


def test_block_is_acknowledged_only_when_the_send_in_flight_returned(tmp_path: Path) -> None:
    async def go() -> None:
        engine, slow, _clock, inputs = make(tmp_path, slow=True)
        await engine.start(inputs.start_ms, warmup_bars=300)
        bid = (await slow.fetch_quotes(["BTC/USDT"]))["BTC/USDT"].bid
        sending = asyncio.create_task(engine.executor.submit(intent("fly1", bid / 2), 1))
        await slow.sending.wait()  # past the gate, on its way to the exchange
        ctl = engine.kill_control()
        ctl.gate.close("test")
        blocked = asyncio.create_task(ctl.blocked())
        await asyncio.sleep(0.01)
        assert not blocked.done()  # an order can still reach the exchange
        refused = await engine.executor.submit(intent("new1", bid / 2), 2)
        assert refused.status is OrderStatus.REJECTED  # but no new one leaves
        slow.release.set()
        await asyncio.wait_for(blocked, 1)
        assert (await sending).status is OrderStatus.OPEN

    asyncio.run(go())


def test_kill_latency_runs_from_the_file_to_the_acknowledged_block(tmp_path: Path) -> None:
    async def go() -> None:
        engine, slow, clock, inputs = make(tmp_path, slow=True)
        await engine.start(inputs.start_ms, warmup_bars=300)
        files = KillFiles(tmp_path / "KILL_SWITCH", tmp_path / "RESUME")
        seen: list[tuple[float, float]] = []
        watcher = KillWatcher(
            control=engine.kill_control(),
            clock=clock,
            files=files,
            on_latency=lambda b, c: seen.append((b, c)),
        )
        await watcher.check()  # a look without the file
        bid = (await slow.fetch_quotes(["BTC/USDT"]))["BTC/USDT"].bid
        sending = asyncio.create_task(engine.executor.submit(intent("fly2", bid / 2), 1))
        await slow.sending.wait()
        files.kill.write_text("drill\n")
        t_file = time.time()
        os.utime(files.kill, (t_file - 0.2, t_file - 0.2))  # touched 0.2 s ago
        asyncio.get_running_loop().call_later(0.1, slow.release.set)
        await watcher.check()
        assert (await sending).status is OrderStatus.OPEN  # it was past the gate
        assert engine.kill_active() and engine.state.kill_switch
        ((block, cancel),) = seen
        # From the file's mtime (bounded by the last look without it) through the send that
        # was in flight for another 0.1 s: not one assignment.
        assert block >= 0.1
        assert cancel >= block
        assert await slow.fetch_open_orders() == []  # the late order was canceled as well

    asyncio.run(go())


def test_the_live_feed_polls_what_the_engine_tells_it(tmp_path: Path) -> None:
    """FeedSymbols holds no engine: it is told the markets and positions after start and
    after every cycle (on_account), and polls the configured symbols until then."""
    from runner.live import FeedSymbols

    async def go() -> None:
        write_candles(
            tmp_path / "BTC_USDT-5m.feather",
            generate_candles("BTC/USDT", "5m", START, 400, seed=1, start_price=100.0),
        )
        write_candles(
            tmp_path / "ETH_USDT-5m.feather",
            generate_candles("ETH/USDT", "5m", START, 400, seed=2, start_price=50.0),
        )
        cfg = VigilConfig.model_validate(
            {
                "universe": {"symbols": ["ETH/USDT"], "min_quote_volume_24h": 0},
                "regime": {"index_symbol": "BTC/USDT"},
                "strategies": {"rules": {"enabled": False}},
            }
        )
        inputs = prepare_replay(cfg, tmp_path, warmup_candles=300)
        clock = SimClock(inputs.start_ms)
        venue = replay_venue(inputs, cfg.sim, clock)
        symbols = FeedSymbols(cfg)
        engine = build_engine(
            config=cfg,
            exchange=venue.exchange,
            feed=venue.feed,
            store=MemoryStore(),
            sink=MemorySink(),
            listeners=venue.listeners,
            on_account=symbols.follow,
        )
        assert list(symbols()) == ["ETH/USDT"]  # not started: the configured symbols
        await engine.start(inputs.start_ms, warmup_bars=300)
        assert list(symbols()) == ["ETH/USDT", "BTC/USDT"]  # the candidates and the index
        await engine.step(inputs.start_ms)
        assert list(symbols()) == ["ETH/USDT", "BTC/USDT"]

    asyncio.run(go())
