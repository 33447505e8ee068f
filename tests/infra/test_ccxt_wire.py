"""Wire models on real payloads: recorded Binance and Coinbase JSON run through ccxt's own
parsers offline, then into the domain types."""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from core.errors import BadResponse
from core.models import Liquidity, MarketStatus, OrderStatus, OrderType, Side
from infra.exchange.ccxt_wire import (
    BalanceWire,
    FeeSource,
    MarketWire,
    OhlcvWire,
    OrderBookWire,
    OrderWire,
    PrecisionMode,
    TickerWire,
    TradeWire,
    TradingFeeWire,
    parse_markets,
)

D = Decimal
API = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "exchange_api"
NOW = 1_700_000_000_000
TICK = PrecisionMode.TICK_SIZE

pytestmark = pytest.mark.shared_data


def load(rel: str) -> Any:
    path = API / rel
    if not path.exists():
        pytest.skip(f"recorded exchange payloads not found at {path} (../shared/data is absent)")
    return json.loads(path.read_text())


def make_binance(number: type = float) -> ccxt.binance:
    ex = ccxt.binance()
    ex.number = number
    # fetch_markets would download these margin lists; offline they are simply empty.
    ex.options["crossMarginPairsData"] = []
    ex.options["isolatedMarginPairsData"] = []
    ex.set_markets([ex.parse_market(m) for m in few_binance_symbols()])
    return ex


@functools.cache
def few_binance_symbols() -> list[dict[str, Any]]:
    """The recorded symbols the shape payloads refer to (read once: the file is 1.8 MB)."""
    wanted = {"BTCUSDT", "ETHUSDT", "LTCBTC", "BNBBTC", "ETHBTC"}
    full = load("binance_spot/exchange_info_full_20211012.json")["symbols"]
    return [m for m in full if m["symbol"] in wanted]


@pytest.fixture(params=[float, str], ids=["float-numbers", "string-numbers"])
def binance(request: pytest.FixtureRequest) -> ccxt.binance:
    return make_binance(request.param)


@pytest.fixture
def coinbase() -> ccxt.coinbase:
    ex = ccxt.coinbase()
    products = load("coinbase_advanced/http_products.json")["products"]
    ex.set_markets([ex.parse_spot_market(p, {}) for p in products])
    return ex


# -- markets --------------------------------------------------------------------------------


def test_binance_markets_tick_size(binance: ccxt.binance) -> None:
    info = load("binance_spot/http_spot_market_exchange_info.json")
    raw = [binance.parse_market(m) for m in info["symbols"]]
    markets, problems = parse_markets(raw, binance.precisionMode)
    assert problems == []
    btc = markets["BTC/USDT"]
    assert (btc.base, btc.quote) == ("BTC", "USDT")
    assert btc.price_increment == D("0.01")
    assert btc.amount_increment == D("0.00001")
    assert btc.min_size == D("0.00001")
    assert btc.min_notional == D("10")
    assert btc.status is MarketStatus.ONLINE
    assert (btc.maker_fee, btc.taker_fee) == (D("0.001"), D("0.001"))
    assert markets["ETH/USDT"].amount_increment == D("0.0001")


def test_the_full_binance_exchange_info_parses_and_break_is_offline() -> None:
    ex = make_binance()
    full = load("binance_spot/exchange_info_full_20211012.json")["symbols"]
    raw = [ex.parse_market(m) for m in full]
    markets, problems = parse_markets(raw, ex.precisionMode)
    assert problems == []
    assert len(markets) == 1695
    by_id = {m["symbol"]: m["status"] for m in full}
    for wire in raw:
        expected = MarketStatus.ONLINE if by_id[wire["id"]] == "TRADING" else MarketStatus.OFFLINE
        assert markets[wire["symbol"]].status is expected


