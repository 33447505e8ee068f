"""Faults of the fake exchange, each met by real ccxt with the exception it raises for Binance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from core.models import Market
from tools.fake_exchange import (
    ControlClient,
    ControlError,
    FakeExchange,
    FaultSpec,
    bounded,
    ccxt_for,
    running_fake,
)
from tools.fake_exchange.faults import FaultBook
from tools.fake_exchange.rate_limit import RateLimiter

BTC = Market(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    price_increment=Decimal("0.01"),
    amount_increment=Decimal("0.00001"),
    min_size=Decimal("0.00001"),
    min_notional=Decimal("10"),
)


class ManualTime:
    """The limiter's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_args(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "symbols": ["BTC/USDT", "ETH/USDT"],
        "balances": {"USDT": Decimal(10_000), "BTC": Decimal(1)},
        "api_key": "test-key",
        "api_secret": "test-secret",
        "markets": {"BTC/USDT": BTC},
        "synthetic_bars": 3000,
    }
    return args | over


@pytest.fixture
def time_() -> ManualTime:
    return ManualTime()


@pytest.fixture
async def fake(time_: ManualTime) -> AsyncIterator[FakeExchange]:
    async with running_fake(**fake_args(monotonic=time_)) as f:
        yield f


@pytest.fixture
async def ex(fake: FakeExchange) -> AsyncIterator[Any]:
    exchange = ccxt_for(fake)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


async def limit_buy(ex: Any, coid: str, below: float = 0.9, amount: float = 0.001) -> Any:
    bid = (await ex.fetch_ticker("BTC/USDT"))["bid"]
    price = round(bid * below, 2)
    return await ex.create_order("BTC/USDT", "limit", "buy", amount, price, {"clientOrderId": coid})


@bounded()
async def test_rate_limit_burst_with_retry_after(
    fake: FakeExchange, ex: Any, time_: ManualTime
) -> None:
    fake.add_fault(kind="rate_limit", count=2, retry_after_s=5)
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await ex.fetch_ticker("BTC/USDT")
    assert ex.last_response_headers["Retry-After"] == "5"
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await ex.fetch_ticker("BTC/USDT")  # sent before Retry-After passed: still limited
    time_.now += 6
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await ex.fetch_ticker("BTC/USDT")  # the burst's second 429
    time_.now += 6
    assert (await ex.fetch_ticker("BTC/USDT"))["bid"] > 0
    log = (await fake.state())["requests"]["by_endpoint_status"]
    assert log["GET /api/v3/ticker/24hr 429"] == 3


@bounded()
async def test_weight_limit_then_ban_when_429s_are_ignored(time_: ManualTime) -> None:
    args = fake_args(monotonic=time_, weight_limit=25, ban_after=3, ban_s=120)
    async with running_fake(**args) as fake:
        ex = ccxt_for(fake)
        try:
            await ex.load_markets()  # weight 20 of 25
            with pytest.raises(ccxt.DDoSProtection, match="429"):
                await ex.load_markets(reload=True)  # 40 > 25
            assert 1 <= int(ex.last_response_headers["Retry-After"]) <= 60
            assert "-1003" in str(ex.last_http_response)
            with pytest.raises(ccxt.DDoSProtection, match="429"):
                await ex.fetch_time()  # within the grace second: refused, not held against us
            time_.now += 1.5
            for _ in range(2):  # ignoring Retry-After: violations 1 and 2
                with pytest.raises(ccxt.DDoSProtection, match="429"):
                    await ex.fetch_time()
            with pytest.raises(ccxt.DDoSProtection, match="418"):
                await ex.fetch_time()  # violation 3: banned
            assert ex.last_response_headers["Retry-After"] == "120"
            time_.now += 60
            with pytest.raises(ccxt.DDoSProtection, match="banned until"):
                await ex.fetch_time()  # the weight has aged out, the ban has not
            assert (await fake.state())["banned_for_s"] == 60
            time_.now += 60
            assert await ex.fetch_time() > 0
        finally:
            await ex.close()


