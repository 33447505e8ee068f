from __future__ import annotations

from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from core.models import Fill, Order, OrderStatus, OrderType, Side
from core.portfolio import (
    Portfolio,
    PortfolioError,
    apply_fill,
    exposure,
    update_peaks,
    value,
)

D = Decimal
_ids = count()
THEMES = {"SOL": "layer1", "ETH": "layer1", "BTC": "store"}


def fill(side: Side, amount: str, price: str, fee: str = "0", sym: str = "SOL/USDT") -> Fill:
    n = next(_ids)
    return Fill(f"f{n}", f"c{n}", sym, side, D(price), D(amount), D(fee), 1_000 + n)


def buy(amount: str, price: str, fee: str = "0", sym: str = "SOL/USDT") -> Fill:
    return fill(Side.BUY, amount, price, fee, sym)


def sell(amount: str, price: str, fee: str = "0", sym: str = "SOL/USDT") -> Fill:
    return fill(Side.SELL, amount, price, fee, sym)


def book(p: Portfolio, *fills: Fill, strategy: str = "") -> Portfolio:
    for f in fills:
        p = apply_fill(p, f, strategy=strategy).portfolio
    return p


def order(**kw: Any) -> Order:
    base: dict[str, Any] = {
        "client_order_id": "o1",
        "symbol": "ETH/USDT",
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "amount": D(2),
        "price": D(50),
        "status": OrderStatus.OPEN,
        "created_ms": 0,
        "updated_ms": 0,
        "strategy": "rules",
    }
    base.update(kw)
    return Order(**base)


def base_of(sym: str) -> str:
    return sym.split("/")[0]


def theme_of(base: str) -> str:
    return THEMES.get(base, "unassigned")


# --------------------------------------------------------------------------- buys


def test_first_buy_opens_a_position() -> None:
    f = buy("2", "100", "0.2")
    b = apply_fill(Portfolio(cash=D(1000)), f, strategy="rules")
    pos = b.portfolio.positions["SOL/USDT"]
    assert (pos.quantity, pos.avg_entry_price, pos.entry_fees) == (D(2), D(100), D("0.2"))
    assert pos.peak_price == D(100) and pos.opened_ms == f.ts and pos.strategy == "rules"
    assert b.portfolio.cash == D("799.8")
    assert b.portfolio.fees_paid == D("0.2")
    assert b.realized == 0 and not b.closed


def test_weighted_average_entry_across_buys() -> None:
    first = buy("1", "100", "0.1")
    p = book(Portfolio(cash=D(1000)), first, buy("3", "120", "0.36"))
    pos = p.positions["SOL/USDT"]
    assert pos.quantity == D(4)
    assert pos.avg_entry_price == D(115)  # (100 + 360) / 4
    assert pos.entry_fees == D("0.46")
    assert pos.peak_price == D(120)
    assert pos.opened_ms == first.ts  # the first buy's time is kept
    assert p.cash == D(1000) - D(460) - D("0.46")


def test_adding_keeps_the_first_strategy_and_open_time() -> None:
    p = book(Portfolio(cash=D(1000)), buy("1", "100"), strategy="rules")
    first = p.positions["SOL/USDT"]
    p = apply_fill(p, buy("1", "90"), strategy="ema_cross").portfolio
    pos = p.positions["SOL/USDT"]
    assert pos.strategy == "rules" and pos.opened_ms == first.opened_ms
    assert pos.peak_price == D(100)  # a lower buy does not lower the peak


# --------------------------------------------------------------------------- sells


def test_partial_then_full_sell_realizes_pnl_with_proportional_entry_fees() -> None:
    p = book(Portfolio(cash=D(1000)), buy("1", "100", "0.1"), buy("3", "120", "0.36"))

    b1 = apply_fill(p, sell("1", "130", "0.13"))
    # 1 of 4 sold carries a quarter of the entry fees (0.115) plus its own fee.
    assert b1.realized == D(15) - D("0.115") - D("0.13") == D("14.755")
    assert not b1.closed
    pos = b1.portfolio.positions["SOL/USDT"]
    assert pos.quantity == D(3) and pos.avg_entry_price == D(115)
    assert pos.entry_fees == D("0.345")
    assert b1.portfolio.cash == p.cash + D(130) - D("0.13")
    assert b1.portfolio.realized_pnl == D("14.755")

    b2 = apply_fill(b1.portfolio, sell("3", "110", "0.33"))
    assert b2.realized == D(-15) - D("0.345") - D("0.33") == D("-15.675")
    assert b2.closed
    assert "SOL/USDT" not in b2.portfolio.positions
    # All fees and price moves end up in realized PnL, and in cash, identically.
    assert b2.portfolio.realized_pnl == D("-0.920")
    assert b2.portfolio.cash == D(1000) + b2.portfolio.realized_pnl
    assert b2.portfolio.fees_paid == D("0.1") + D("0.36") + D("0.13") + D("0.33")