def test_a_market_without_price_filter_is_reported_by_field() -> None:
    ex = make_binance()
    bare = load("binance_spot_shapes/exchange_info_response.json")["symbols"][0]  # no filters
    with pytest.raises(BadResponse, match=r"market ETH/BTC.*'precision.price'.*missing"):
        MarketWire.parse(ex.parse_market(bare)).to_domain(TICK)
    markets, problems = parse_markets([ex.parse_market(bare)], TICK)
    assert markets == {} and "precision.price" in problems[0]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("TRADING", MarketStatus.ONLINE),
        ("HALT", MarketStatus.CANCEL_ONLY),
        ("AUCTION_MATCH", MarketStatus.CANCEL_ONLY),
        ("POST_TRADING", MarketStatus.CANCEL_ONLY),
        ("END_OF_DAY", MarketStatus.CANCEL_ONLY),
        ("BREAK", MarketStatus.OFFLINE),
        ("PRE_TRADING", MarketStatus.OFFLINE),
        ("SOMETHING_NEW", MarketStatus.OFFLINE),  # unknown to us: ccxt says inactive
    ],
)
def test_binance_status_table(status: str, expected: MarketStatus) -> None:
    ex = make_binance()
    info = load("binance_spot/http_spot_market_exchange_info.json")["symbols"][0]
    market = ex.parse_market({**info, "status": status})
    assert MarketWire.parse(market).to_domain(TICK).status is expected


def test_binance_trading_but_inactive_for_us_is_offline() -> None:
    ex = make_binance()
    info = load("binance_spot/http_spot_market_exchange_info.json")["symbols"][0]
    market = ex.parse_market({**info, "permissions": ["TRD_GRP_003"]})
    assert market["active"] is False
    assert MarketWire.parse(market).to_domain(TICK).status is MarketStatus.OFFLINE


def test_coinbase_markets(coinbase: ccxt.coinbase) -> None:
    markets, problems = parse_markets(coinbase.markets, coinbase.precisionMode)
    assert problems == []
    btc = markets["BTC/USD"]
    assert btc.price_increment == D("0.01")
    assert btc.amount_increment == D("0.00000001")
    assert btc.min_size == D("0.00000001")
    assert btc.min_notional == D("1")
    assert btc.status is MarketStatus.ONLINE
    assert (btc.maker_fee, btc.taker_fee) == (D("0.006"), D("0.012"))
    assert "BTC/USDC" in markets


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"cancel_only": True}, MarketStatus.CANCEL_ONLY),
        ({"limit_only": True}, MarketStatus.LIMIT_ONLY),
        ({"post_only": True}, MarketStatus.POST_ONLY),
        ({"post_only": True, "cancel_only": True}, MarketStatus.CANCEL_ONLY),
        ({"auction_mode": True}, MarketStatus.CANCEL_ONLY),
        ({"trading_disabled": True}, MarketStatus.OFFLINE),
        ({"status": "delisted"}, MarketStatus.OFFLINE),
        ({"status": "offline"}, MarketStatus.OFFLINE),
    ],
)
def test_coinbase_status_flags(change: dict[str, Any], expected: MarketStatus) -> None:
    ex = ccxt.coinbase()
    product = load("coinbase_advanced/http_product.json")
    market = ex.parse_spot_market({**product, **change}, {})
    assert MarketWire.parse(market).to_domain(ex.precisionMode).status is expected


def unified_market(**precision: Any) -> dict[str, Any]:
    raw = make_binance().markets["BTC/USDT"]
    return {**raw, "precision": {**raw["precision"], **precision}}


def test_decimal_places_mode_agrees_with_ccxt_rounding() -> None:
    market = MarketWire.parse(unified_market(price=2, amount=5)).to_domain(
        PrecisionMode.DECIMAL_PLACES
    )
    assert market.price_increment == D("0.01")
    assert market.amount_increment == D("0.00001")
    for price in ("68923.6789", "0.125", "41000"):
        rounded = ccxt.decimal_to_precision(price, ccxt.ROUND, 2, ccxt.DECIMAL_PLACES)
        assert D(rounded) % market.price_increment == 0


def test_significant_digits_mode_uses_the_reference_price() -> None:
    wire = MarketWire.parse(unified_market(price=5, amount=3))
    market = wire.to_domain(PrecisionMode.SIGNIFICANT_DIGITS, reference_price=D("68923.67"))
    assert market.price_increment == D("1")
    rounded = ccxt.decimal_to_precision("68923.67", ccxt.ROUND, 5, ccxt.SIGNIFICANT_DIGITS)
    assert D(rounded) % market.price_increment == 0
    assert market.amount_increment == D("0.0000001")  # 3 digits at the 0.00001 minimum
    small = wire.to_domain(PrecisionMode.SIGNIFICANT_DIGITS, reference_price=D("0.012345"))
    assert small.price_increment == D("0.000001")
    with pytest.raises(ValueError, match="reference_price"):
        wire.to_domain(PrecisionMode.SIGNIFICANT_DIGITS)


