"""The replay feed hands out exactly the recorded candles, each once, when they close."""

from __future__ import annotations

import asyncio

import numpy as np

from backtest.synthetic import generate_candles
from infra.feeds import CHUNK, ReplayFeed

START = 1_704_067_200_000
TF = 300_000


def test_every_candle_once_in_order_across_chunk_boundaries() -> None:
    a = generate_candles("BTC/USDT", "5m", START, 2 * CHUNK + 123, seed=1)
    b = generate_candles("ETH/USDT", "5m", START + 7 * TF, CHUNK + 5, seed=2)
    feed = ReplayFeed({"BTC/USDT": a, "ETH/USDT": b}, timeframe_ms=TF)
    got: dict[str, list[tuple[int, float]]] = {"BTC/USDT": [], "ETH/USDT": []}

    def sink(sym: str, ts: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        got[sym].append((ts, c))

    async def go() -> None:
        assert feed.first_close_ms() == START + TF
        assert await feed.warmup(START + 10 * TF, 10, sink) == 10 + 3
        now = START + 10 * TF
        rng = np.random.default_rng(0)
        while (nxt := feed.next_close_ms()) is not None:
            assert nxt > now - TF
            now = nxt + int(rng.integers(0, 3)) * TF  # sometimes several candles at once
            await feed.poll(now, sink)
            for sym, rows in got.items():
                assert all(ts + TF <= now for ts, _ in rows[-3:]), sym  # only closed candles

    asyncio.run(go())
    assert got["BTC/USDT"] == list(zip(a.ts.tolist(), a.close.tolist(), strict=True))
    assert got["ETH/USDT"] == list(zip(b.ts.tolist(), b.close.tolist(), strict=True))
    assert feed.exhausted


def test_seek_skips_without_delivering() -> None:
    a = generate_candles("BTC/USDT", "5m", START, CHUNK + 50, seed=1)
    feed = ReplayFeed({"BTC/USDT": a}, timeframe_ms=TF)
    feed.seek(START + (CHUNK + 10) * TF)
    assert feed.next_close_ms() == START + (CHUNK + 10) * TF