def test_round_trip_at_the_same_price_loses_exactly_the_fees() -> None:
    p = book(Portfolio(cash=D(500)), buy("0.75", "40", "0.03"))
    b = apply_fill(p, sell("0.75", "40", "0.06"))
    assert b.realized == D("-0.09")
    assert b.portfolio.cash == D(500) - D("0.09")
    assert b.closed and not b.portfolio.positions


def test_selling_more_than_held_is_refused() -> None:
    p = book(Portfolio(cash=D(1000)), buy("1", "100"))
    with pytest.raises(PortfolioError, match="only 1 is held"):
        apply_fill(p, sell("1.0001", "100"))


def test_selling_with_no_position_is_refused() -> None:
    with pytest.raises(PortfolioError, match="no position"):
        apply_fill(Portfolio(cash=D(1000)), sell("1", "100"))
    p = book(Portfolio(cash=D(1000)), buy("1", "100", sym="BTC/USDT"))
    with pytest.raises(PortfolioError, match="no position"):
        apply_fill(p, sell("1", "100"))


@pytest.mark.parametrize(
    ("amount", "price", "fee", "match"),
    [
        ("0", "100", "0", "must be positive"),
        ("-1", "100", "0", "must be positive"),
        ("1", "0", "0", "must be positive"),
        ("1", "100", "-0.01", "negative fee"),
    ],
)
def test_malformed_fills_are_refused(amount: str, price: str, fee: str, match: str) -> None:
    with pytest.raises(PortfolioError, match=match):
        apply_fill(Portfolio(cash=D(1000)), buy(amount, price, fee))


def test_apply_fill_never_mutates_its_input() -> None:
    p0 = Portfolio(cash=D(1000))
    p1 = book(p0, buy("1", "100", "0.1"))
    p2 = apply_fill(p1, sell("0.5", "110")).portfolio
    assert p0.positions == {} and p0.cash == 1000
    assert p1.positions["SOL/USDT"].quantity == 1
    assert p2.positions["SOL/USDT"].quantity == D("0.5")
    with pytest.raises(TypeError):
        p2.positions["X"] = p2.positions["SOL/USDT"]  # type: ignore[index]


def test_positions_in_other_symbols_are_untouched() -> None:
    p = book(Portfolio(cash=D(1000)), buy("1", "100"), buy("2", "10", sym="BTC/USDT"))
    p = apply_fill(p, sell("1", "105")).portfolio
    assert set(p.positions) == {"BTC/USDT"}
    assert p.positions["BTC/USDT"].quantity == 2


# --------------------------------------------------------------------------- peaks and value


def test_update_peaks_only_raises() -> None:
    p = book(Portfolio(cash=D(1000)), buy("1", "100"), buy("1", "10", sym="BTC/USDT"))
    up = update_peaks(p, {"SOL/USDT": D(130), "BTC/USDT": D(9), "ETH/USDT": D(1)})
    assert up.positions["SOL/USDT"].peak_price == D(130)
    assert up.positions["BTC/USDT"].peak_price == D(10)
    assert p.positions["SOL/USDT"].peak_price == D(100)  # input untouched
    assert update_peaks(up, {"SOL/USDT": D(120)}) is up  # nothing to raise: same value
    assert update_peaks(up, {}) is up


def test_value_marks_to_market() -> None:
    p = book(Portfolio(cash=D(1000)), buy("2", "100", "0.2"), buy("1", "10", "0.01", "BTC/USDT"))
    v = value(p, {"SOL/USDT": D(110), "BTC/USDT": D(8)})
    assert v.position_value == D(228)
    assert v.by_symbol == {"SOL/USDT": D(220), "BTC/USDT": D(8)}
    assert v.equity == p.cash + D(228)
    # Unrealized is net of the entry fees still carried by the positions.
    assert v.unrealized == (D(220) - D(200) - D("0.2")) + (D(8) - D(10) - D("0.01"))
    assert v.equity == D(1000) + p.realized_pnl + v.unrealized


def test_value_without_a_mark_uses_entry_price() -> None:
    p = book(Portfolio(cash=D(1000)), buy("2", "100", "0.2"))
    v = value(p, {})
    assert v.position_value == D(200) and v.unrealized == D("-0.2")