def test_precision_mode_values_match_ccxt_and_unknown_modes_are_refused() -> None:
    assert PrecisionMode.DECIMAL_PLACES == ccxt.DECIMAL_PLACES
    assert PrecisionMode.SIGNIFICANT_DIGITS == ccxt.SIGNIFICANT_DIGITS
    assert PrecisionMode.TICK_SIZE == ccxt.TICK_SIZE
    with pytest.raises(ValueError, match="precisionMode"):
        MarketWire.parse(unified_market()).to_domain(7)
    with pytest.raises(BadResponse, match="whole number of digits"):
        MarketWire.parse(unified_market(price=0.01)).to_domain(PrecisionMode.DECIMAL_PLACES)


def test_market_fee_rebates_are_planned_as_zero_and_missing_fees_refused() -> None:
    raw = {**unified_market(), "maker": -0.0001}
    assert MarketWire.parse(raw).to_domain(TICK).maker_fee == 0
    with pytest.raises(BadResponse, match="'taker'"):
        MarketWire.parse({**unified_market(), "taker": None}).to_domain(TICK)


# -- tickers --------------------------------------------------------------------------------


def test_binance_24hr_ticker(binance: ccxt.binance) -> None:
    quote = TickerWire.parse(
        binance.parse_ticker(load("binance_spot_shapes/ticker_24hr_response.json"))
    ).to_domain()
    assert quote.symbol == "BNB/BTC"
    assert (quote.bid, quote.ask, quote.last) == (D("4"), D("4.000002"), D("4.000002"))
    assert quote.ts == 1499869899040


def test_binance_book_ticker_needs_a_receive_time_and_uses_the_mid(
    binance: ccxt.binance,
) -> None:
    raw = binance.parse_ticker(load("binance_spot/http_spot_market_book_ticker.json"))
    with pytest.raises(BadResponse, match=r"ticker BTC/USDT.*'timestamp'"):
        TickerWire.parse(raw).to_domain()
    quote = TickerWire.parse(raw).to_domain(received_ms=NOW)
    assert (quote.bid, quote.ask, quote.ts) == (D("60741.67"), D("60741.68"), NOW)
    assert quote.last == D("60741.675")


def test_coinbase_ticker(coinbase: ccxt.coinbase) -> None:
    raw = load("coinbase_advanced/http_ticker.json")
    ticker = coinbase.parse_ticker(raw["trades"][0], coinbase.market("BTC/USD"))
    # What ccxt's fetch_ticker does with the response's best bid/ask.
    ticker["bid"] = coinbase.safe_number(raw, "best_bid")
    ticker["ask"] = coinbase.safe_number(raw, "best_ask")
    quote = TickerWire.parse(ticker).to_domain()
    assert (quote.bid, quote.ask, quote.last) == (D("68923.66"), D("68923.67"), D("68923.67"))
    assert quote.ts == 1775521738544


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bid": None}, "bid"),
        ({"ask": "abc"}, "ask"),
        ({"bid": True}, "bid"),
        ({"ask": float("nan")}, "ask"),
        ({"bid": 0}, "bid"),
        ({"bid": 5.0, "ask": 4.0}, "bid"),
        ({"symbol": None}, "symbol"),
    ],
)
def test_bad_ticker_fields_are_named(change: dict[str, Any], field: str) -> None:
    raw = {"symbol": "BTC/USDT", "bid": 1.0, "ask": 1.1, "last": 1.05, "timestamp": NOW}
    with pytest.raises(BadResponse, match=f"'{field}'"):
        TickerWire.parse({**raw, **change}).to_domain()


def test_floats_become_decimals_through_their_text() -> None:
    quote = TickerWire.parse(
        {"symbol": "X/Y", "bid": 0.1, "ask": 0.30000000000000004, "timestamp": NOW}
    ).to_domain()
    assert quote.bid == D("0.1")  # not 0.1000000000000000055511151231257827...
    assert quote.ask == D("0.30000000000000004")


# -- orders ---------------------------------------------------------------------------------


