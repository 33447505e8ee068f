"""The simulated exchange: balance conservation, determinism, persistence, market data out.

Helpers live in test_sim_exchange.py (venue rules and the fill model).
"""

from __future__ import annotations

import contextlib
import json
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.clock import SimClock
from core.errors import ExchangeError, InsufficientFunds, InvalidOrder, OrderNotFound
from core.models import Fill, Liquidity, MarketStatus, OrderStatus, Quote, Side
from infra.exchange.sim import SimExchange, UnsupportedTimeframe
from infra.exchange.sim_config import SimConfig
from tests.infra.test_sim_exchange import SYM, TF, candle, drive, intent, make, market

D = Decimal


# ---- balance conservation (property) --------------------------------------------------------

_candles = st.tuples(
    st.integers(9_000, 11_000),  # low, in cents
    st.integers(0, 400),  # high - low
    st.floats(0, 1),  # open within [low, high]
    st.floats(0, 1),  # close within [low, high]
    st.sampled_from([0.0, 0.5, 3.0, 20.0, 500.0]),
)
_order_ops = st.one_of(
    st.tuples(
        st.just("limit"),
        st.tuples(
            st.sampled_from(Side), st.integers(1, 4000), st.integers(9_000, 11_000), st.booleans()
        ),
    ),
    st.tuples(st.just("market"), st.tuples(st.sampled_from(Side), st.integers(1, 4000))),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
)
# Each step: a few order actions, then a candle closes.
_steps = st.lists(st.tuples(st.lists(_order_ops, max_size=3), _candles), min_size=1, max_size=25)


def _feed(ex: SimExchange, clock: SimClock, i: int, spec: tuple[Any, ...]) -> list[Fill]:
    low, span, fo, fc, vol = spec
    lo, hi = low / 100, (low + span) / 100
    return candle(ex, clock, i, lo + fo * (hi - lo), hi, lo, lo + fc * (hi - lo), vol)


def _act(ex: SimExchange, kind: str, arg: Any, coid: str) -> bool:
    """One order action; True when a new order was accepted."""
    if kind == "cancel":
        drive(ex.cancel_order(f"o{arg}", SYM))
        return False
    if kind == "limit":
        side, steps, cents, post = arg
        price: str | None = str(D(cents) / 100)
    else:
        (side, steps), price, post = arg, None, False
    drive(ex.create_order(intent(coid, side, str(D(steps) / 1000), price, post_only=post)))
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, first=_candles, seed=st.integers(0, 3))
def test_balances_are_conserved(
    steps: list[tuple[list[tuple[str, Any]], tuple[Any, ...]]], first: tuple[Any, ...], seed: int
) -> None:
    ex, clock = make(seed=seed, starting_balances={"USDT": D(1_000), "BTC": D(3)})
    fills = _feed(ex, clock, 0, first)  # a first quote, so market orders can be priced
    placed: list[str] = []
    for i, (actions, spec) in enumerate(steps, start=1):
        for kind, arg in actions:
            before = drive(ex.fetch_balances())
            try:
                if _act(ex, kind, arg, f"o{len(placed)}"):
                    placed.append(f"o{len(placed)}")
            except (InvalidOrder, InsufficientFunds, OrderNotFound):
                assert drive(ex.fetch_balances()) == before  # a refusal changes nothing
        fills += _feed(ex, clock, i, spec)
        for b in drive(ex.fetch_balances()).values():
            assert b.free >= 0 and b.used >= 0
    for order in drive(ex.fetch_open_orders()):
        drive(ex.cancel_order(order.client_order_id, SYM))
    statuses = {drive(ex.fetch_order(c, SYM)).status for c in placed}
    event(f"fills: {min(len(fills), 5)}+" if fills else "fills: none")
    event("some order expired" if OrderStatus.EXPIRED in statuses else "none expired")
    bal = drive(ex.fetch_balances())
    buys = [f for f in fills if f.side is Side.BUY]
    sells = [f for f in fills if f.side is Side.SELL]
    fees = sum((f.fee for f in fills), D(0))
    d_quote = sum((f.notional for f in sells), D(0)) - sum((f.notional for f in buys), D(0))
    d_base = sum((f.amount for f in buys), D(0)) - sum((f.amount for f in sells), D(0))
    assert bal["USDT"].total == D(1_000) + d_quote - fees
    assert bal["BTC"].total == D(3) + d_base
    assert all(b.used == 0 and b.free >= 0 for b in bal.values())
    assert drive(ex.fetch_my_trades()) == sorted(fills, key=lambda f: f.ts)
    for coid in placed:
        order = drive(ex.fetch_order(coid, SYM))
        mine = [f for f in fills if f.client_order_id == coid]
        assert order.filled == sum((f.amount for f in mine), D(0)) <= order.amount
        assert order.fee == sum((f.fee for f in mine), D(0))
        assert [f.fill_id for f in mine] == [f"{coid}-{n}" for n in range(1, len(mine) + 1)]


