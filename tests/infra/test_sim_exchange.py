"""The simulated exchange: venue rules, the fill model, balances, persistence, determinism."""

from __future__ import annotations

import random
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from core.clock import SimClock
from core.errors import (
    BadSymbol,
    DuplicateOrder,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
)
from core.models import (
    Fill,
    Liquidity,
    Market,
    MarketStatus,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
)
from infra.exchange.sim import SimExchange
from infra.exchange.sim_config import SimConfig
from infra.exchange.sim_prices import ceil_to, floor_to

D = Decimal
TF = 60_000
SYM = "BTC/USDT"
T = TypeVar("T")


def market(symbol: str = SYM, **kw: Any) -> Market:
    base, quote = symbol.split("/")
    args: dict[str, Any] = {
        "price_increment": D("0.01"),
        "amount_increment": D("0.001"),
        "min_size": D("0.01"),
        "min_notional": D("5"),
        "maker_fee": D("0.001"),
        "taker_fee": D("0.002"),
    }
    args.update(kw)
    return Market(symbol=symbol, base=base, quote=quote, **args)


def make(
    *, seed: int = 42, markets: list[Market] | None = None, **cfg: Any
) -> tuple[SimExchange, SimClock]:
    cfg.setdefault("starting_balances", {"USDT": D(10_000), "BTC": D(2)})
    clock = SimClock(0)
    mkts = markets or [market()]
    ex = SimExchange(
        markets={m.symbol: m for m in mkts},
        config=SimConfig(**cfg),
        rng=random.Random(seed),
        clock=clock,
        timeframe_ms=TF,
    )
    return ex, clock


def candle(
    ex: SimExchange,
    clock: SimClock,
    i: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float = 100,
) -> list[Fill]:
    """Close candle number i (open time i*TF) and leave the clock at its close."""
    clock.advance_to((i + 1) * TF)
    return ex.on_candle(SYM, i * TF, o, h, lo, c, v)


def intent(
    coid: str,
    side: Side = Side.BUY,
    amount: str = "1",
    price: str | None = "99",
    *,
    symbol: str = SYM,
    post_only: bool = False,
) -> OrderIntent:
    kind = OrderType.LIMIT if price is not None else OrderType.MARKET
    return OrderIntent(
        client_order_id=coid,
        symbol=symbol,
        side=side,
        order_type=kind,
        amount=D(amount),
        price=None if price is None else D(price),
        strategy="t",
        cycle_ms=0,
        post_only=post_only,
    )


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a sim coroutine with no event loop: it must finish without ever suspending."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("a SimExchange coroutine suspended")


async def totals(ex: SimExchange) -> dict[str, tuple[Decimal, Decimal]]:
    return {a: (b.free, b.used) for a, b in (await ex.fetch_balances()).items()}


# ---- venue rules ------------------------------------------------------------------------------


async def test_unknown_symbol_is_bad_symbol_everywhere() -> None:
    ex, _ = make()
    with pytest.raises(BadSymbol, match="ETH/USDT"):
        await ex.create_order(intent("a", symbol="ETH/USDT"))
    with pytest.raises(BadSymbol):
        ex.on_candle("ETH/USDT", 0, 1, 1, 1, 1, 1)
    with pytest.raises(BadSymbol):
        await ex.fetch_quotes(["ETH/USDT"])
    with pytest.raises(BadSymbol):
        await ex.fetch_ohlcv("ETH/USDT", "1m")
    with pytest.raises(BadSymbol):
        await ex.fetch_order_book("ETH/USDT")


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (intent("a", amount="0.0105"), "amount increment"),
        (intent("a", amount="0.005"), "minimum size"),
        (intent("a", amount="0"), "positive"),
        (intent("a", price="99.005"), "price increment"),
        (intent("a", price="0"), "positive price"),
        (intent("a", amount="0.05", price="99"), "notional"),
        (intent("a", Side.SELL, amount="0.05", price=None), "notional"),
    ],
)
async def test_filters_reject_like_a_venue(order: OrderIntent, message: str) -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    before = await totals(ex)
    with pytest.raises(InvalidOrder, match=message):
        await ex.create_order(order)
    assert await totals(ex) == before
    assert await ex.fetch_open_orders() == []


@pytest.mark.parametrize("status", [MarketStatus.OFFLINE, MarketStatus.CANCEL_ONLY])
async def test_halted_market_refuses_every_order(status: MarketStatus) -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    ex.set_market_status(SYM, status)
    with pytest.raises(InvalidOrder, match=status.value):
        await ex.create_order(intent("a", post_only=True))
    assert (await ex.load_markets())[SYM].status is status


