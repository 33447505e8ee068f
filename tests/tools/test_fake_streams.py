"""The fake exchange's WebSocket streams, spoken to as Binance's: raw and combined streams,
SUBSCRIBE / LIST_SUBSCRIPTIONS, the stream limit, closed klines on advance and the faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tools.fake_exchange import ControlClient, ControlError, FakeExchange
from tools.fake_exchange.ws import MAX_STREAMS


@pytest.fixture
async def fake() -> AsyncIterator[FakeExchange]:
    f = FakeExchange(
        symbols=["BTC/USDT", "ETH/USDT"],
        balances={"USDT": Decimal(1000)},
        api_key="k" * 16,
        api_secret="s" * 16,
        timeframe="1m",
        warmup_candles=20,
        synthetic_bars=200,
    )
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


async def recv(ws: Any, n: int, timeout: float = 5) -> list[Any]:
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(json.loads((await ws.receive()).data))
    return out


async def test_subscribe_list_and_closed_klines_on_advance(fake: FakeExchange) -> None:
    url = fake.url.replace("http", "ws")
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "/ws/0") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1})
        assert await recv(ws, 1) == [{"result": None, "id": 1}]
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        assert await recv(ws, 1) == [{"result": ["btcusdt@kline_1m"], "id": 2}]
        before = fake.market_ms
        fake.advance(2)
        msgs = await recv(ws, 3)
    k = [m["k"] for m in msgs]
    # two candles closed: both closed klines by open time, then the next candle opening
    assert [(x["t"] - before, x["x"]) for x in k] == [(0, True), (60_000, True), (120_000, False)]
    assert all(m["e"] == "kline" and m["k"]["s"] == "BTCUSDT" and m["k"]["i"] == "1m" for m in msgs)


async def test_combined_streams_wrap_and_price_print(fake: FakeExchange) -> None:
    url = fake.url.replace("http", "ws") + "/stream?streams=ethusdt@trade/ethusdt@bookTicker"
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        await asyncio.sleep(0.1)
        t = await fake.streams.publish_price("ETH/USDT", "123.45")
        book, trade = await recv(ws, 2)
    assert fake.streams.published["ETH/USDT"] == t
    assert book == {"stream": "ethusdt@bookTicker", "data": book["data"]}
    assert book["data"]["b"] == book["data"]["a"] == "123.45"
    assert trade["stream"] == "ethusdt@trade" and trade["data"]["p"] == "123.45"


async def test_stream_limit_and_faults(fake: FakeExchange) -> None:
    url = fake.url.replace("http", "ws") + "/ws"
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        names = [f"s{i}usdt@trade" for i in range(MAX_STREAMS + 1)]
        await ws.send_json({"method": "SUBSCRIBE", "params": names, "id": 7})
        [answer] = await recv(ws, 1)
        assert answer["id"] == 7 and "1024" in answer["error"]["msg"]
        await fake.streams.fault({"action": "stall", "seconds": 30})
        assert fake.streams.describe()["stalled"]
        with pytest.raises(ValueError, match="unknown stream action"):
            await fake.streams.fault({"action": "explode"})
        assert (await fake.streams.fault({"action": "disconnect"}))["disconnected"] == 1
        msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_control_client_drives_the_stream_faults(fake: FakeExchange) -> None:
    async with ControlClient(fake.url) as c:
        state = await c.stream_fault("gap", candles=2)
        assert state["gap"] == 2
        assert (await c.streams())["gap"] == 2
        assert (await c.stream_fault("clear"))["gap"] == 0
        with pytest.raises(ControlError, match="400"):
            await c.stream_fault("stall", seconds=-1)
