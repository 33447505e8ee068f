"""The fake Binance exchange driven by real ccxt.async_support.binance over 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt
import pytest

from core.models import Market
from tools.fake_exchange import (
    ControlClient,
    FakeExchange,
    FakeStateError,
    bounded,
    ccxt_for,
    make_ccxt,
    running_fake,
    signed_request,
    spawn_fake,
)
from tools.fake_exchange.markets import EXCHANGE_INFO_FILE, SHARED_DATA

SHAPES = SHARED_DATA / "exchange_api" / "binance_spot_shapes"
BTC = Market(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    price_increment=Decimal("0.01"),
    amount_increment=Decimal("0.00001"),
    min_size=Decimal("0.00001"),
    min_notional=Decimal("10"),
)


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
async def fake() -> AsyncIterator[FakeExchange]:
    async with running_fake(**fake_args()) as f:
        yield f


@pytest.fixture
async def ex(fake: FakeExchange) -> AsyncIterator[Any]:
    exchange = ccxt_for(fake)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


def account_balance(state: dict[str, Any], asset: str) -> tuple[Decimal, Decimal]:
    b = state["balances"].get(asset, {"free": "0", "locked": "0"})
    return Decimal(b["free"]), Decimal(b["locked"])


@bounded()
async def test_load_markets_asks_only_exchange_info(fake: FakeExchange) -> None:
    exchange = ccxt_for(fake)
    try:
        markets = await exchange.load_markets()
    finally:
        await exchange.close()
    btc = markets["BTC/USDT"]
    assert btc["spot"] and btc["active"]
    assert btc["precision"]["price"] == 0.01
    assert btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["amount"]["min"] == 0.00001
    assert btc["limits"]["cost"]["min"] == 10.0
    assert set(markets) == {"BTC/USDT", "ETH/USDT"}
    state = await fake.state()
    assert state["requests"]["by_endpoint"] == {"GET /api/v3/exchangeInfo": 1}


@pytest.mark.shared_data
@bounded()
async def test_load_markets_has_real_binance_filters() -> None:
    if not EXCHANGE_INFO_FILE.is_file():
        pytest.skip(f"{EXCHANGE_INFO_FILE} is absent (../shared/data not mounted)")
    args = fake_args(symbols=["BTC/USDT", "SHIB/USDT"], markets=None)
    async with running_fake(**args) as fake:
        exchange = ccxt_for(fake)
        try:
            markets = await exchange.load_markets()
        finally:
            await exchange.close()
    # BTCUSDT and SHIBUSDT as Binance listed them on 2021-10-12.
    assert markets["BTC/USDT"]["precision"] == {
        "amount": 0.00001,
        "price": 0.01,
        "base": 1e-08,
        "quote": 1e-08,
    }
    assert markets["BTC/USDT"]["limits"]["amount"] == {"min": 0.00001, "max": 9000.0}
    assert markets["BTC/USDT"]["limits"]["cost"]["min"] == 10.0
    assert markets["SHIB/USDT"]["precision"]["amount"] == 1.0
    assert markets["SHIB/USDT"]["precision"]["price"] == 1e-08


@bounded()
async def test_market_data(fake: FakeExchange, ex: Any) -> None:
    tf = 60_000
    ticker = await ex.fetch_ticker("BTC/USDT")
    assert 0 < ticker["bid"] < ticker["ask"]
    assert ticker["bid"] <= ticker["last"] <= ticker["ask"]
    book = await ex.fetch_order_book("BTC/USDT", 5)
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][0][0] == ticker["bid"] and book["asks"][0][0] == ticker["ask"]
    assert [b[0] for b in book["bids"]] == sorted((b[0] for b in book["bids"]), reverse=True)
    candles = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=10)
    assert len(candles) == 10
    assert [c[0] for c in candles] == [fake.market_ms - tf * (10 - i) for i in range(10)]
    assert candles[-1][4] == pytest.approx(ticker["last"], abs=0.01)
    five = await ex.fetch_ohlcv("BTC/USDT", "5m", since=candles[0][0] - candles[0][0] % (5 * tf))
    first = [c for c in await ex.fetch_ohlcv("BTC/USDT", "1m", since=five[0][0], limit=5)]
    assert five[0][1] == first[0][1] and five[0][4] == first[-1][4]
    assert five[0][2] == max(c[2] for c in first) and five[0][3] == min(c[3] for c in first)
    assert five[0][5] == pytest.approx(sum(c[5] for c in first))
    fake.advance(3)
    later = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=1)
    assert later[0][0] == candles[-1][0] + 3 * tf
    tickers = await ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    assert set(tickers) == {"BTC/USDT", "ETH/USDT"}
    balance = await ex.fetch_balance()
    assert balance["USDT"]["free"] == 10_000 and balance["BTC"]["free"] == 1
    assert balance["ETH"]["total"] == 0


@bounded()
async def test_limit_order_fills_when_candles_advance(fake: FakeExchange, ex: Any) -> None:
    ticker = await ex.fetch_ticker("BTC/USDT")
    price = round(ticker["ask"] * 1.01, 2)  # marketable: fills on the next candle
    order = await ex.create_order(
        "BTC/USDT", "limit", "buy", 0.01, price, {"clientOrderId": "buy-1"}
    )
    assert (order["clientOrderId"], order["status"], order["filled"]) == ("buy-1", "open", 0)
    state = await fake.state()
    assert account_balance(state, "USDT")[1] > 0  # reserved while open
    async with ControlClient(fake.url) as control:
        result = await control.advance(1)
    assert result["fills"] == 1
    done = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "buy-1"})
    assert done["status"] == "closed" and done["filled"] == 0.01
    assert done["id"] == order["id"]
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    trade = trades[0]
    assert trade["order"] == order["id"] and trade["side"] == "buy"
    assert trade["amount"] == 0.01 and trade["price"] <= price
    assert trade["fee"]["currency"] == "USDT"
    state = await fake.state()
    free_usdt, locked_usdt = account_balance(state, "USDT")
    free_btc, _ = account_balance(state, "BTC")
    cost = Decimal(str(trade["price"])) * Decimal("0.01")
    fee = Decimal(state["fills"][0]["commission"])
    assert locked_usdt == 0
    assert free_usdt == Decimal(10_000) - cost - fee
    assert free_btc == Decimal("1.01")


@bounded()
async def test_market_orders_cancels_and_open_orders(fake: FakeExchange, ex: Any) -> None:
    sell = await ex.create_order(
        "BTC/USDT", "market", "sell", 0.005, None, {"newClientOrderId": "mkt-1"}
    )
    assert sell["clientOrderId"] == "mkt-1" and sell["status"] == "open"
    bid = (await ex.fetch_ticker("BTC/USDT"))["bid"]
    low = round(bid * 0.8, 2)
    rest = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, low, {"clientOrderId": "r-1"})
    opened = await ex.fetch_open_orders("BTC/USDT")
    assert [o["clientOrderId"] for o in opened] == ["mkt-1", "r-1"]
    canceled = await ex.cancel_order(rest["id"], "BTC/USDT")
    assert canceled["status"] == "canceled"
    fake.advance(1)
    filled = await ex.fetch_order(sell["id"], "BTC/USDT")
    assert filled["status"] == "closed" and filled["filled"] == 0.005
    for i in range(3):
        await ex.create_order(
            "BTC/USDT", "limit", "buy", 0.001, low, {"clientOrderId": f"bulk-{i}"}
        )
    assert len(await ex.fetch_open_orders()) == 3  # no symbol: every market
    result = await ex.cancel_all_orders("BTC/USDT")
    assert sorted(o["status"] for o in result) == ["canceled"] * 3
    assert await ex.fetch_open_orders("BTC/USDT") == []
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_all_orders("BTC/USDT")  # Binance answers -2011 when nothing is open
    state = await fake.state()
    assert state["open_orders"] == 0 and account_balance(state, "USDT")[1] == 0


@bounded()
async def test_quote_sized_market_buy_history_and_fees(fake: FakeExchange, ex: Any) -> None:
    ask = (await ex.fetch_ticker("BTC/USDT"))["ask"]
    # With a price, ccxt sends a market buy as quoteOrderQty = amount x price.
    order = await ex.create_order("BTC/USDT", "market", "buy", 0.01, ask, {"clientOrderId": "q"})
    spent = Decimal(order["info"]["origQuoteOrderQty"])
    assert spent == (Decimal(str(ask)) * Decimal("0.01")).quantize(Decimal("0.01"), "ROUND_DOWN")
    assert Decimal(order["info"]["origQty"]) == (spent / Decimal(str(ask))).quantize(
        Decimal("0.00001"), "ROUND_DOWN"
    )
    placed_at = fake.market_ms
    fake.advance(1)
    history = await ex.fetch_orders("BTC/USDT")  # allOrders
    assert [(o["clientOrderId"], o["status"]) for o in history] == [("q", "closed")]
    assert len(await ex.fetch_my_trades("BTC/USDT", since=placed_at)) == 1  # the fill's candle
    assert await ex.fetch_my_trades("BTC/USDT", since=fake.market_ms) == []
    fees = await ex.fetch_trading_fees()  # /sapi/v1/asset/tradeFee
    assert (fees["BTC/USDT"]["maker"], fees["BTC/USDT"]["taker"]) == (0.001, 0.001)
    assert (await ex.fetch_status())["status"] == "ok"


@bounded()
async def test_post_only_orders(fake: FakeExchange, ex: Any) -> None:
    ticker = await ex.fetch_ticker("BTC/USDT")
    with pytest.raises(ccxt.OrderImmediatelyFillable, match="immediately match and take"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, ticker["ask"], {"postOnly": True})
    resting = await ex.create_order(
        "BTC/USDT",
        "limit",
        "buy",
        0.001,
        round(ticker["bid"] * 0.99, 2),
        {"timeInForce": "PO", "clientOrderId": "maker-1"},
    )
    assert resting["info"]["type"] == "LIMIT_MAKER" and resting["status"] == "open"
    assert resting["postOnly"] is True
    assert len((await fake.state())["orders"]) == 1  # the rejected one left no trace


@bounded()
async def test_authentication_and_timestamps(fake: FakeExchange) -> None:
    bad_secret = ccxt_for(fake)
    bad_secret.secret = "not-the-secret"
    bad_key = ccxt_for(fake)
    bad_key.apiKey = "not-the-key"
    skewed = ccxt_for(fake)
    skewed.options["timeDifference"] = 120_000  # our timestamps 2 minutes behind
    try:
        with pytest.raises(ccxt.AuthenticationError, match="Signature for this request"):
            await bad_secret.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError):
            await bad_key.fetch_balance()
        with pytest.raises(ccxt.InvalidNonce, match="recvWindow"):
            await skewed.fetch_balance()
        skewed.options["timeDifference"] = 0
        assert (await skewed.fetch_balance())["USDT"]["free"] == 10_000
    finally:
        for e in (bad_secret, bad_key, skewed):
            await e.close()
    log = (await fake.state())["requests"]["by_endpoint_status"]
    account = {k: n for k, n in log.items() if k.startswith("GET /api/v3/account")}
    assert account == {
        "GET /api/v3/account 400": 2,
        "GET /api/v3/account 401": 1,
        "GET /api/v3/account 200": 1,
    }


@bounded()
async def test_weight_and_order_count_headers(fake: FakeExchange, ex: Any) -> None:
    await ex.fetch_time()
    before = int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"])
    await ex.load_markets(reload=True)  # exchangeInfo weighs 20
    after = int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"])
    assert after == before + 20
    assert ex.last_response_headers["X-MBX-USED-WEIGHT"] == str(after)
    bid = (await ex.fetch_ticker("BTC/USDT"))["bid"]
    await ex.create_order("BTC/USDT", "limit", "buy", 0.001, round(bid * 0.9, 2))
    assert ex.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert ex.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "1"


@bounded()
async def test_order_shapes_match_binance(fake: FakeExchange) -> None:
    async def call(method: str, path: str, **params: Any) -> tuple[int, Any]:
        status, _, body = await signed_request(
            fake.url, method, path, params, api_key=fake.api_key, api_secret=fake.api_secret
        )
        return status, body

    bid = (await fake.sim.fetch_quotes(["BTC/USDT"]))["BTC/USDT"].bid
    price = str((bid * Decimal("0.9")).quantize(Decimal("0.01")))
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    status, ack = await call(
        "POST", "/api/v3/order", **order, quantity="0.001", price=price, newOrderRespType="ACK"
    )
    assert status == 200
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    status, full = await call(
        "POST", "/api/v3/order", **order, quantity="0.001", price=price, newClientOrderId="s-2"
    )
    assert (status, full["clientOrderId"], full["status"], full["fills"]) == (200, "s-2", "NEW", [])
    assert full["price"] == price + "000000" and full["origQty"] == "0.00100000"
    status, got = await call("GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="s-2")
    assert status == 200 and got["orderId"] == full["orderId"]
    status, gone = await call("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=ack["orderId"])
    assert status == 200 and gone["status"] == "CANCELED"
    status, account = await call("GET", "/api/v3/account")
    assert status == 200
    status, err = await call(
        "POST", "/api/v3/order", **order, quantity="0.001", price=price + "1"
    )  # off the 0.01 tick: ccxt would have rounded it
    assert (status, err) == (400, {"code": -1013, "msg": "Filter failure: PRICE_FILTER"})
    status, err = await call("POST", "/api/v3/order", **order, quantity="0.0000101", price=price)
    assert (status, err) == (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    status, err = await call("GET", "/api/v3/order", symbol="BTCUSDT", orderId="999")
    assert (status, err) == (400, {"code": -2013, "msg": "Order does not exist."})
    if not SHAPES.is_dir():
        pytest.skip(f"{SHAPES} is absent: shapes not compared")
    for name, ours in (
        ("new_order_full_response.json", full),
        ("order_response.json", got),
        ("cancel_order_response.json", gone),
        ("account_response.json", account),
    ):
        expected = json.loads((SHAPES / name).read_text())
        assert set(ours) == set(expected), name


@bounded()
async def test_public_shapes_match_binance(fake: FakeExchange) -> None:
    if not SHAPES.is_dir():
        pytest.skip(f"{SHAPES} is absent: shapes not compared")
    import aiohttp

    async with aiohttp.ClientSession() as s:
        for path, name in (
            ("ticker/24hr?symbol=BTCUSDT", "ticker_24hr_response.json"),
            ("ticker/bookTicker?symbol=BTCUSDT", "book_ticker_response.json"),
            ("ticker/price?symbol=BTCUSDT", "ticker_price_response.json"),
            ("depth?symbol=BTCUSDT&limit=5", "depth_response.json"),
            ("time", "server_time_response.json"),
            ("ping", "ping_response.json"),
        ):
            async with s.get(f"{fake.url}/api/v3/{path}") as r:
                ours = await r.json()
            assert set(ours) == set(json.loads((SHAPES / name).read_text())), name
        async with s.get(f"{fake.url}/api/v3/exchangeInfo") as r:
            info = await r.json()
        async with s.get(f"{fake.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1") as r:
            kline = (await r.json())[0]
    expected = json.loads((SHAPES / "exchange_info_response.json").read_text())
    assert set(expected["symbols"][0]) <= set(info["symbols"][0])
    assert len(kline) == len(json.loads((SHAPES / "klines_response.json").read_text())[0])


@bounded()
async def test_orders_survive_a_restart_of_the_fake(tmp_path: Path) -> None:
    state_path = tmp_path / "fake_state.json"
    args = fake_args(state_path=state_path)
    async with running_fake(**args) as fake:
        ex = ccxt_for(fake)
        try:
            bid = (await ex.fetch_ticker("BTC/USDT"))["bid"]
            await ex.create_order(
                "BTC/USDT", "limit", "buy", 0.002, round(bid * 0.8, 2), {"clientOrderId": "keep"}
            )
            await ex.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "m"})
            fake.advance(2)
            before = await fake.state()
        finally:
            await ex.close()
    assert state_path.is_file()
    async with running_fake(**args) as again:
        ex = ccxt_for(again)
        try:
            opened = await ex.fetch_open_orders("BTC/USDT")
            trades = await ex.fetch_my_trades("BTC/USDT")
        finally:
            await ex.close()
        after = await again.state()
    assert [o["clientOrderId"] for o in opened] == ["keep"]
    assert [t["order"] for t in trades] == ["2"]  # the market order "m"
    assert after["market_ms"] == before["market_ms"]
    assert after["balances"] == before["balances"]
    assert after["orders"] == before["orders"] and after["fills"] == before["fills"]


def test_a_corrupt_state_file_is_quarantined_and_refused(tmp_path: Path) -> None:
    state_path = tmp_path / "fake_state.json"
    state_path.write_text('{"version": 1, "shift')
    with pytest.raises(FakeStateError, match="copied to"):
        FakeExchange(**fake_args(state_path=state_path))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("fake_state.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text() == state_path.read_text()


def test_bad_construction_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        FakeExchange(**fake_args(symbols=["BTCUSDT"]))
    with pytest.raises(ValueError, match="not in symbols"):
        FakeExchange(**fake_args(candles={"SOL/USDT": None}))
    with pytest.raises(ValueError, match="must not be empty"):
        FakeExchange(**fake_args(api_secret=""))


@bounded()
async def test_the_fake_refuses_to_listen_beyond_loopback() -> None:
    fake = FakeExchange(**fake_args())
    with pytest.raises(ValueError, match="loopback"):
        await fake.start(host="0.0.0.0")


@pytest.mark.integration
@bounded(60)
async def test_standalone_command() -> None:
    proc = await spawn_fake(
        ["--symbols", "BTC/USDT", "--timeframe", "5m", "--balance", "USDT=500"],
        env={"FAKE_API_KEY": "cli-key", "FAKE_API_SECRET": "cli-secret"},
    )
    try:
        assert (proc.api_key, proc.api_secret) == ("cli-key", "cli-secret")
        async with ControlClient(proc.url) as control:
            state = await control.state()
            assert state["timeframe"] == "5m"
            assert state["balances"]["USDT"]["free"] == "500.00000000"
        ex = make_ccxt(proc.url, api_key=proc.api_key, api_secret=proc.api_secret)
        try:
            assert (await ex.fetch_balance())["USDT"]["free"] == 500
        finally:
            await ex.close()
    finally:
        assert await proc.stop() == 0


@bounded()
async def test_clock_skew_and_book_scale_knobs(fake: FakeExchange, ex: Any) -> None:
    """The drills for the daemon's clock and depth guards, through real ccxt."""
    before = await ex.fetch_time()
    async with ControlClient(fake.url) as control:
        await control.set_clock_skew(5_000)
        ahead = await ex.fetch_time()
        full = await ex.fetch_order_book("BTC/USDT", 10)
        await control.set_book_scale("BTC/USDT", "0.5")
        half = await ex.fetch_order_book("BTC/USDT", 10)
    with pytest.raises(ValueError, match="positive"):
        fake.set_book_scale("BTC/USDT", 0)
    assert 4_000 < ahead - before < 10_000
    assert (await fake.state())["clock_skew_ms"] == 5_000
    assert full["asks"] and len(half["asks"]) == len(full["asks"])
    total = sum(Decimal(str(a)) for _, a in full["asks"])
    halved = sum(Decimal(str(a)) for _, a in half["asks"])
    assert halved == pytest.approx(total / 2, rel=Decimal("0.01"))
    # Signed requests are judged on the venue's clock: 5 s ahead is within recvWindow.
    await ex.fetch_balance()
