"""The replay feed hands out exactly the recorded candles, each once, when they close."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from backtest.synthetic import generate_candles
from core.features import BadTick, FeatureBank
from infra.feeds import CHUNK, ReplayFeed
from runner.engine_parts import EngineSink

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
    a = generate_candles("BTC/USDT", "5m", START, CHUNK + 40, seed=3)
    high = a.high.copy()
    high[CHUNK + 7] = a.low[CHUNK + 7] * 0.5  # a bad tick, just past the first chunk
    a = replace(a, high=high)
    heard, bad, _ = fast = _replay_through_engine_sink(a, True)
    assert bad == ["BAD_PRICE"]
    assert len(heard) == len(a) - 1  # type: ignore[arg-type]
    assert fast == _replay_through_engine_sink(a, False)


def _three_symbols() -> dict[str, Any]:
    """Unequal lengths and starts, chunk boundaries, a bad tick on each side of one."""
    a = generate_candles("BTC/USDT", "5m", START, 2 * CHUNK + 17, seed=11)
    b = generate_candles("ETH/USDT", "5m", START + 5 * TF, CHUNK + 3, seed=12)
    c = generate_candles("SOL/USDT", "5m", START + (CHUNK - 2) * TF, 40, seed=13)
    high = a.high.copy()
    high[CHUNK - 1] = a.low[CHUNK - 1] * 0.5  # the last row of a chunk
    high[CHUNK + 2] = a.low[CHUNK + 2] * 0.5
    a = replace(a, high=high)
    vol = b.volume.copy()
    vol[0] = -1.0  # the very first candle
    b = replace(b, volume=vol)
    return {"BTC/USDT": a, "ETH/USDT": b, "SOL/USDT": c}


def _run(series: dict[str, Any], direct: bool, seek_to: int | None = None) -> dict[str, Any]:
    """Everything the sink's callables see, in the order they see it. `direct`: the feed
    calls the engine sink's parts itself; else it calls the sink, as the live feed does."""
    bank = FeatureBank(["ema:5", "med:3", "atr:4"], history=0)
    calls: list[tuple[Any, ...]] = []

    def pusher_for(sym: str) -> Any:
        push = bank.pusher(sym)

        def step(*candle: Any) -> Any:
            calls.append(("step", sym, candle[0]))
            return push(*candle)

        return step

    sink = EngineSink(
        pusher_for,
        [lambda *candle: calls.append(("listen", *candle))],
        lambda exc: calls.append(("bad", exc.symbol, exc.ts, exc.reason)),
    )
    feed = ReplayFeed(series, timeframe_ms=TF)
    target: Any = sink if direct else (lambda *candle: sink(*candle))
    polls: list[tuple[int, int, int | None]] = []

    async def go() -> None:
        if seek_to is not None:
            feed.seek(seek_to)
        now = await_first = feed.next_close_ms()
        assert await_first is not None
        rng = np.random.default_rng(7)
        await feed.warmup(now + 3 * TF, 3, target)
        while (nxt := feed.next_close_ms()) is not None:
            now = nxt + int(rng.integers(0, 4)) * TF  # sometimes several candles at once
            n = await feed.poll(now, target)
            polls.append((now, n, feed.next_close_ms()))

    asyncio.run(go())
    return {"calls": calls, "polls": polls, "features": {s: bank.get(s) for s in series}}


def test_the_direct_loop_makes_the_same_calls_in_the_same_order() -> None:
    """Step then listener per candle, symbols in the feed's order, chunk boundaries, several
    candles per poll, bad ticks to bad_tick and not to the listener; the same counts and
    next-close times from every poll."""
    series = _three_symbols()
    fast, slow = _run(series, True), _run(series, False)
    assert fast == slow
    assert sum(1 for c in fast["calls"] if c[0] == "bad") == 3
    total = sum(len(s) for s in series.values())
    assert sum(1 for c in fast["calls"] if c[0] == "step") == total
    assert sum(1 for c in fast["calls"] if c[0] == "listen") == total - 3


def test_the_direct_loop_agrees_after_a_seek() -> None:
    series = _three_symbols()
    at = START + (CHUNK + 1) * TF
    assert _run(series, True, seek_to=at) == _run(series, False, seek_to=at)


def test_switching_sinks_hands_positions_over() -> None:
    """A plain callable after an engine sink (and back) continues where the other stopped."""
    series = _three_symbols()
    seen: list[tuple[str, int]] = []
    bank = FeatureBank(["ema:5"], history=0)
    sink = EngineSink(bank.pusher, [lambda sym, ts, *_: seen.append((sym, ts))], lambda e: None)

    def plain(sym: str, ts: int, *_: float) -> None:
        seen.append((sym, ts))

    feed = ReplayFeed(series, timeframe_ms=TF)

    async def go() -> None:
        i = 0
        while (nxt := feed.next_close_ms()) is not None:
            await feed.poll(nxt + TF * (i % 3), sink if (i // 50) % 2 == 0 else plain)
            i += 1

    asyncio.run(go())
    want = sorted((s, ts) for s, sr in series.items() for ts in sr.ts.tolist())
    bad = {
        (s, int(series[s].ts[i]))
        for s, i in (("BTC/USDT", CHUNK - 1), ("BTC/USDT", CHUNK + 2), ("ETH/USDT", 0))
    }
    # The engine sink drops bad ticks; the plain one hears everything it is given.
    assert len(seen) == len(set(seen))
    assert set(seen) <= set(want)
    assert set(want) - set(seen) <= bad


def test_errors_from_the_callables_propagate() -> None:
    series = {"BTC/USDT": generate_candles("BTC/USDT", "5m", START, 20, seed=1)}

    def boom(*_: Any) -> None:
        raise ValueError("listener failed")

    sink = EngineSink(lambda sym: lambda *c: None, [boom], lambda e: None)
    feed = ReplayFeed(series, timeframe_ms=TF)
    with pytest.raises(ValueError, match="listener failed"):
        asyncio.run(feed.poll(START + 3 * TF, sink))

    def step_fails(*_: Any) -> None:
        raise ZeroDivisionError("step failed")

    sink = EngineSink(lambda sym: step_fails, [], lambda e: None)
    with pytest.raises(ZeroDivisionError, match="step failed"):
        asyncio.run(ReplayFeed(series, timeframe_ms=TF).poll(START + 3 * TF, sink))

    def refuse(*candle: Any) -> None:
        raise BadTick("BTC/USDT", candle[0], "BAD_PRICE", "test")

    def bad_tick_fails(exc: BadTick) -> None:
        raise RuntimeError(f"could not record {exc.reason}")

    sink = EngineSink(lambda sym: refuse, [], bad_tick_fails)
    with pytest.raises(RuntimeError, match="could not record BAD_PRICE"):
        asyncio.run(ReplayFeed(series, timeframe_ms=TF).poll(START + 3 * TF, sink))
