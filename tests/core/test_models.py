from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from core.models import (
    BPS,
    Balance,
    BookLevel,
    Candle,
    CycleDecision,
    EngineState,
    Fill,
    Market,
    MarketStatus,
    Order,
    OrderBook,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    ProposalKind,
    Quote,
    RiskVerdict,
    Side,
    TradeProposal,
)

D = Decimal


def market(**kw: Any) -> Market:
    base: dict[str, Any] = {
        "symbol": "SOL/USDT",
        "base": "SOL",
        "quote": "USDT",
        "price_increment": D("0.01"),
        "amount_increment": D("0.001"),
        "min_size": D("0.001"),
        "min_notional": D(5),
    }
    base.update(kw)
    return Market(**base)


def candle(o: str = "10", h: str = "12", lo: str = "9", c: str = "11", v: str = "100") -> Candle:
    return Candle(0, D(o), D(h), D(lo), D(c), D(v))


def order(**kw: Any) -> Order:
    base: dict[str, Any] = {
        "client_order_id": "vg1",
        "symbol": "SOL/USDT",
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "amount": D(2),
        "price": D(100),
        "status": OrderStatus.OPEN,
        "created_ms": 0,
        "updated_ms": 0,
    }
    base.update(kw)
    return Order(**base)


# --------------------------------------------------------------------------- Market