def test_value_of_an_empty_portfolio() -> None:
    v = value(Portfolio(cash=D(42)), {"SOL/USDT": D(1)})
    assert (v.equity, v.unrealized, v.position_value) == (D(42), 0, 0)


# --------------------------------------------------------------------------- exposure


def test_exposure_by_asset_theme_and_strategy_with_pending_buys() -> None:
    p = book(Portfolio(cash=D(10_000)), buy("2", "100"), strategy="rules")
    p = book(p, buy("0.01", "30000", sym="BTC/USDT"), strategy="ema_cross")
    orders = [
        order(amount=D(2), filled=D("0.5"), price=D(50)),  # 1.5 left x 50 = 75
        order(client_order_id="o2", side=Side.SELL, symbol="SOL/USDT", price=D(200)),
        order(client_order_id="o3", status=OrderStatus.CANCELED, price=D(999)),
        order(client_order_id="o4", status=OrderStatus.NEW, symbol="DOGE/USDT", price=D(1)),
        order(client_order_id="o5", status=OrderStatus.FILLED, filled=D(2)),
    ]
    ex = exposure(
        p,
        {"SOL/USDT": D(110), "ETH/USDT": D(60)},
        orders,
        base_of=base_of,
        theme_of=theme_of,
    )
    # SOL at its mark 220, BTC at entry (no mark) 300, ETH pending 75, DOGE pending 2.
    assert ex.by_asset == {"SOL": D(220), "BTC": D(300), "ETH": D(75), "DOGE": D(2)}
    assert ex.by_theme == {"layer1": D(295), "store": D(300), "unassigned": D(2)}
    assert ex.by_strategy == {"rules": D(297), "ema_cross": D(300)}
    assert ex.total == D(597)
    assert ex.pending_buy_cost == D(77)


def test_exposure_ignores_sells_and_closed_orders() -> None:
    orders = [
        order(side=Side.SELL),
        *(order(status=s) for s in OrderStatus if s.is_terminal),
    ]
    ex = exposure(Portfolio(cash=D(1)), {}, orders, base_of=base_of, theme_of=theme_of)
    assert ex.total == 0 and ex.pending_buy_cost == 0 and ex.by_asset == {}


def test_exposure_counts_a_pending_market_buy_at_the_mark() -> None:
    mkt = order(order_type=OrderType.MARKET, price=None, status=OrderStatus.NEW)
    ex = exposure(
        Portfolio(cash=D(1)), {"ETH/USDT": D(60)}, [mkt], base_of=base_of, theme_of=theme_of
    )
    assert ex.total == D(120) and ex.pending_buy_cost == D(120)


def test_exposure_never_counts_a_pending_market_buy_as_free() -> None:
    mkt = order(order_type=OrderType.MARKET, price=None, status=OrderStatus.NEW)
    ex = exposure(
        Portfolio(cash=D(1)),
        {},
        [mkt],
        base_of=base_of,
        theme_of=theme_of,
        price_of=lambda s: D(2000),  # the quote's ask, as run_cycle passes it
    )
    assert ex.total > 0


def test_buy_fee_taken_in_base_shrinks_the_holding_not_the_cash() -> None:
    """Binance charges a buy's fee in the coin bought: 1 BTC filled, 0.001 BTC kept."""
    f = Fill("f1", "c1", "BTC/USDT", Side.BUY, D(100), D(1), D("0.1"), 1, base_fee=D("0.001"))
    assert f.quote_fee_paid == 0
    b = apply_fill(Portfolio(cash=D(1000)), f)
    pos = b.portfolio.positions["BTC/USDT"]
    assert pos.quantity == D("0.999")
    assert pos.cost_basis == D(100) and pos.entry_fees == 0
    assert b.portfolio.cash == D(900)
    # Selling what is held at the entry price loses exactly the fee (0.001 BTC = 0.1 USDT).
    s = Fill("f2", "c2", "BTC/USDT", Side.SELL, D(100), D("0.999"), D(0), 2)
    out = apply_fill(b.portfolio, s)
    assert out.realized == D("-0.1")
    assert out.portfolio.cash == D("999.9")


def test_base_fee_on_a_sell_is_refused() -> None:
    p = apply_fill(
        Portfolio(cash=D(1000)), Fill("f1", "c", "X/USDT", Side.BUY, D(1), D(10), D(0), 1)
    ).portfolio
    bad = Fill("f2", "c", "X/USDT", Side.SELL, D(1), D(5), D("0.01"), 2, base_fee=D("0.01"))
    with pytest.raises(PortfolioError):
        apply_fill(p, bad)