# ---- determinism and persistence ------------------------------------------------------------


def scripted(ex: SimExchange, clock: SimClock, start: int, n: int) -> list[Fill]:
    """A fixed pseudo-random session of orders and candles (the script has its own seed)."""
    script = random.Random(1234 + start)
    fills: list[Fill] = []
    px = 100.0
    for i in range(start, start + n):
        if i % 3 == 0:
            side = script.choice([Side.BUY, Side.SELL])
            amount = str(D(script.randint(50, 900)) / 1000)
            price = None if script.random() < 0.5 else f"{px * script.uniform(0.99, 1.01):.2f}"
            with contextlib.suppress(InvalidOrder, InsufficientFunds):
                drive(ex.create_order(intent(f"s{i}", side, amount, price)))
        o = px
        px *= script.uniform(0.98, 1.02)
        hi, lo = max(o, px) * script.uniform(1, 1.01), min(o, px) * script.uniform(0.99, 1)
        fills += candle(ex, clock, i, o, hi, lo, px, script.uniform(1, 30))
    return fills


def test_same_seed_same_fills() -> None:
    runs = [scripted(*make(seed=5), 0, 120) for _ in range(2)]
    assert runs[0] == runs[1]
    assert any(f.liquidity is Liquidity.TAKER for f in runs[0])
    assert scripted(*make(seed=6), 0, 120) != runs[0]  # the rng really drives slippage


def test_snapshot_round_trip_and_continue() -> None:
    ex, clock = make(seed=9)
    scripted(ex, clock, 0, 60)
    ex.set_quote(Quote(symbol=SYM, bid=D("1.00"), ask=D("1.02"), last=D("1.01"), ts=1))
    ex.set_market_status(SYM, MarketStatus.LIMIT_ONLY)
    ex.set_market_status(SYM, MarketStatus.ONLINE)
    state = json.loads(json.dumps(ex.snapshot_state()))
    assert state["orders"] and state["fills"]
    clone, clone_clock = make(seed=0, starting_balances={})
    clone.restore_state(state)
    assert clone.snapshot_state() == ex.snapshot_state()
    clone_clock.advance_to(clock.now_ms())
    assert scripted(clone, clone_clock, 60, 60) == scripted(ex, clock, 60, 60)
    assert clone.snapshot_state() == ex.snapshot_state()


def test_restore_refuses_bad_state_and_changes_nothing() -> None:
    ex, clock = make()
    scripted(ex, clock, 0, 30)
    good = ex.snapshot_state()
    bad_version = {**good, "version": 99}
    bad_used = json.loads(json.dumps(good))
    bad_used["balances"]["USDT"]["used"] = "12345"
    bad_symbol = json.loads(json.dumps(good))
    bad_symbol["symbols"]["DOGE/USDT"] = bad_symbol["symbols"][SYM]
    bad_number = json.loads(json.dumps(good))
    bad_number["balances"]["USDT"]["free"] = "lots"
    fresh, _ = make()
    before = fresh.snapshot_state()
    for bad, why in [
        (bad_version, "version"),
        (bad_used, "reserved"),
        (bad_symbol, "DOGE"),
        (bad_number, "malformed"),
        ({}, "version"),
    ]:
        with pytest.raises(ValueError, match=why):
            fresh.restore_state(bad)
        assert fresh.snapshot_state() == before


