"""A symbol whose orders the venue keeps rejecting is banned alone for universe.ban_minutes;
the rejections breaker (exits only for everything) is left to refusals spread over symbols."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from core.errors import InvalidOrder, PostOnlyWouldTake
from core.models import OrderIntent, OrderType, Side
from infra.settings import VigilConfig
from runner.app import build_engine
from runner.recorder import MemorySink
from runner.store import MemoryStore

T0 = 1_704_067_200_000


class RejectingExchange:
    name = "rejecting"

    async def create_order(self, intent: OrderIntent) -> Any:
        raise InvalidOrder(f"{intent.symbol}: filter failure PRICE_FILTER")


class NoFeed:
    timeframe_ms = 300_000


def intent(symbol: str, n: int) -> OrderIntent:
    return OrderIntent(
        client_order_id=f"t-{symbol}-{n}",
        symbol=symbol,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        amount=Decimal("0.01"),
        price=Decimal(100),
        strategy="rules",
        cycle_ms=T0 + n,
    )


def test_rejection_burst_on_one_symbol_bans_it_alone() -> None:
    cfg = VigilConfig.model_validate(
        {"breakers": {"rejection_count": 3}, "universe": {"ban_minutes": 30}}
    )
    sink = MemorySink()
    engine = build_engine(
        config=cfg, exchange=RejectingExchange(), feed=NoFeed(), store=MemoryStore(), sink=sink
    )  # type: ignore[arg-type]

    async def go() -> None:
        for n in range(3):
            await engine.executor.submit(intent("SOL/USDT", n), T0 + n * 1000)
        await engine.executor.submit(intent("ETH/USDT", 9), T0 + 9000)

    asyncio.run(go())
    assert engine.state.bans == {"SOL/USDT": T0 + 2000 + 30 * 60_000}
    # SOL's three no longer count toward the account-wide breaker; ETH's one does.
    assert list(engine.errors.rejections) == [T0 + 9000]
    banned = [d for k, d in sink.records if k == "symbol_banned"]
    assert banned == [
        {
            "ts": T0 + 2000,
            "symbol": "SOL/USDT",
            "until": T0 + 2000 + 30 * 60_000,
            "reason": "3 orders rejected in 300s",
        }
    ]


def test_rejections_spread_over_symbols_ban_nobody() -> None:
    cfg = VigilConfig.model_validate({"breakers": {"rejection_count": 3}})
    engine = build_engine(
        config=cfg,
        exchange=RejectingExchange(),
        feed=NoFeed(),
        store=MemoryStore(),
        sink=MemorySink(),
    )  # type: ignore[arg-type]

    async def go() -> None:
        for n, sym in enumerate(("SOL/USDT", "ETH/USDT", "BTC/USDT")):
            await engine.executor.submit(intent(sym, n), T0 + n * 1000)

    asyncio.run(go())
    assert dict(engine.state.bans) == {}
    assert len(engine.errors.rejections) == 3  # the breaker sees all three


class MovedExchange:
    """Every post-only order arrives after the price moved through it."""

    name = "moved"

    async def create_order(self, intent: OrderIntent) -> Any:
        raise PostOnlyWouldTake(f"{intent.symbol}: Order would immediately match and take.")


def test_post_only_refused_because_the_price_moved_counts_toward_nothing() -> None:
    cfg = VigilConfig.model_validate({"breakers": {"rejection_count": 3}})
    sink = MemorySink()
    engine = build_engine(
        config=cfg, exchange=MovedExchange(), feed=NoFeed(), store=MemoryStore(), sink=sink
    )  # type: ignore[arg-type]

    async def go() -> list[str]:
        orders = [await engine.executor.submit(intent("SOL/USDT", n), T0 + n) for n in range(5)]
        return [o.status.value for o in orders]

    assert asyncio.run(go()) == ["REJECTED"] * 5  # audited as rejected, as it was
    assert list(engine.errors.rejections) == []
    assert engine.state.bans == {}
    acks = [d for k, d in sink.records if k == "order_ack"]
    assert len(acks) == 5 and all("PostOnlyWouldTake" in str(a) for a in acks)