def test_market_defaults() -> None:
    m = market()
    assert m.status is MarketStatus.ONLINE
    assert m.maker_fee == D("0.001") and m.taker_fee == D("0.001")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"price_increment": D(0)}, "increments must be positive"),
        ({"price_increment": D("-0.01")}, "increments must be positive"),
        ({"amount_increment": D(0)}, "increments must be positive"),
        ({"amount_increment": D("-1")}, "increments must be positive"),
        ({"min_size": D("-0.001")}, "minimums must not be negative"),
        ({"min_notional": D("-1")}, "minimums must not be negative"),
        ({"maker_fee": D("-0.0001")}, "negative fees"),
        ({"taker_fee": D("-0.0001")}, "negative fees"),
    ],
)
def test_market_validation_names_symbol_and_problem(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        market(**kw)
    assert "SOL/USDT" in str(err.value)


def test_market_accepts_zero_minimums_and_zero_fees() -> None:
    m = market(min_size=D(0), min_notional=D(0), maker_fee=D(0), taker_fee=D(0))
    assert m.min_size == 0 and m.maker_fee == 0


# --------------------------------------------------------------------------- Candle


@pytest.mark.parametrize(
    ("o", "h", "lo", "c"),
    [
        ("10", "12", "9", "11"),
        ("10", "10", "10", "10"),  # a flat bar is fine
        ("9", "12", "9", "12"),  # open at the low, close at the high
    ],
)
def test_candle_accepts_ordered_ohlc(o: str, h: str, lo: str, c: str) -> None:
    assert candle(o, h, lo, c).close == D(c)


@pytest.mark.parametrize(
    ("o", "h", "lo", "c", "v", "match"),
    [
        ("13", "12", "9", "11", "1", "OHLC out of order"),  # open above high
        ("8", "12", "9", "11", "1", "OHLC out of order"),  # open below low
        ("10", "12", "9", "13", "1", "OHLC out of order"),  # close above high
        ("10", "12", "9", "8", "1", "OHLC out of order"),  # close below low
        ("10", "9", "12", "10", "1", "OHLC out of order"),  # high below low
        ("0", "1", "0", "1", "1", "non-positive price"),
        ("10", "12", "9", "11", "-1", "negative volume"),
    ],
)
def test_candle_validation(o: str, h: str, lo: str, c: str, v: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        candle(o, h, lo, c, v)


def test_candle_zero_volume_is_allowed() -> None:
    assert candle(v="0").volume == 0


# --------------------------------------------------------------------------- Quote, book, balance


def test_quote_mid_and_spread() -> None:
    q = Quote("SOL/USDT", D(99), D(101), D(100), 0)
    assert q.mid == D(100)
    assert q.spread_bps == D(200)  # 2 / 100 * 10_000


def test_quote_zero_spread_and_degenerate_mid() -> None:
    assert Quote("X", D(5), D(5), D(5), 0).spread_bps == 0
    # A quote with no price at all reads as the widest possible spread.
    assert Quote("X", D(0), D(0), D(0), 0).spread_bps == BPS


def test_quote_spread_is_exact_decimal() -> None:
    q = Quote("X", D("100.00"), D("100.01"), D("100"), 0)
    assert q.spread_bps == D("0.01") / D("100.005") * BPS


def test_order_book_depth_counts_the_side_an_order_takes() -> None:
    book = OrderBook(
        "X",
        bids=(BookLevel(D(99), D(1)), BookLevel(D(98), D(2))),
        asks=(BookLevel(D(101), D(1)), BookLevel(D(102), D(3))),
        ts=0,
    )
    assert book.depth_notional(Side.BUY) == D(101) + D(306)
    assert book.depth_notional(Side.SELL) == D(99) + D(196)
    assert book.depth_notional(Side.BUY, levels=1) == D(101)
    assert book.depth_notional(Side.SELL, levels=0) == 0


def test_order_book_depth_limits_levels_and_handles_empty() -> None:
    asks = tuple(BookLevel(D(100 + i), D(1)) for i in range(15))
    book = OrderBook("X", bids=(), asks=asks, ts=0)
    assert book.depth_notional(Side.BUY) == sum(D(100 + i) for i in range(10))
    assert book.depth_notional(Side.SELL) == D(0)
    assert isinstance(book.depth_notional(Side.SELL), Decimal)


def test_balance_total() -> None:
    assert Balance("USDT", D("10.5"), D("2.25")).total == D("12.75")
    assert Balance("USDT", D(3)).total == D(3)


def test_position_cost_basis() -> None:
    p = Position("X", D("1.5"), D(20), D("0.03"), 0, D(20))
    assert p.cost_basis == D(30)


def test_side_opposite() -> None:
    assert Side.BUY.opposite is Side.SELL
    assert Side.SELL.opposite is Side.BUY


# --------------------------------------------------------------------------- orders and fills


def test_order_remaining_and_remaining_notional() -> None:
    o = order(amount=D(2), filled=D("0.5"), price=D(100))
    assert o.remaining == D("1.5")
    assert o.remaining_notional(D(999)) == D(150)  # a limit order uses its own price
    m = order(order_type=OrderType.MARKET, price=None, filled=D(1))
    assert m.remaining_notional(D(90)) == D(90)  # a market order uses the reference


def test_order_defaults() -> None:
    o = order()
    assert (o.filled, o.avg_fill_price, o.fee) == (0, 0, 0)
    assert not o.post_only and not o.reduce_only


def test_fill_notional() -> None:
    f = Fill("f1", "vg1", "X", Side.BUY, D("2.5"), D(4), D("0.01"), 0)
    assert f.notional == D(10)


def test_intent_notional() -> None:
    kw: dict[str, Any] = {"symbol": "X", "side": Side.BUY, "strategy": "s", "cycle_ms": 0}
    limit = OrderIntent("a", order_type=OrderType.LIMIT, amount=D(2), price=D(3), **kw)
    market_ = OrderIntent("b", order_type=OrderType.MARKET, amount=D(2), price=None, **kw)
    assert limit.notional == D(6)
    assert market_.notional == 0


def test_order_status_terminal_and_live_partition_all_states() -> None:
    terminal = {s for s in OrderStatus if s.is_terminal}
    live = {s for s in OrderStatus if s.is_live}
    assert terminal == {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REJECTED,
        OrderStatus.FAILED,
    }
    assert live == {OrderStatus.NEW, OrderStatus.OPEN, OrderStatus.PARTIAL}
    assert terminal.isdisjoint(live)
    assert terminal | live == set(OrderStatus)


def test_enums_serialize_as_their_values() -> None:
    assert str(OrderStatus.PARTIAL) == "PARTIAL"
    assert str(Side.BUY) == "buy"
    assert MarketStatus("CANCEL_ONLY") is MarketStatus.CANCEL_ONLY


# --------------------------------------------------------------------------- immutability

FROZEN_SAMPLES = [
    (market(), "min_notional", D(1)),
    (candle(), "close", D(1)),
    (Quote("X", D(1), D(2), D(1), 0), "bid", D(0)),
    (Balance("USDT", D(1)), "free", D(2)),
    (Position("X", D(1), D(1), D(0), 0, D(1)), "quantity", D(2)),
    (order(), "status", OrderStatus.FILLED),
    (Fill("f", "c", "X", Side.BUY, D(1), D(1), D(0), 0), "amount", D(2)),
    (
        TradeProposal("s", "X", Side.BUY, ProposalKind.ENTRY, 0.5, "r", D(1)),
        "confidence",
        1.0,
    ),
    (EngineState(), "kill_switch", True),
]


@pytest.mark.parametrize(("obj", "attr", "value"), FROZEN_SAMPLES)
def test_values_are_frozen(obj: object, attr: str, value: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attr, value)


@pytest.mark.parametrize("obj", [s[0] for s in FROZEN_SAMPLES])
def test_values_are_slotted(obj: object) -> None:
    assert not hasattr(obj, "__dict__")
    with pytest.raises((AttributeError, TypeError)):
        obj.unexpected = 1  # type: ignore[attr-defined]


def test_engine_state_maps_are_read_only() -> None:
    st = EngineState()
    with pytest.raises(TypeError):
        st.cooldowns["X"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        st.breakers["x"] = None  # type: ignore[index]


def test_every_model_is_a_frozen_slotted_dataclass() -> None:
    for cls in (Market, Candle, Quote, OrderBook, Balance, Position, Order, Fill):
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, cls
        assert "__slots__" in cls.__dict__, cls
    for cls in (TradeProposal, RiskVerdict, OrderIntent, CycleDecision, EngineState):
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in cls.__dict__, cls


def test_money_fields_are_decimal_and_time_fields_int() -> None:
    hints = {f.name: f.type for f in dataclasses.fields(Order)}
    for name in ("amount", "filled", "avg_fill_price", "fee"):
        assert hints[name] == "Decimal", name
    assert hints["price"] == "Decimal | None"
    assert hints["created_ms"] == "int" and hints["updated_ms"] == "int"