@bounded()
async def test_ban_fault_and_reset(fake: FakeExchange, ex: Any) -> None:
    async with ControlClient(fake.url) as control:
        await control.add_fault(kind="ban", seconds=300)
        with pytest.raises(ccxt.DDoSProtection, match="418"):
            await ex.fetch_time()
        await control.reset()
    assert await ex.fetch_time() > 0


@bounded()
async def test_server_errors(fake: FakeExchange, ex: Any) -> None:
    for status in (500, 502, 503):
        fake.add_fault(kind="server_error", status=status, count=1)
        with pytest.raises(ccxt.ExchangeNotAvailable, match=str(status)):
            await ex.fetch_ticker("BTC/USDT")
    fake.add_fault(kind="server_error", status=504, count=1)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_ticker("BTC/USDT")
    fake.add_fault(kind="server_error", status=503, share=0.5, path="/api/v3/depth")
    failed = 0
    for _ in range(20):
        try:
            await ex.fetch_order_book("BTC/USDT", 5)
        except ccxt.ExchangeNotAvailable:
            failed += 1
    assert 0 < failed < 20  # seeded: the same every run
    assert (await ex.fetch_ticker("BTC/USDT"))["bid"] > 0  # other endpoints unaffected
    fake.clear_faults()
    assert len((await ex.fetch_order_book("BTC/USDT", 5))["bids"]) == 5


@bounded()
async def test_latency_targets_one_endpoint(fake: FakeExchange, ex: Any) -> None:
    fake.add_fault(kind="latency", ms=50, path="/api/v3/depth")
    await ex.fetch_order_book("BTC/USDT", 5)
    await ex.fetch_ticker("BTC/USDT")
    [fault] = fake.faults.describe()
    assert fault["hits"] == 1


@bounded()
async def test_timeout_holds_then_drops_without_placing(fake: FakeExchange) -> None:
    ex = ccxt_for(fake, timeout_ms=300)
    try:
        await ex.load_markets()
        fake.add_fault(kind="timeout", hold_ms=5000, path="/api/v3/order", method="POST", count=1)
        with pytest.raises(ccxt.RequestTimeout):
            await limit_buy(ex, "slow-1")
        assert (await fake.state())["orders"] == []  # held, never processed
        assert (await limit_buy(ex, "slow-2"))["status"] == "open"
    finally:
        await ex.close()


@bounded()
async def test_stop_releases_held_requests() -> None:
    async with running_fake(**fake_args()) as fake:
        ex = ccxt_for(fake, timeout_ms=60_000)
        try:
            await ex.load_markets()
            fake.add_fault(kind="timeout", hold_ms=600_000)
            call = asyncio.create_task(ex.fetch_time())
            while fake.faults.describe()[0]["hits"] == 0:
                await asyncio.sleep(0.01)
            await fake.stop()  # must not wait ten minutes (the test is bounded to 30 s)
            with pytest.raises(ccxt.NetworkError):
                await call
        finally:
            await ex.close()


@bounded()
async def test_dropped_response_after_accept_leaves_one_order(fake: FakeExchange, ex: Any) -> None:
    fake.add_fault(kind="drop_after_accept", count=1)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await limit_buy(ex, "lost-1")
    state = await fake.state()
    assert [o["clientOrderId"] for o in state["orders"]] == ["lost-1"]
    found = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "lost-1"})
    assert found["status"] == "open" and found["clientOrderId"] == "lost-1"
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await limit_buy(ex, "lost-1")  # a blind resend is refused
    fake.add_fault(kind="drop_after_accept", mode="504", count=1)
    with pytest.raises(ccxt.RequestTimeout):
        await limit_buy(ex, "lost-2")
    assert [o["clientOrderId"] for o in (await fake.state())["orders"]] == ["lost-1", "lost-2"]


@bounded()
async def test_partial_fills(fake: FakeExchange, ex: Any) -> None:
    fake.add_fault(kind="partial_fills", participation=0.0005, candles=1)
    order = await limit_buy(ex, "big-1", below=1.02, amount=0.1)
    fake.advance(1)
    part = await ex.fetch_order(order["id"], "BTC/USDT")
    assert part["status"] == "open" and part["info"]["status"] == "PARTIALLY_FILLED"
    assert 0 < part["filled"] < 0.1
    for _ in range(10):
        fake.advance(1)
        done = await ex.fetch_order(order["id"], "BTC/USDT")
        if done["status"] == "closed":
            break
    assert done["filled"] == 0.1 and done["info"]["status"] == "FILLED"
    assert len(await ex.fetch_my_trades("BTC/USDT")) >= 2