@pytest.mark.parametrize("status", [MarketStatus.POST_ONLY, MarketStatus.LIMIT_ONLY])
async def test_limit_only_markets_refuse_market_orders(status: MarketStatus) -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    ex.set_market_status(SYM, status)
    with pytest.raises(InvalidOrder, match="market orders"):
        await ex.create_order(intent("a", price=None))
    order = await ex.create_order(intent("b", price="99"))
    assert order.status is OrderStatus.OPEN


async def test_post_only_market_refuses_a_crossing_limit() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    ex.set_market_status(SYM, MarketStatus.POST_ONLY)
    with pytest.raises(InvalidOrder, match="POST_ONLY"):
        await ex.create_order(intent("a", price="100.01"))


@pytest.mark.parametrize(
    ("side", "price"),
    [(Side.BUY, "100.01"), (Side.BUY, "105"), (Side.SELL, "99.99"), (Side.SELL, "90")],
)
async def test_post_only_that_would_cross_is_rejected(side: Side, price: str) -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)  # quote 99.99 / 100.01
    with pytest.raises(InvalidOrder, match="post-only"):
        await ex.create_order(intent("a", side, price=price, post_only=True))
    inside = await ex.create_order(intent("b", side, price="100.00", post_only=True))
    assert inside.status is OrderStatus.OPEN


async def test_insufficient_funds() -> None:
    ex, clock = make(starting_balances={"USDT": D(1000), "BTC": D("0.5")})
    candle(ex, clock, 0, 100, 101, 99, 100)
    # 10 x 99.9 x (1 + 0.002 taker, the larger fee) = 1000.998 > 1000
    with pytest.raises(InsufficientFunds, match=r"1000\.998"):
        await ex.create_order(intent("a", amount="10", price="99.9"))
    # a market buy is priced at the ask: 10 x 100.01 > 1000
    with pytest.raises(InsufficientFunds):
        await ex.create_order(intent("b", amount="10", price=None))
    with pytest.raises(InsufficientFunds, match="BTC"):
        await ex.create_order(intent("c", Side.SELL, amount="0.6", price="101"))
    assert await totals(ex) == {"BTC": (D("0.5"), D(0)), "USDT": (D(1000), D(0))}
    ok = await ex.create_order(intent("d", amount="9.9", price="99.9"))
    assert ok.status is OrderStatus.OPEN


async def test_market_order_needs_a_price_first() -> None:
    ex, _ = make()
    with pytest.raises(InvalidOrder, match="no price"):
        await ex.create_order(intent("a", price=None))


async def test_duplicate_client_order_id_in_any_status() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("open"))
    await ex.create_order(intent("gone"))
    await ex.cancel_order("gone", SYM)
    for coid in ("open", "gone"):
        with pytest.raises(DuplicateOrder, match=coid):
            await ex.create_order(intent(coid))
    with pytest.raises(InvalidOrder, match="empty"):
        await ex.create_order(intent(""))


async def test_accepted_order_reserves_funds() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    clock.advance_to(TF + 1234)
    order = await ex.create_order(intent("a", amount="2", price="99"))
    assert (order.status, order.created_ms, order.exchange_order_id) == ("OPEN", TF + 1234, "1")
    reserve = D(2) * D(99) * D("1.002")
    assert await totals(ex) == {"BTC": (D(2), D(0)), "USDT": (D(10_000) - reserve, reserve)}
    await ex.create_order(intent("b", Side.SELL, amount="0.5", price="101"))
    assert (await totals(ex))["BTC"] == (D("1.5"), D("0.5"))


# ---- the fill model ---------------------------------------------------------------------------


async def test_no_fill_on_the_placement_candle() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    clock.advance_to(TF + 30_000)  # in the middle of candle 1
    await ex.create_order(intent("m", price=None))
    await ex.create_order(intent("l", price="99.5"))
    assert ex.on_candle(SYM, TF, 100, 101, 98, 100, 100) == []  # candle 1: placed during it
    clock.advance_to(3 * TF)
    fills = ex.on_candle(SYM, 2 * TF, 100, 101, 98, 100, 100)
    assert {f.client_order_id for f in fills} == {"m", "l"}
    assert all(f.ts == 2 * TF for f in fills)


