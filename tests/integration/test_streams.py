"""WebSocket streams through real ccxt.pro against the fake exchange's streams (127.0.0.1).

- a reconnect mid-candle, a gap, duplicates and out-of-order klines: every closed candle is
  delivered exactly once, in order, with the venue's values (the feed, driven as the engine
  drives it);
- a crash through a stop: the LIVE daemon's exit order reaches the fake within a second of
  the price print, between cycles;
- a stalled stream: the stale-data breaker trips, and clears when the stream is back.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.clock import timeframe_ms
from infra.clock import LiveClock
from infra.exchange.ccxt_exchange import CcxtExchange
from infra.exchange.ccxt_factory import make_ccxt
from infra.live_feed import ExchangeFeed
from infra.streams import StreamFeed
from tests.integration.live_helpers import (
    SYMBOLS,
    make_workspace,
    read_db,
    running,
    wait_until,
    watched_fake,
)
from tools.fake_exchange.markets import ffmt

pytestmark = pytest.mark.integration


async def test_reconnect_gap_duplicates_deliver_every_closed_candle_once(tmp_path: Path) -> None:
    async with asyncio.timeout(60), watched_fake(tmp_path / "audit") as fake:
        clock = LiveClock()
        rest_ex = CcxtExchange(
            exchange_id="binance", clock=clock, rng=random.Random(1), base_url=fake.url
        )
        syms = list(SYMBOLS)
        rest = ExchangeFeed(exchange=rest_ex, symbols=lambda: syms, timeframe="1s", page=100)
        feed = StreamFeed(
            rest=rest,
            exchange_id="binance",
            client_factory=lambda: make_ccxt("binance", base_url=fake.url, pro=True),
            symbols=lambda: syms,
            now_ms=clock.now_ms,
            staleness_s=3,
            backoff_min_s=0.2,
            backoff_max_s=1,
            fallback_after=20,
            rng=random.Random(2),
        )
        got: list[tuple[str, int, float]] = []
        stop = asyncio.Event()
        runner = asyncio.create_task(feed.run(stop))
        faults = {
            2.5: {"action": "disconnect"},  # half-way through a 1s candle
            4.6: {"action": "gap", "candles": 2},
            6.3: {"action": "duplicate", "batches": 2},
            7.7: {"action": "out_of_order"},
            9.2: {"action": "disconnect"},
        }
        t0 = time.monotonic()
        try:
            while (elapsed := time.monotonic() - t0) < 13:
                for at in [a for a in faults if a <= elapsed]:
                    await fake.streams.fault(faults.pop(at))
                await feed.poll(
                    clock.now_ms(), lambda s, ts, o, h, lo, c, v: got.append((s, ts, c))
                )
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await runner
            await rest_ex.close()
        assert feed.stats.messages > 50 and feed.stats.reconnects >= 2
        assert feed.stats.backfills >= 1
        tf = timeframe_ms("1s")
        for sym in syms:
            mine = [(ts, c) for s, ts, c in got if s == sym]
            stamps = [ts for ts, _ in mine]
            assert len(stamps) >= 10, f"{sym}: only {len(stamps)} candles"
            assert stamps == list(range(stamps[0], stamps[-1] + tf, tf)), f"{sym}: {stamps}"
            venue = {
                r[0]: float(ffmt(r[4]))  # as the wire carries it, REST and stream alike
                for r in fake.feed.klines(
                    sym, tf, fake.market_ms, start_ms=stamps[0], end_ms=None, limit=1000
                )
            }
            assert all(venue[ts] == c for ts, c in mine), f"{sym}: values differ from the venue"


# Wide exits, so only a crash moves a position out; the cycle sees the REST price, which the
# price print does not move: an exit can only come from the stream.
HOLD_ENV = {
    "VIGIL_EXITS__STOP_LOSS_PCT": "-30",
    "VIGIL_EXITS__TAKE_PROFIT_PCT": "50",
    "VIGIL_EXITS__TRAILING_STOP_PCT": "50",
    "VIGIL_EXITS__MAX_HOLDING_MINUTES": "600",
}


def held(db: Path) -> dict[str, Decimal]:
    try:
        return read_db(db).positions
    except sqlite3.Error:  # not created yet, or busy
        return {}


async def test_crash_through_a_stop_exits_within_a_second_between_cycles(tmp_path: Path) -> None:
    audit = tmp_path / "data" / "audit"
    async with asyncio.timeout(90), watched_fake(audit) as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE", **HOLD_ENV)
        async with running(ws) as daemon:
            await wait_until(lambda: bool(held(ws.state_db)), 45, daemon, what="a position")
            sym = sorted(held(ws.state_db))[0]
            last = (await fake.sim.fetch_quotes([sym]))[sym].last
            crash = (last * Decimal("0.6")).quantize(Decimal("0.01"))
            published = await fake.streams.publish_price(sym, str(crash))
            pub_ms = published * 1000

            def exit_arrived() -> Any:
                return next(
                    (a for a in fake.accepted if a.symbol == sym and a.wall_ms >= pub_ms - 1),
                    None,
                )

            await wait_until(lambda: exit_arrived() is not None, 10, daemon, what="the exit")
            arrived = exit_arrived()
            records = ws.records()
            assert await daemon.terminate() == 0
    assert arrived is not None
    latency_ms = arrived.wall_ms - pub_ms
    assert latency_ms < 1000, f"exit order arrived {latency_ms:.0f} ms after the price"
    assert arrived.intent_logged  # the same audit-before-send path as a cycle's exit
    fast = [r["data"] for r in records if r["kind"] == "fast_exit"]
    assert any(d["symbol"] == sym and d["last"] == str(crash) for d in fast)
    intent = next(r["data"] for r in records if r["kind"] == "order_intent"
                  and r["data"]["client_order_id"] == arrived.client_order_id)  # fmt: skip
    assert intent["side"] == "sell" and intent["strategy"] == "exits"
    assert intent["reason"] == "stop_loss"


STALL_ENV = {
    "VIGIL_STREAM__STALENESS_SECONDS": "2",
    "VIGIL_STREAM__RECONNECT_MIN_SECONDS": "0.5",
    "VIGIL_STREAM__RECONNECT_MAX_SECONDS": "2",
    "VIGIL_STREAM__FALLBACK_AFTER_FAILURES": "50",  # stay on the (silent) streams
    "VIGIL_BREAKERS__STALE_DATA_SECONDS": "3",
}


def breaker(records: list[dict[str, Any]], kind: str, name: str) -> bool:
    return any(r["kind"] == kind and r["data"]["breaker"] == name for r in records)


async def test_stalled_stream_trips_the_stale_data_breaker_and_recovers(tmp_path: Path) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="PAPER", **STALL_ENV)
        async with running(ws) as daemon:

            async def stream_state() -> dict[str, Any]:
                _, body = await daemon.health()
                return dict(body.get("components", {}).get("market_stream", {}))

            await wait_until(lambda: len(ws.records()) > 5, 30, daemon, what="cycles")
            for _ in range(100):  # streaming, every symbol heard from
                if (await stream_state()).get("status") == "ok" and (await stream_state()).get(
                    "detail", ""
                ).startswith("streaming"):
                    break
                await asyncio.sleep(0.2)
            before = await stream_state()
            assert before["status"] == "ok", before
            await fake.streams.fault({"action": "stall", "seconds": 8})
            await wait_until(
                lambda: breaker(ws.records(), "breaker_trip", "stale_data"), 20, daemon,
                what="the stale-data breaker",
            )  # fmt: skip
            during = await stream_state()
            await wait_until(
                lambda: breaker(ws.records(), "breaker_clear", "stale_data"), 30, daemon,
                what="the breaker to clear",
            )  # fmt: skip
            after = await stream_state()
            assert await daemon.terminate() == 0
    assert during["status"] == "degraded" and "stale" in during["detail"], during
    assert after["status"] == "ok", after
    trips = [r for r in ws.records() if r["kind"] == "breaker_trip"]
    assert [t["data"]["breaker"] for t in trips] == ["stale_data"], trips
