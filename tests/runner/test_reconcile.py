"""Reconciliation against a real SimExchange acting as the venue."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from backtest.synthetic import generate_candles
from core.clock import SimClock
from core.models import OrderIntent, OrderStatus, OrderType, Side
from infra.candle_files import write_candles
from infra.settings import VigilConfig
from runner.app import build_engine, prepare_replay, replay_feed, sim_exchange
from runner.recorder import MemorySink
from runner.store import MemoryStore

START = 1_704_067_200_000
TF = 300_000


def make(tmp_path: Path, **execution: object):  # type: ignore[no-untyped-def]
    write_candles(
        tmp_path / "BTC_USDT-5m.feather",
        generate_candles("BTC/USDT", "5m", START, 400, seed=1, start_price=100.0, volatility=0.002),
    )
    cfg = VigilConfig.model_validate(
        {
            "universe": {"symbols": ["BTC/USDT"], "min_quote_volume_24h": 0},
            "strategies": {"rules": {"enabled": False}},
            "execution": execution,
        }
    )
    inputs = prepare_replay(cfg, tmp_path, warmup_candles=300)
    clock = SimClock(inputs.start_ms)
    sim = sim_exchange(inputs, cfg.sim, clock)
    sink = MemorySink()
    engine = build_engine(
        config=cfg,
        exchange=sim,
        feed=replay_feed(inputs),
        store=MemoryStore(),
        sink=sink,
        listeners=[sim.on_candle],
    )
    return engine, sim, clock, inputs, sink


def intent(coid: str, price: str, amount: str = "1", side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(
        coid, "BTC/USDT", side, OrderType.LIMIT, Decimal(amount), Decimal(price), "manual", 0
    )


async def _cycles(engine, clock, inputs, n: int) -> None:  # type: ignore[no-untyped-def]
    t = clock.now_ms()
    for _ in range(n):
        t += TF
        if t > inputs.end_ms:
            break
        clock.advance_to(t)
        await engine.step(t)


def test_holding_smaller_than_position_shrinks_it_after_two_looks(tmp_path: Path) -> None:
    async def go() -> None:
        engine, sim, clock, inputs, sink = make(tmp_path)
        await engine.start(inputs.start_ms, warmup_bars=300)
        bid = (await sim.fetch_quotes(["BTC/USDT"]))["BTC/USDT"].bid
        await engine.executor.submit(intent("vgbuy", str(bid * 2), "1"), clock.now_ms())
        await _cycles(engine, clock, inputs, 3)
        pos = engine.portfolio.positions["BTC/USDT"]
        assert pos.quantity == 1
        sim.set_balance("BTC", Decimal("0.75"))  # coins left the account behind our back
        await _cycles(engine, clock, inputs, 1)
        assert engine.portfolio.positions["BTC/USDT"].quantity == 1  # one look is not enough
        await _cycles(engine, clock, inputs, 1)
        assert engine.portfolio.positions["BTC/USDT"].quantity == Decimal("0.75")
        assert engine.portfolio.positions["BTC/USDT"].cost_basis == pos.cost_basis
        recs = [d for k, d in sink.records if k == "reconcile" and d.get("what") == "position"]
        assert recs and recs[0]["exchange"] == "0.75"

    asyncio.run(go())


def test_foreign_orders_are_left_alone_or_canceled_by_policy(tmp_path: Path) -> None:
    for policy, expected in (("leave", OrderStatus.OPEN), ("cancel", OrderStatus.CANCELED)):

        async def go(policy: str = policy, expected: OrderStatus = expected) -> None:
            engine, sim, clock, inputs, sink = make(tmp_path / policy, foreign_orders=policy)
            await engine.start(inputs.start_ms, warmup_bars=300)
            bid = (await sim.fetch_quotes(["BTC/USDT"]))["BTC/USDT"].bid
            # Placed on the venue by someone else (a person, another bot).
            await sim.create_order(intent("manual-1", str(bid / 2)))
            await _cycles(engine, clock, inputs, 2)
            assert (await sim.fetch_order("manual-1", "BTC/USDT")).status is expected
            recs = [
                d for k, d in sink.records if k == "reconcile" and d.get("what") == "foreign_order"
            ]
            assert len(recs) == 1  # reported once, not every cycle

        (tmp_path / policy).mkdir()
        asyncio.run(go())


def test_fills_are_booked_once_even_when_fetched_again(tmp_path: Path) -> None:
    async def go() -> None:
        engine, sim, clock, inputs, sink = make(tmp_path)
        await engine.start(inputs.start_ms, warmup_bars=300)
        bid = (await sim.fetch_quotes(["BTC/USDT"]))["BTC/USDT"].bid
        await engine.executor.submit(intent("vgb2", str(bid * 2), "1"), clock.now_ms())
        await _cycles(engine, clock, inputs, 4)
        fills = [d for k, d in sink.records if k == "fill"]
        assert len(fills) == 1
        assert engine.portfolio.positions["BTC/USDT"].quantity == 1

    asyncio.run(go())


def test_a_product_that_degrades_leaves_the_universe_within_a_minute(tmp_path: Path) -> None:
    from core.models import MarketStatus

    async def go() -> None:
        engine, sim, clock, inputs, _sink = make(tmp_path)
        await engine.start(inputs.start_ms, warmup_bars=300)
        await _cycles(engine, clock, inputs, 1)
        assert "BTC/USDT" in engine.last_decision.universe.eligible
        sim.set_market_status("BTC/USDT", MarketStatus.OFFLINE)  # the venue halts it
        await _cycles(engine, clock, inputs, 1)  # 5 minutes later: markets re-read
        d = engine.last_decision
        assert "BTC/USDT" not in d.universe.eligible
        assert [e.reason for e in d.universe.excluded] == ["DEGRADED_STATUS"]

    asyncio.run(go())