@bounded()
async def test_insufficient_balance(fake: FakeExchange, ex: Any) -> None:
    fake.add_fault(kind="insufficient_balance", count=1)
    with pytest.raises(ccxt.InsufficientFunds):
        await limit_buy(ex, "poor-1")
    with pytest.raises(ccxt.InsufficientFunds):
        await limit_buy(ex, "poor-2", amount=1.0)  # ~54,000 USDT against 10,000
    assert (await limit_buy(ex, "fine"))["status"] == "open"


@bounded()
async def test_filter_failures(fake: FakeExchange, ex: Any) -> None:
    for name in ("LOT_SIZE", "PRICE_FILTER"):
        fake.add_fault(kind="filter_failure", filter=name, count=1)
        with pytest.raises(ccxt.InvalidOrder, match=f"Filter failure: {name}"):
            await limit_buy(ex, f"f-{name}")
    # ccxt maps -1013 by message for LOT_SIZE and PRICE_FILTER only; NOTIONAL is BadRequest.
    fake.add_fault(kind="filter_failure", filter="NOTIONAL", count=1)
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        await limit_buy(ex, "f-notional")
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        await limit_buy(ex, "tiny", amount=0.0001)  # ~5 USDT, below the minimum of 10
    assert (await fake.state())["orders"] == []


@bounded()
async def test_a_fault_limited_to_one_symbol_spares_the_others(fake: FakeExchange, ex: Any) -> None:
    fake.add_fault(kind="filter_failure", filter="PRICE_FILTER", symbol="ETH/USDT")
    assert (await limit_buy(ex, "btc-fine"))["status"] == "open"  # BTC/USDT: not hit
    eth = (await ex.fetch_ticker("ETH/USDT"))["bid"]
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        await ex.create_order(
            "ETH/USDT", "limit", "buy", 0.01, round(eth * 0.9, 2), {"clientOrderId": "eth-1"}
        )
    assert [o["clientOrderId"] for o in (await fake.state())["orders"]] == ["btc-fine"]


