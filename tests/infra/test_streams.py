"""StreamFeed without a network: capacity per venue, refusal, fallback and delivery rules."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from core.models import Candle
from infra.live_feed import ExchangeFeed
from infra.streams import StreamFeed, capacity

D = Decimal
TF = 1000


class RestOnly:
    """The Exchange port's fetch_ohlcv over a fixed set of candles."""

    def __init__(self, candles: dict[str, list[Candle]]) -> None:
        self.candles = candles
        self.calls: list[str] = []

    async def fetch_ohlcv(self, symbol: str, tf: str, since: int, limit: int) -> list[Candle]:
        self.calls.append(symbol)
        return [c for c in self.candles[symbol] if c.ts >= since][:limit]


def candle(ts: int, close: str = "1") -> Candle:
    return Candle(ts, D(close), D(close), D(close), D(close), D(1))


def feed(syms: Sequence[str], exchange_id: str = "binance", rest: Any = None) -> StreamFeed:
    rest = rest or RestOnly({s: [candle(t * TF) for t in range(10)] for s in syms})
    ef = ExchangeFeed(exchange=rest, symbols=lambda: list(syms), timeframe="1s")
    return StreamFeed(
        rest=ef,
        exchange_id=exchange_id,
        client_factory=lambda: (_ for _ in ()).throw(AssertionError("no client expected")),
        symbols=lambda: list(syms),
        now_ms=lambda: 10 * TF,
        staleness_s=5,
        backoff_min_s=0.1,
        backoff_max_s=1,
        fallback_after=3,
        rng=random.Random(1),
    )


def test_capacity_is_documented_per_venue() -> None:
    assert capacity("binance") == 16 * 200  # 50 connections / 3 streams per symbol, 200 each
    assert capacity("coinbase") == 0


async def test_a_venue_without_stream_support_polls_rest_and_says_so() -> None:
    f = feed(["BTC/USDT"], exchange_id="coinbase")
    await f.run(asyncio.Event())
    assert f.stats.state == "rest_fallback" and "coinbase" in f.stats.detail
    got: list[int] = []
    assert await f.poll(10 * TF, lambda s, ts, *_: got.append(ts)) == 3  # REST: the last 3
    assert got == [7 * TF, 8 * TF, 9 * TF]


async def test_a_universe_over_capacity_is_refused_not_cut() -> None:
    syms = [f"S{i}/USDT" for i in range(capacity("binance") + 1)]
    f = feed(syms, rest=RestOnly({}))
    await f.run(asyncio.Event())
    assert f.stats.state == "refused"
    assert str(len(syms)) in f.stats.detail and str(capacity("binance")) in f.stats.detail


def test_closed_klines_only_deduplicated_and_ordered() -> None:
    f = feed(["A/USDT", "B/USDT"])
    f._subscribed = ("A/USDT", "B/USDT")
    f._wanted = frozenset(f._subscribed)
    f.stats.state = "streaming"
    f.rest.last.update({"A/USDT": 2 * TF, "B/USDT": 2 * TF})

    def kline(sid: str, ts: int, closed: bool) -> dict[str, Any]:
        k = {"t": ts, "s": sid, "i": "1s", "o": "1", "h": "2", "l": "1", "c": "2", "v": "1"}
        return {"e": "kline", "E": ts, "k": {**k, "x": closed}}

    class Ex:
        def safe_symbol(self, mid: str, *_: Any) -> str:
            return mid[0] + "/USDT"

    for msg in (
        kline("BUSDT", 3 * TF, True),
        kline("AUSDT", 3 * TF, True),
        kline("AUSDT", 3 * TF, True),  # duplicate
        kline("AUSDT", 4 * TF, False),  # still forming
        kline("AUSDT", 2 * TF, True),  # already delivered
    ):
        f._on_kline(Ex(), msg)
    got: list[tuple[str, int]] = []
    n = asyncio.run(f.poll(5 * TF, lambda s, ts, *_: got.append((s, ts))))
    assert n == 2 and got == [("A/USDT", 3 * TF), ("B/USDT", 3 * TF)]
    assert asyncio.run(f.poll(5 * TF, lambda s, ts, *_: got.append((s, ts)))) == 0