# ---- market data out ------------------------------------------------------------------------


async def test_quotes_from_candles() -> None:
    eth = market("ETH/USDT", price_increment=D("0.5"))
    ex, clock = make(markets=[market(), eth], synthetic_spread_bps=D(0))
    assert await ex.fetch_quotes([SYM, "ETH/USDT"]) == {}
    candle(ex, clock, 0, 100, 101, 99, 100.004)
    quotes = await ex.fetch_quotes([SYM, "ETH/USDT"])
    assert list(quotes) == [SYM]  # only symbols with data
    q = quotes[SYM]
    # spread 0 would make bid == ask: they are kept one increment apart
    assert (q.bid, q.ask, q.last, q.ts) == (D("100.00"), D("100.01"), D("100.00"), TF)
    ex.on_candle("ETH/USDT", 0, 2000, 2001, 1999, 2000.3, 5)
    e = (await ex.fetch_quotes(["ETH/USDT"]))["ETH/USDT"]
    assert (e.bid, e.ask) == (D("2000.0"), D("2000.5"))


async def test_quote_spread_rounds_outward() -> None:
    ex, clock = make(synthetic_spread_bps=D(10))
    candle(ex, clock, 0, 123, 124, 122, 123.456)
    q = (await ex.fetch_quotes([SYM]))[SYM]
    # 123.456 x (1 -/+ 0.0005) = 123.394272 / 123.517728
    assert (q.bid, q.ask, q.last) == (D("123.39"), D("123.52"), D("123.46"))


async def test_newest_of_pushed_and_candle_quote_wins() -> None:
    ex, clock = make()
    pushed = Quote(symbol=SYM, bid=D("50.00"), ask=D("50.10"), last=D("50.05"), ts=TF + 5)
    ex.set_quote(pushed)
    assert (await ex.fetch_quotes([SYM]))[SYM] == pushed
    candle(ex, clock, 0, 100, 101, 99, 100)  # its quote is stamped TF, older than the push
    assert (await ex.fetch_quotes([SYM]))[SYM] == pushed
    candle(ex, clock, 1, 100, 101, 99, 100)
    assert (await ex.fetch_quotes([SYM]))[SYM].ts == 2 * TF
    with pytest.raises(ValueError, match="bid <= ask"):
        ex.set_quote(Quote(symbol=SYM, bid=D(2), ask=D(1), last=D(1), ts=0))


@settings(max_examples=400, deadline=None)
@given(
    close=st.floats(1e-9, 1e7, allow_nan=False, allow_infinity=False),
    inc=st.sampled_from(["0.01", "1", "0.00000001", "0.0001", "0.05", "2.5", "10", "0.0025"]),
    spread_bps=st.sampled_from(["0", "2", "10", "500"]),
)
def test_candle_last_is_the_close_on_the_grid_inside_the_spread(
    close: float, inc: str, spread_bps: str
) -> None:
    """A candle quote's last is `candle_last` (marks ask for it alone, every cycle): the close
    rounded half-even to the grid and clamped to [bid, ask]. The clamp binds only where the
    close rounds to zero and the bid is raised to one increment, so candle_last needs no bid
    or ask; this checks that everywhere, tiny prices and non-power-of-ten grids included."""
    from decimal import ROUND_HALF_EVEN

    from infra.exchange.sim_prices import PriceGrid, candle_last, candle_quote

    grid = PriceGrid(D(inc))
    half = D(spread_bps) / 10_000 / 2
    q = candle_quote(SYM, grid, close, 1 - half, 1 + half, TF)
    on_grid = (D(repr(close)) / grid.inc).to_integral_value(ROUND_HALF_EVEN) * grid.inc
    assert q.last == min(max(on_grid, q.bid), q.ask)
    assert q.last == candle_last(grid, D(repr(close)))
    assert q.bid < q.ask and q.bid > 0