@bounded()
async def test_unknown_orders(fake: FakeExchange, ex: Any) -> None:
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order("12345", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "nobody"})
    order = await limit_buy(ex, "real")
    fake.add_fault(kind="unknown_order", count=2)
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await ex.fetch_order(order["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await ex.cancel_order(order["id"], "BTC/USDT")
    assert (await ex.fetch_order(order["id"], "BTC/USDT"))["status"] == "open"
    await ex.cancel_order(order["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order(order["id"], "BTC/USDT")  # already canceled


@bounded()
async def test_symbol_break_and_halt(fake: FakeExchange, ex: Any) -> None:
    resting = await limit_buy(ex, "rest", below=1.05)  # would fill on the next candle
    fake.add_fault(kind="symbol_status", symbol="BTC/USDT", market_status="BREAK")
    markets = await ex.load_markets(reload=True)
    assert markets["BTC/USDT"]["active"] is False and markets["ETH/USDT"]["active"] is True
    assert markets["BTC/USDT"]["info"]["status"] == "BREAK"
    with pytest.raises(ccxt.MarketClosed):
        await limit_buy(ex, "closed")
    fake.advance(2)
    assert (await ex.fetch_order(resting["id"], "BTC/USDT"))["filled"] == 0
    async with ControlClient(fake.url) as control:
        await control.set_status("BTCUSDT", "HALT")
        assert (await control.state())["symbols"]["BTC/USDT"] == "HALT"
        await control.set_status("BTC/USDT", "TRADING")
    fake.advance(1)
    assert (await ex.fetch_order(resting["id"], "BTC/USDT"))["status"] == "closed"


@bounded()
async def test_faults_through_the_control_api(fake: FakeExchange, ex: Any) -> None:
    async with ControlClient(fake.url) as control:
        added = await control.add_faults(
            [
                {"kind": "server_error", "status": 503, "path": "/api/v3/order", "method": "POST"},
                {"kind": "latency", "ms": 10, "path": "/api/v3/ticker/*"},
            ]
        )
        assert [f["kind"] for f in added["added"]] == ["server_error", "latency"]
        with pytest.raises(ControlError, match="participation"):
            await control.add_fault(kind="partial_fills")
        with pytest.raises(ControlError, match="kind"):
            await control.add_fault(kind="meteor_strike")
        assert (await ex.fetch_ticker("BTC/USDT"))["bid"] > 0  # only orders fail
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await limit_buy(ex, "blocked")
        faults = await control.faults()
        assert [f["hits"] for f in faults] == [1, 2]  # two ticker requests were delayed
        await control.clear_faults()
        assert (await limit_buy(ex, "through"))["status"] == "open"
        state = await control.state()
    assert state["requests"]["by_endpoint_status"]["POST /api/v3/order 503"] == 1
    assert state["requests"]["by_status"]["200"] >= 4
    assert state["open_orders"] == 1


@bounded()
async def test_reset_restores_the_start(fake: FakeExchange, ex: Any) -> None:
    start = (await fake.state())["market_ms"]
    await limit_buy(ex, "gone", below=1.02)
    fake.advance(2)
    fake.set_balance("ETH", Decimal(3))
    fake.reset()
    state = await fake.state()
    assert state["orders"] == [] and state["fills"] == []
    assert state["market_ms"] == start
    assert state["balances"] == {
        "BTC": {"free": "1.00000000", "locked": "0.00000000"},
        "USDT": {"free": "10000.00000000", "locked": "0.00000000"},
    }
    assert (await limit_buy(ex, "gone"))["status"] == "open"  # ids are free again


@bounded()
async def test_new_order_rate_limit(time_: ManualTime) -> None:
    async with running_fake(**fake_args(monotonic=time_, order_limit_10s=2)) as fake:
        ex = ccxt_for(fake)
        try:
            await limit_buy(ex, "o-1")
            await limit_buy(ex, "o-2")
            with pytest.raises(ccxt.DDoSProtection, match="-1015"):
                await limit_buy(ex, "o-3")
            time_.now += 11
            assert (await limit_buy(ex, "o-4"))["status"] == "open"
        finally:
            await ex.close()


def test_limiter_in_flight_requests_are_not_violations() -> None:
    t = ManualTime()
    limiter = RateLimiter(weight_limit=10, ban_after=2, monotonic=t)
    limiter.limit_for(5)
    assert [limiter.admit(1).status for _ in range(10)] == [429] * 10  # a burst in flight
    t.now += 2
    assert [limiter.admit(1).status for _ in range(2)] == [429, 418]
    assert limiter.banned_for_s() == 120


def test_limiter_weights_age_out() -> None:
    t = ManualTime()
    limiter = RateLimiter(weight_limit=10, ban_after=2, monotonic=t)
    assert limiter.admit(6).status == 200
    t.now += 30
    assert limiter.admit(4).status == 200
    first = limiter.admit(1)
    assert (first.status, first.retry_after_s) == (429, 30)  # when the first 6 age out
    t.now += 30
    assert limiter.admit(1).status == 200 and limiter.used() == 5


def test_fault_book_counts_and_targets() -> None:
    import random

    book = FaultBook(rng=random.Random(1))
    book.add(FaultSpec(kind="insufficient_balance", count=1))
    assert book.take(["insufficient_balance"], "GET", "/api/v3/order") is None  # POST only
    assert book.take(["insufficient_balance"], "POST", "/api/v3/order") is not None
    assert book.take(["insufficient_balance"], "POST", "/api/v3/order") is None  # used up
    book.add(FaultSpec(kind="partial_fills", participation=0.5, candles=2))
    assert [book.step_participation() for _ in range(3)] == [0.5, 0.5, None]
    with pytest.raises(ValueError, match="server_error status"):
        FaultSpec(kind="server_error", status=404)