def test_binance_open_limit_order(binance: ccxt.binance) -> None:
    raw = binance.parse_order(load("binance_spot_shapes/order_response.json"))
    order = OrderWire.parse(raw).to_domain(strategy="s1")
    assert order.client_order_id == "myOrder1"
    assert order.exchange_order_id == "1"
    assert order.symbol == "LTC/BTC"
    assert (order.side, order.order_type) == (Side.BUY, OrderType.LIMIT)
    assert (order.amount, order.price, order.filled) == (D("1"), D("0.1"), D("0"))
    assert order.status is OrderStatus.OPEN
    assert order.created_ms == order.updated_ms == 1499827319559
    assert order.strategy == "s1"


def test_binance_filled_market_order_with_quote_fees(binance: ccxt.binance) -> None:
    raw = binance.parse_order(load("binance_spot_shapes/new_order_full_response.json"))
    order = OrderWire.parse(raw).to_domain()
    assert order.status is OrderStatus.FILLED
    assert order.order_type is OrderType.MARKET
    assert order.price is None
    assert (order.amount, order.filled) == (D("10"), D("10"))
    assert order.fee == D("39.983")  # the five fills' USDT commissions
    assert order.client_order_id == "6gCrw2kRUAF9CvJDGP16IP"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": "NEW"}, OrderStatus.OPEN),
        (
            {"status": "PARTIALLY_FILLED", "executedQty": "0.4", "cummulativeQuoteQty": "0.04"},
            OrderStatus.PARTIAL,
        ),
        (
            {"status": "FILLED", "executedQty": "1.0", "cummulativeQuoteQty": "0.1"},
            OrderStatus.FILLED,
        ),
        ({"status": "CANCELED"}, OrderStatus.CANCELED),
        (
            {"status": "CANCELED", "executedQty": "0.4", "cummulativeQuoteQty": "0.04"},
            OrderStatus.CANCELED,
        ),
        (
            {"status": "PENDING_CANCEL", "executedQty": "0.4", "cummulativeQuoteQty": "0.04"},
            OrderStatus.PARTIAL,
        ),
        ({"status": "EXPIRED"}, OrderStatus.EXPIRED),
        ({"status": "REJECTED"}, OrderStatus.REJECTED),
    ],
)
def test_binance_order_status_mapping(
    binance: ccxt.binance, change: dict[str, Any], expected: OrderStatus
) -> None:
    raw = {**load("binance_spot_shapes/order_response.json"), **change}
    order = OrderWire.parse(binance.parse_order(raw)).to_domain()
    assert order.status is expected
    if order.filled:
        assert order.avg_fill_price == D("0.1")


def test_binance_canceled_order_response(binance: ccxt.binance) -> None:
    raw = binance.parse_order(load("binance_spot_shapes/cancel_order_response.json"))
    order = OrderWire.parse(raw).to_domain()
    assert order.status is OrderStatus.CANCELED
    assert order.created_ms == 1684804350068


def test_coinbase_orders(coinbase: ccxt.coinbase) -> None:
    one = coinbase.parse_order(load("coinbase_advanced/http_order.json")["order"])
    order = OrderWire.parse(one).to_domain()
    assert order.client_order_id == "11111-000000-000000"
    assert order.symbol == "BTC/USD"
    # The recording reports status OPEN with filled_size equal to base_size: filled wins.
    assert order.status is OrderStatus.FILLED
    assert order.fee == D("5.00")  # Coinbase order fees carry no currency: taken as quote
    listed = load("coinbase_advanced/http_orders_list.json")["orders"]
    open_order, market_sell = (OrderWire.parse(coinbase.parse_order(o)) for o in listed)
    first = open_order.to_domain()
    assert (first.status, first.price, first.amount) == (
        OrderStatus.OPEN,
        D("45000"),
        D("0.01"),
    )
    second = market_sell.to_domain()
    assert (second.status, second.side, second.order_type) == (
        OrderStatus.FILLED,
        Side.SELL,
        OrderType.MARKET,
    )
    assert (second.filled, second.avg_fill_price, second.fee) == (
        D("0.0325"),
        D("3076.92"),
        D("0.50"),
    )


