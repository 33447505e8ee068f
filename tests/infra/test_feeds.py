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


def _replay_through_engine_sink(series: object, use_parts: bool) -> tuple[object, ...]:
    from core.features import FeatureBank
    from runner.engine import EngineSink

    bank = FeatureBank(["ema:5", "med:3"], history=0)
    heard: list[tuple[int, float]] = []
    bad: list[str] = []
    sink = EngineSink(
        bank.pusher,
        [lambda sym, ts, o, h, lo, c, v: heard.append((ts, c))],
        lambda exc: bad.append(exc.reason),
    )
    feed = ReplayFeed({"BTC/USDT": series}, timeframe_ms=TF)  # type: ignore[dict-item]
    call = sink if use_parts else (lambda *candle: sink(*candle))  # no `parts`: plain

    async def go() -> None:
        while (nxt := feed.next_close_ms()) is not None:
            await feed.poll(nxt + 2 * TF, call)  # three candles a poll

    asyncio.run(go())
    return heard, bad, bank.get("BTC/USDT")


def test_an_engine_sink_gets_the_same_candles_through_its_parts() -> None:
    """With an EngineSink the feed calls each symbol's candle step and listener itself: the
    same candles, across chunk boundaries and several per poll, a bad one refused and not
    passed on, and the plain callable path agreeing candle for candle."""
    from dataclasses import replace

    a = generate_candles("BTC/USDT", "5m", START, CHUNK + 40, seed=3)
    high = a.high.copy()
    high[CHUNK + 7] = a.low[CHUNK + 7] * 0.5  # a bad tick, just past the first chunk
    a = replace(a, high=high)
    heard, bad, _ = fast = _replay_through_engine_sink(a, True)
    assert bad == ["BAD_PRICE"]
    assert len(heard) == len(a) - 1  # type: ignore[arg-type]
    assert fast == _replay_through_engine_sink(a, False)