async def test_board_last_follows_the_newest_quote() -> None:
    ex, clock = make()
    pushed = Quote(symbol=SYM, bid=D("50.00"), ask=D("50.10"), last=D("50.05"), ts=TF + 5)
    ex.set_quote(pushed)
    assert (await ex.fetch_quotes([SYM])).last(SYM) == D("50.05")
    candle(ex, clock, 0, 100, 101, 99, 100.004)  # older than the push
    assert (await ex.fetch_quotes([SYM])).last(SYM) == D("50.05")
    candle(ex, clock, 1, 100, 101, 99, 100.004)
    board = await ex.fetch_quotes([SYM])
    assert board.last(SYM) == board[SYM].last == D("100.00")
    assert board.last("NOPE/USDT") is None


async def test_fetch_ohlcv_from_history() -> None:
    ex, clock = make()
    for i in range(5):
        candle(ex, clock, i, 100 + i, 101 + i, 99 + i, 100.5 + i, 10 + i)
    bars = await ex.fetch_ohlcv(SYM, "1m")
    assert [b.ts for b in bars] == [i * TF for i in range(5)]
    assert (bars[2].open, bars[2].close, bars[2].volume) == (D(102), D("102.5"), D(12))
    assert [b.ts for b in await ex.fetch_ohlcv(SYM, "1m", limit=2)] == [3 * TF, 4 * TF]
    since = await ex.fetch_ohlcv(SYM, "1m", since_ms=TF, limit=2)
    assert [b.ts for b in since] == [TF, 2 * TF]
    with pytest.raises(UnsupportedTimeframe, match="5m") as err:
        await ex.fetch_ohlcv(SYM, "5m")
    assert isinstance(err.value, ExchangeError)
    with pytest.raises(UnsupportedTimeframe):
        await ex.fetch_ohlcv(SYM, "soon")


def test_history_is_bounded() -> None:
    clock = SimClock(0)
    ex = SimExchange(
        markets={SYM: market()},
        config=SimConfig(),
        rng=random.Random(0),
        clock=clock,
        timeframe_ms=TF,
        history_size=3,
    )
    for i in range(10):
        ex.on_candle(SYM, i * TF, 100, 101, 99, 100, 1)
    assert [b.ts for b in drive(ex.fetch_ohlcv(SYM, "1m"))] == [7 * TF, 8 * TF, 9 * TF]


def test_candles_must_be_new_and_sane() -> None:
    ex, clock = make()
    candle(ex, clock, 3, 100, 101, 99, 100)
    for ts in (3 * TF, 2 * TF):
        with pytest.raises(ValueError, match="not newer"):
            ex.on_candle(SYM, ts, 100, 101, 99, 100, 1)
    for bad in [(100, 99, 101, 100, 1), (102, 101, 99, 100, 1), (1, 1, 0, 1, 1), (1, 1, 1, 1, -1)]:
        with pytest.raises(ValueError, match="bad candle"):
            ex.on_candle(SYM, 9 * TF, *bad)


async def test_synthetic_order_book() -> None:
    ex, clock = make(participation_cap=D("0.5"))
    assert (await ex.fetch_order_book(SYM)).bids == ()
    candle(ex, clock, 0, 100, 101, 99, 100, v=40)
    book = await ex.fetch_order_book(SYM, limit=4)
    assert [lv.price for lv in book.bids] == [D("99.99"), D("99.98"), D("99.97"), D("99.96")]
    assert [lv.price for lv in book.asks] == [D("100.01"), D("100.02"), D("100.03"), D("100.04")]
    assert {lv.amount for lv in book.bids + book.asks} == {D(5)}  # 40 x 0.5 / 4 levels
    assert book.ts == TF