def test_bad_order_fields_are_named(binance: ccxt.binance) -> None:
    raw = binance.parse_order(load("binance_spot_shapes/order_response.json"))
    with pytest.raises(BadResponse, match="'side'"):
        OrderWire.parse({**raw, "side": "hold"}).to_domain()
    with pytest.raises(BadResponse, match="'status'"):
        OrderWire.parse({**raw, "status": "weird"}).to_domain()
    with pytest.raises(BadResponse, match=r"'filled'.*exceeds"):
        OrderWire.parse({**raw, "filled": 2.0}).to_domain()
    with pytest.raises(BadResponse, match="'type'"):
        OrderWire.parse({**raw, "type": "stop_loss_limit"}).to_domain()
    with pytest.raises(BadResponse, match="'timestamp'"):
        OrderWire.parse({**raw, "timestamp": None, "lastUpdateTimestamp": None}).to_domain()
    with pytest.raises(BadResponse, match="'amount'"):
        OrderWire.parse({**raw, "amount": "1.0.0"})


# -- trades and fees ------------------------------------------------------------------------


def test_binance_trade_with_a_base_asset_fee_is_converted_at_the_trade_price(
    binance: ccxt.binance,
) -> None:
    raw = binance.parse_trade(load("binance_spot_shapes/account_trades_response.json")[0])
    converted = TradeWire.parse(raw).to_fill(client_order_id="vg123")
    fill = converted.fill
    assert fill.symbol == "BNB/BTC"
    assert (fill.fill_id, fill.client_order_id) == ("28457", "vg123")
    assert (fill.side, fill.liquidity) == (Side.BUY, Liquidity.TAKER)
    assert (fill.price, fill.amount, fill.ts) == (D("4.000001"), D("12"), 1499865549590)
    # 10.1 BNB charged on a BNB/BTC buy: 10.1 x 4.000001 BTC, and the buy delivers 10.1 less.
    assert fill.fee == D("10.1") * D("4.000001")
    assert converted.fee.source is FeeSource.BASE_AT_TRADE_PRICE
    assert converted.fee.base_fee == D("10.1")
    assert converted.exchange_order_id == "100234"
    assert "base deducted" in converted.fee.detail


def test_a_third_asset_fee_is_unpriced_unless_a_rate_is_given(binance: ccxt.binance) -> None:
    recorded = load("binance_spot_shapes/account_trades_response.json")[0]
    raw = binance.parse_trade({**recorded, "symbol": "BTCUSDT", "price": "40000"})
    unpriced = TradeWire.parse(raw).to_fill()
    assert unpriced.fill.fee == 0
    assert unpriced.fee.source is FeeSource.UNPRICED
    assert unpriced.fee.unpriced == (("BNB", D("10.1")),)
    assert unpriced.fill.client_order_id == ""
    priced = TradeWire.parse(raw).to_fill(fee_rates={"BNB": D("300")})
    assert priced.fill.fee == D("3030.0")
    assert priced.fee.source is FeeSource.AT_GIVEN_RATE


def test_coinbase_fills(coinbase: ccxt.coinbase) -> None:
    fills = [coinbase.parse_trade(f) for f in load("coinbase_advanced/http_fills.json")["fills"]]
    maker, taker = (TradeWire.parse(f).to_fill() for f in fills)
    assert maker.fill.liquidity is Liquidity.MAKER
    assert (maker.fill.price, maker.fill.amount, maker.fill.fee) == (
        D("45123.45"),
        D("0.005"),
        D("1.14"),
    )
    assert maker.fee.source is FeeSource.QUOTE
    assert (taker.fill.side, taker.fill.liquidity) == (Side.SELL, Liquidity.TAKER)


def test_trading_fees(binance: ccxt.binance) -> None:
    for raw in load("binance_spot/http_wallet_trading_fees.json"):
        parsed = binance.parse_trading_fee(raw)
        assert TradingFeeWire.parse(parsed).to_domain() == (D("0.001"), D("0.001"))


# -- balances, books, candles ---------------------------------------------------------------


def test_binance_balance(binance: ccxt.binance) -> None:
    raw = binance.parse_balance_custom(load("binance_spot_shapes/account_response.json"), "spot")
    balances = BalanceWire.parse(raw).to_domain()
    assert set(balances) == {"BTC", "LTC"}
    assert balances["BTC"].free == D("4723846.89208129")
    assert balances["BTC"].used == 0


def test_coinbase_balance() -> None:
    ex = ccxt.coinbase()
    # The recording names its account types CRYPTO / FIAT; ccxt's v3 list expects the
    # ACCOUNT_TYPE_ prefix, so tell it these are v3 accounts.
    ex.options["v3Accounts"] = ["CRYPTO", "FIAT"]
    ex.options["accounts"] = []
    raw = ex.parse_custom_balance(load("coinbase_advanced/http_accounts.json"))
    balances = BalanceWire.parse(raw).to_domain()
    assert (balances["BTC"].free, balances["BTC"].used) == (D("1.23456789"), D("0.005"))
    assert (balances["USD"].free, balances["USD"].used) == (D("10000.50"), D("450.00"))
    assert balances["USD"].total == D("10450.50")