async def test_latency_delays_the_first_fillable_candle() -> None:
    ex, clock = make(latency_ms=TF)
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("m", price=None))  # at the open of candle 1
    assert candle(ex, clock, 1, 100, 101, 99, 100) == []
    assert [f.client_order_id for f in candle(ex, clock, 2, 100, 101, 99, 100)] == ["m"]


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
async def test_market_fill_at_next_open_with_slippage(side: Side) -> None:
    ex, clock = make(seed=7)
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("m", side, amount="0.5", price=None))
    o, h, l = 100.0, 103.0, 98.0  # noqa: E741
    [fill] = candle(ex, clock, 1, o, h, l, 101)
    u = random.Random(7).uniform(0.5, 1.0)
    slip = (2 + 0.1 * (h - l) / o * 10_000 * u) / 10_000
    if side is Side.BUY:
        expected = ceil_to(D(repr(o * (1 + slip))), D("0.01"))
        assert D(o) < fill.price <= D(h)
    else:
        expected = floor_to(D(repr(o * (1 - slip))), D("0.01"))
        assert D(l) <= fill.price < D(o)
    assert (fill.price, fill.amount, fill.liquidity) == (expected, D("0.5"), Liquidity.TAKER)
    assert fill.fee == (fill.price * D("0.5") * D("0.002")).quantize(D("1e-8"))
    order = await ex.fetch_order("m", SYM)
    assert (order.status, order.filled, order.avg_fill_price) == ("FILLED", D("0.5"), fill.price)


async def test_market_slippage_is_clamped_into_the_candle() -> None:
    ex, clock = make(slippage_bps=D(500), slippage_vol_mult=D(1))
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("b", price=None))
    await ex.create_order(intent("s", Side.SELL, price=None))
    fills = {f.client_order_id: f.price for f in candle(ex, clock, 1, 100, 100.5, 99.5, 100)}
    assert fills == {"b": D("100.5"), "s": D("99.5")}


@pytest.mark.parametrize(
    ("side", "price", "hl", "fills"),
    [
        (Side.BUY, "99", (101, 99), False),  # touched, not traded through
        (Side.BUY, "99", (101, 98.99), True),
        (Side.SELL, "101", (101, 99), False),
        (Side.SELL, "101", (101.01, 99), True),
    ],
)
async def test_limit_fills_only_when_traded_through(
    side: Side, price: str, hl: tuple[float, float], fills: bool
) -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("a", side, price=price))
    got = candle(ex, clock, 1, 100, hl[0], hl[1], 100)
    if not fills:
        assert got == []
        assert (await ex.fetch_order("a", SYM)).status is OrderStatus.OPEN
        return
    [fill] = got
    assert (fill.price, fill.liquidity) == (D(price), Liquidity.MAKER)
    assert fill.fee == D(price) * D("0.001")


async def test_marketable_limit_takes_at_the_open_never_past_its_price() -> None:
    ex, clock = make(slippage_bps=D(0), slippage_vol_mult=D(0))
    candle(ex, clock, 0, 100, 101, 99, 100)
    order = await ex.create_order(intent("a", price="100.50"))  # above the ask: marketable
    assert order.status is OrderStatus.OPEN
    [fill] = candle(ex, clock, 1, 100.2, 101, 99, 100)
    assert (fill.price, fill.liquidity) == (D("100.2"), Liquidity.TAKER)
    assert fill.fee == D("100.2") * D("0.002")
    ex2, clock2 = make(slippage_bps=D(1000), slippage_vol_mult=D(0))
    candle(ex2, clock2, 0, 100, 101, 99, 100)
    await ex2.create_order(intent("a", price="100.50"))
    [capped] = candle(ex2, clock2, 1, 100.2, 101, 99, 100)
    assert capped.price == D("100.50")  # 10 % slippage, but never beyond the limit


async def test_post_only_gapped_through_fills_at_its_price_as_maker() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("p", price="99.5", post_only=True))
    await ex.create_order(intent("r", price="99.4"))
    fills = {f.client_order_id: f for f in candle(ex, clock, 1, 98, 99, 97, 98)}
    assert (fills["p"].price, fills["p"].liquidity) == (D("99.5"), Liquidity.MAKER)
    # a plain limit arriving below its price crosses on arrival: taker, at or under its price
    assert fills["r"].liquidity is Liquidity.TAKER
    assert D(97) <= fills["r"].price <= D("99.4")


async def test_resting_order_gapped_later_fills_at_its_price() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("r", price="99.4"))
    assert candle(ex, clock, 1, 100, 101, 99.5, 100) == []  # it arrived and rests
    [fill] = candle(ex, clock, 2, 98, 99, 97, 98)
    assert (fill.price, fill.liquidity) == (D("99.4"), Liquidity.MAKER)


async def test_participation_cap_partial_then_filled() -> None:
    ex, clock = make(participation_cap=D("0.1"))
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("a", amount="5", price="99.5"))
    f1 = candle(ex, clock, 1, 100, 101, 99, 100, v=20)  # 2 of 5
    assert (await ex.fetch_order("a", SYM)).status is OrderStatus.PARTIAL
    f2 = candle(ex, clock, 2, 100, 101, 99, 100, v=0)  # no volume, no fill
    f3 = candle(ex, clock, 3, 100, 101, 99, 100, v=25.559)  # 2.555 (rounded down)
    assert f2 == []
    assert [(f.fill_id, f.amount) for f in f1 + f3] == [("a-1", D(2)), ("a-2", D("2.555"))]
    f4 = candle(ex, clock, 4, 100, 101, 99, 100, v=1000)
    assert [(f.fill_id, f.amount) for f in f4] == [("a-3", D("0.445"))]
    order = await ex.fetch_order("a", SYM)
    assert (order.status, order.filled, order.avg_fill_price) == ("FILLED", D(5), D("99.5"))
    assert order.fee == sum(f.fee for f in f1 + f3 + f4)
    assert await totals(ex) == {
        "BTC": (D(7), D(0)),
        "USDT": (D(10_000) - D(5) * D("99.5") * D("1.001"), D(0)),
    }