async def test_open_orders_trades_and_markets() -> None:
    eth = market("ETH/USDT")
    ex, clock = make(markets=[market(), eth])
    candle(ex, clock, 0, 100, 101, 99, 100)
    ex.on_candle("ETH/USDT", 0, 100, 101, 99, 100, 100)
    await ex.create_order(intent("a", price="99.5"))
    await ex.create_order(intent("b", price="90"))
    await ex.create_order(intent("e", price="99.5", symbol="ETH/USDT"))
    assert [o.client_order_id for o in await ex.fetch_open_orders()] == ["a", "b", "e"]
    assert [o.client_order_id for o in await ex.fetch_open_orders(SYM)] == ["a", "b"]
    candle(ex, clock, 1, 100, 101, 99, 100, v=5)  # "a" gets half its amount
    ex.on_candle("ETH/USDT", TF, 100, 101, 99, 100, 100)
    candle(ex, clock, 2, 100, 101, 99, 100)
    assert [f.fill_id for f in await ex.fetch_my_trades()] == ["a-1", "e-1", "a-2"]
    assert [f.fill_id for f in await ex.fetch_my_trades(SYM)] == ["a-1", "a-2"]
    assert [f.fill_id for f in await ex.fetch_my_trades(since_ms=2 * TF)] == ["a-2"]
    assert [o.client_order_id for o in await ex.fetch_open_orders()] == ["b"]
    assert set(await ex.load_markets()) == {SYM, "ETH/USDT"}
    assert await ex.fetch_fees() == {
        SYM: (D("0.001"), D("0.002")),
        "ETH/USDT": (D("0.001"), D("0.002")),
    }
    with pytest.raises(OrderNotFound):
        await ex.fetch_order("a", "ETH/USDT")  # the id exists, but not on that symbol
    await ex.close()


async def test_set_balance_for_tests() -> None:
    ex, _ = make()
    ex.set_balance("ETH", D("1.5"))
    assert (await ex.fetch_balances())["ETH"].free == D("1.5")
    with pytest.raises(ValueError, match="negative"):
        ex.set_balance("ETH", D(-1))


def test_every_port_method_completes_without_suspending() -> None:
    ex, clock = make()
    candle(ex, clock, 0, 100, 101, 99, 100)
    drive(ex.load_markets())
    drive(ex.fetch_quotes([SYM]))
    drive(ex.fetch_ohlcv(SYM, "1m"))
    drive(ex.fetch_order_book(SYM))
    drive(ex.fetch_balances())
    drive(ex.create_order(intent("a")))
    drive(ex.fetch_order("a", SYM))
    drive(ex.fetch_open_orders())
    drive(ex.cancel_order("a", SYM))
    drive(ex.fetch_my_trades())
    drive(ex.fetch_fees())
    drive(ex.close())


@settings(max_examples=60, deadline=None)
@given(
    closes=st.lists(st.sampled_from([100.0, 100.004, 100.01, 99.995, 100, 101.5]), max_size=30),
    inc=st.sampled_from(["0.01", "0.05"]),
    push_at=st.integers(0, 30),
)
def test_remembered_last_and_spread_are_what_the_quote_says(
    closes: list[float], inc: str, push_at: int
) -> None:
    """The board's last and spread come from per-close memos: after any run of repeated,
    alternating and int closes, and around a pushed quote, they are the current quote's."""
    ex, clock = make(markets=[market(price_increment=D(inc))], synthetic_spread_bps=D(10))
    board = drive(ex.fetch_quotes([SYM]))
    for i, c in enumerate(closes):
        if i == push_at:
            ex.set_quote(Quote(symbol=SYM, bid=D(90), ask=D(91), last=D("90.5"), ts=(i + 1) * TF))
        candle(ex, clock, i, c, max(c, 102.0), min(c, 99.0), c)
        q = board[SYM]
        assert board.last(SYM) == q.last
        assert board.spread_bps(SYM) == pytest.approx(float(q.spread_bps), rel=1e-9)