def test_balance_fills_gaps_and_refuses_negatives() -> None:
    parsed = BalanceWire.parse({"ETH": {"free": None, "used": 1.5, "total": 4}}).to_domain()
    assert (parsed["ETH"].free, parsed["ETH"].used) == (D("2.5"), D("1.5"))
    with pytest.raises(BadResponse, match=r"balance ETH.*'free'"):
        BalanceWire.parse({"ETH": {"free": -1, "used": 0}}).to_domain()


def test_binance_order_books(binance: ccxt.binance) -> None:
    small = binance.parse_order_book(load("binance_spot_shapes/depth_response.json"), "LTC/BTC")
    book = OrderBookWire.parse(small).to_domain(received_ms=NOW)
    assert book.bids[0].price == D("4") and book.asks[0].amount == D("12")
    assert book.ts == NOW
    deep = binance.parse_order_book(
        load("binance_spot/depth_btcusdt_full_20240808.json"), "BTC/USDT"
    )
    full = OrderBookWire.parse(deep).to_domain(received_ms=NOW)
    assert len(full.bids) == len(full.asks) == 1000
    assert full.bids[0].price < full.asks[0].price


def test_coinbase_order_book(coinbase: ccxt.coinbase) -> None:
    data = load("coinbase_advanced/http_product_book.json")["pricebook"]
    raw = coinbase.parse_order_book(
        data, "BTC/USD", coinbase.parse8601(data["time"]), "bids", "asks", "price", "size"
    )
    book = OrderBookWire.parse(raw).to_domain()
    assert (book.bids[0].price, book.asks[0].price) == (D("68923.66"), D("68923.67"))
    assert book.ts == 1775521739662
    assert len(book.bids) == 5


def test_bad_books_are_refused() -> None:
    base = {"symbol": "X/Y", "timestamp": NOW, "asks": [[11, 1]]}
    with pytest.raises(BadResponse, match=r"'bids.1.price'.*descending"):
        OrderBookWire.parse({**base, "bids": [[9, 1], [10, 1]]}).to_domain()
    with pytest.raises(BadResponse, match="crossed"):
        OrderBookWire.parse({**base, "bids": [[12, 1]]}).to_domain()
    with pytest.raises(BadResponse, match=r"'bids.0.amount'"):
        OrderBookWire.parse({**base, "bids": [[9, 0]]}).to_domain()


def test_ohlcv_rows(binance: ccxt.binance, coinbase: ccxt.coinbase) -> None:
    row = binance.parse_ohlcv(load("binance_spot_shapes/klines_response.json")[0])
    candle = OhlcvWire.parse(row).to_domain()
    assert candle.ts == 1499040000000
    assert (candle.open, candle.close, candle.volume) == (
        D("0.0163479"),
        D("0.015771"),
        D("148976.11427815"),
    )
    cb = [coinbase.parse_ohlcv(c) for c in load("coinbase_advanced/http_candles.json")["candles"]]
    assert OhlcvWire.parse(cb[0]).to_domain().high == D("66331.99")
    with pytest.raises(BadResponse, match="OHLC out of order"):
        OhlcvWire.parse([NOW, 1, 0.5, 2, 1, 1]).to_domain()
    with pytest.raises(BadResponse, match="'volume'"):
        OhlcvWire.parse([NOW, 1, 2, 0.5, 1, None]).to_domain()
    with pytest.raises(BadResponse, match="6 values"):
        OhlcvWire.parse([NOW, 1, 2])


@pytest.mark.parametrize(
    ("active", "expected"),
    [(True, MarketStatus.ONLINE), (False, MarketStatus.OFFLINE), (None, MarketStatus.ONLINE)],
)
def test_unknown_venue_status_is_left_to_ccxt_active(
    active: bool | None, expected: MarketStatus
) -> None:
    # MEXC reports status "1"; ccxt turns it into `active`, which is what counts then.
    raw = {**unified_market(), "active": active, "info": {"status": "1"}}
    assert MarketWire.parse(raw).to_domain(TICK).status is expected