async def test_market_order_partial_fills_continue_at_later_opens() -> None:
    ex, clock = make(slippage_bps=D(0), slippage_vol_mult=D(0))
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("m", Side.SELL, amount="1.5", price=None))
    assert [f.price for f in candle(ex, clock, 1, 100, 101, 99, 100, v=10)] == [D(100)]
    assert [f.price for f in candle(ex, clock, 2, 102, 103, 99, 100, v=10)] == [D(102)]
    order = await ex.fetch_order("m", SYM)
    assert (order.status, order.avg_fill_price) == ("FILLED", D(151) / D("1.5"))


async def test_market_buy_outrunning_its_funds_expires_without_debt() -> None:
    ex, clock = make(starting_balances={"USDT": D(101)}, slippage_bps=D(0), slippage_vol_mult=D(0))
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("m", amount="1", price=None))  # reserves 100.01 x 1.002
    [fill] = candle(ex, clock, 1, 110, 111, 109, 110)
    assert fill.amount == D("0.916")  # the most that 101 USDT pays for at 110 + fee
    order = await ex.fetch_order("m", SYM)
    assert (order.status, order.reason) == ("EXPIRED", "insufficient funds at fill")
    usdt = (await ex.fetch_balances())["USDT"]
    assert usdt.used == 0
    assert usdt.free == D(101) - fill.notional - fill.fee >= 0


async def test_no_fills_while_the_market_is_halted() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("a", price="99.5"))
    ex.set_market_status(SYM, MarketStatus.OFFLINE)
    assert candle(ex, clock, 1, 100, 101, 90, 100) == []
    ex.set_market_status(SYM, MarketStatus.ONLINE)
    assert len(candle(ex, clock, 2, 100, 101, 90, 100)) == 1


async def test_fee_overrides_and_rounding() -> None:
    ex, clock = make(maker_fee=D("0.00075"), taker_fee=D("0.003"))
    assert (await ex.fetch_fees()) == {SYM: (D("0.00075"), D("0.003"))}
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("a", amount="0.123", price="99.99"))
    [fill] = candle(ex, clock, 1, 100, 101, 99, 100)
    # 0.123 x 99.99 x 0.00075 = 0.0092240775 -> half up at 1e-8
    assert fill.fee == D("0.00922408")
    assert (fill.fill_id, fill.liquidity) == ("a-1", Liquidity.MAKER)


# ---- cancels and balances -------------------------------------------------------------------


async def test_cancel_releases_reserves_exactly() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    start = await totals(ex)
    await ex.create_order(intent("b", amount="3", price="99.37"))
    await ex.create_order(intent("s", Side.SELL, amount="1.234", price="100.5"))
    assert await totals(ex) != start
    canceled = await ex.cancel_order("b", SYM)
    assert (canceled.status, canceled.reason) == ("CANCELED", "canceled")
    await ex.cancel_order("s", SYM)
    assert await totals(ex) == start
    assert await ex.fetch_open_orders() == []
    for coid in ("b", "nope"):
        with pytest.raises(OrderNotFound):
            await ex.cancel_order(coid, SYM)


async def test_cancel_after_partial_fill_keeps_the_fill() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("b", amount="3", price="99.5"))
    [fill] = candle(ex, clock, 1, 100, 101, 99, 100, v=10)
    await ex.cancel_order("b", SYM)
    bal = await totals(ex)
    assert bal["USDT"] == (D(10_000) - fill.notional - fill.fee, D(0))
    assert bal["BTC"] == (D(2) + fill.amount, D(0))
    order = await ex.fetch_order("b", SYM)
    assert (order.status, order.filled) == ("CANCELED", D(1))
    candle(ex, clock, 2, 100, 101, 90, 100)
    with pytest.raises(OrderNotFound, match="CANCELED"):
        await ex.cancel_order("b", SYM)


async def test_filled_order_cannot_be_canceled() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    await ex.create_order(intent("m", price=None))
    candle(ex, clock, 1, 100, 101, 99, 100)
    with pytest.raises(OrderNotFound, match="FILLED"):
        await ex.cancel_order("m", SYM)
    with pytest.raises(OrderNotFound):
        await ex.fetch_order("x", SYM)
