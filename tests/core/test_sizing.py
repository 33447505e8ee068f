from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from core.models import Market
from core.reasons import RiskReason
from core.sizing import (
    Size,
    ceil_to,
    fee_for,
    floor_to,
    min_buy_quantity,
    on_grid,
    size_buy,
    size_sell,
)

D = Decimal
FEE = D("0.001")


def market(**kw: Any) -> Market:
    base: dict[str, Any] = {
        "symbol": "SOL/USDT",
        "base": "SOL",
        "quote": "USDT",
        "price_increment": D("0.01"),
        "amount_increment": D("0.001"),
        "min_size": D("0.01"),
        "min_notional": D(5),
    }
    base.update(kw)
    return Market(**base)


# --------------------------------------------------------------------------- grid helpers


@pytest.mark.parametrize(
    ("x", "step", "down", "up"),
    [
        ("1.2345", "0.01", "1.23", "1.24"),
        ("1.23", "0.01", "1.23", "1.23"),  # already on the grid: unchanged
        ("7", "0.5", "7.0", "7.0"),
        ("7.2", "0.5", "7.0", "7.5"),
        ("0.000000015", "0.00000001", "0.00000001", "0.00000002"),
        ("0", "0.1", "0", "0"),
        ("123456789.987654321", "1", "123456789", "123456790"),
        ("-1.5", "1", "-2", "-1"),
        ("10", "3", "9", "12"),  # a step that is not a power of ten
    ],
)
def test_floor_and_ceil(x: str, step: str, down: str, up: str) -> None:
    assert floor_to(D(x), D(step)) == D(down)
    assert ceil_to(D(x), D(step)) == D(up)
    assert on_grid(floor_to(D(x), D(step)), D(step))
    assert on_grid(ceil_to(D(x), D(step)), D(step))


@pytest.mark.parametrize(
    ("x", "step", "expected"),
    [
        ("1.23", "0.01", True),
        ("1.230000", "0.01", True),
        ("1.235", "0.01", False),
        ("7.5", "0.5", True),
        ("7.25", "0.5", False),
        ("0", "0.001", True),
        ("9", "3", True),
        ("10", "3", False),
    ],
)
def test_on_grid(x: str, step: str, expected: bool) -> None:
    assert on_grid(D(x), D(step)) is expected


def test_floor_to_never_exceeds_x_with_many_digits() -> None:
    x = D("1.99999999999999999999999999999")  # 30 significant digits
    assert floor_to(x, D(1)) <= x


# --------------------------------------------------------------------------- fees


def test_fee_for() -> None:
    assert fee_for(D(1000), D("0.001")) == D(1)
    assert fee_for(D(1000), D(0)) == 0
    assert fee_for(D(0), D("0.006")) == 0


def test_fee_for_refuses_negative_rate() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        fee_for(D(100), D("-0.0001"))


# --------------------------------------------------------------------------- min quantity


def test_min_buy_quantity_is_post_fee() -> None:
    m = market(min_size=D(0), min_notional=D(5))
    q = min_buy_quantity(m, D(20), FEE)
    # 5 / 20 = 0.25 would leave 0.25 * 20 * 0.999 = 4.995 after the fee: not sellable later.
    assert q == D("0.251")
    assert q * D(20) * (1 - FEE) >= D(5)
    assert (q - m.amount_increment) * D(20) * (1 - FEE) < D(5)


def test_min_buy_quantity_uses_min_size_when_larger() -> None:
    assert min_buy_quantity(market(min_size=D(1), min_notional=D(5)), D(20), FEE) == D(1)


def test_min_buy_quantity_rounds_an_off_grid_min_size_up() -> None:
    q = min_buy_quantity(market(min_size=D("0.0105"), min_notional=D(0)), D(20), FEE)
    assert q == D("0.011")


def test_min_buy_quantity_is_at_least_one_increment() -> None:
    m = market(min_size=D(0), min_notional=D(0))
    assert min_buy_quantity(m, D(20), FEE) == m.amount_increment


# --------------------------------------------------------------------------- size_buy


def test_size_buy_spends_at_most_the_budget_fee_included() -> None:
    s = size_buy(budget=D(100), hard_cap=D(100), price=D(20), market=market(), fee_rate=FEE)
    assert s.reason == RiskReason.APPROVED
    assert s.quantity == D("4.995")  # floor(100 / 20.02) on the 0.001 grid
    assert s.notional == D("99.900")
    assert s.cost == s.notional * (1 + FEE) == D("99.9999")
    assert s.cost <= 100
    # One more increment would break the budget: the floor is tight.
    assert (s.quantity + D("0.001")) * D(20) * (1 + FEE) > 100


def test_size_buy_with_zero_fee_uses_the_whole_budget_when_on_grid() -> None:
    s = size_buy(budget=D(100), hard_cap=D(100), price=D(20), market=market(), fee_rate=D(0))
    assert (s.quantity, s.notional, s.cost) == (D(5), D(100), D(100))


def test_size_buy_rounds_up_to_the_minimum_within_hard_cap() -> None:
    s = size_buy(budget=D(1), hard_cap=D(10), price=D(20), market=market(), fee_rate=FEE)
    assert s.reason == RiskReason.APPROVED
    assert s.quantity == D("0.251")
    assert s.cost == D("0.251") * D(20) * (1 + FEE) == D("5.025020")
    assert s.cost > D(1)  # above the budget ...
    assert s.cost <= D(10)  # ... but within the hard cap
    assert s.notional * (1 - FEE) >= market().min_notional


def test_size_buy_rounds_up_exactly_to_the_hard_cap() -> None:
    cost = D("0.251") * D(20) * (1 + FEE)
    s = size_buy(budget=D(1), hard_cap=cost, price=D(20), market=market(), fee_rate=FEE)
    assert s.reason == RiskReason.APPROVED and s.cost == cost


def test_size_buy_refuses_when_hard_cap_cannot_pay_the_minimum() -> None:
    cost = D("0.251") * D(20) * (1 + FEE)
    s = size_buy(
        budget=D(1), hard_cap=cost - D("0.000001"), price=D(20), market=market(), fee_rate=FEE
    )
    assert s == Size(D(0), D(0), D(0), RiskReason.BELOW_MIN_NOTIONAL)


def test_size_buy_when_budget_just_covers_the_minimum() -> None:
    cost = D("0.251") * D(20) * (1 + FEE)
    s = size_buy(budget=cost, hard_cap=cost, price=D(20), market=market(), fee_rate=FEE)
    assert s.reason == RiskReason.APPROVED and s.quantity == D("0.251")


@pytest.mark.parametrize(("budget", "price"), [(D(0), D(20)), (D(-5), D(20)), (D(100), D(0))])
def test_size_buy_refuses_non_positive_inputs(budget: Decimal, price: Decimal) -> None:
    s = size_buy(budget=budget, hard_cap=D(1000), price=price, market=market(), fee_rate=FEE)
    assert s.reason == RiskReason.BELOW_MIN_NOTIONAL
    assert (s.quantity, s.notional, s.cost) == (0, 0, 0)


def test_size_buy_respects_min_size_on_an_expensive_lot() -> None:
    m = market(min_size=D(1), min_notional=D(0), amount_increment=D(1))
    ok = size_buy(budget=D(5), hard_cap=D(30), price=D(20), market=m, fee_rate=FEE)
    assert ok.quantity == D(1) and ok.cost == D("20.020")
    refused = size_buy(budget=D(5), hard_cap=D(20), price=D(20), market=m, fee_rate=FEE)
    assert refused.reason == RiskReason.BELOW_MIN_NOTIONAL


def test_size_buy_quantity_is_on_grid_for_awkward_increments() -> None:
    m = market(amount_increment=D("0.25"), min_size=D("0.25"), min_notional=D(1))
    s = size_buy(budget=D(77), hard_cap=D(77), price=D("13.37"), market=m, fee_rate=D("0.0025"))
    assert on_grid(s.quantity, D("0.25"))
    assert s.quantity == D("5.5")  # 77 / (13.37 * 1.0025) = 5.744... floors to 5.50
    assert s.cost <= 77


# --------------------------------------------------------------------------- size_sell


def test_size_sell_rounds_down_and_reports_proceeds_after_fee() -> None:
    s = size_sell(quantity=D("1.23456"), price=D(20), market=market(), fee_rate=FEE)
    assert s.reason == RiskReason.APPROVED
    assert s.quantity == D("1.234")
    assert s.notional == D("24.680")
    assert s.cost == s.notional * (1 - FEE)


def test_size_sell_at_exactly_the_minimums() -> None:
    m = market(min_size=D("0.25"), min_notional=D(5))
    s = size_sell(quantity=D("0.25"), price=D(20), market=m, fee_rate=FEE)
    assert s.reason == RiskReason.APPROVED and s.notional == D(5)


@pytest.mark.parametrize(
    ("qty", "price", "why"),
    [
        ("0", "20", "nothing to sell"),
        ("0.0009", "20", "rounds down to zero"),
        ("0.009", "20000", "below min_size though worth 180"),
        ("0.249", "20", "below min_notional (4.98)"),
        ("-1", "20", "negative"),
    ],
)
def test_size_sell_refuses_dust(qty: str, price: str, why: str) -> None:
    s = size_sell(quantity=D(qty), price=D(price), market=market(), fee_rate=FEE)
    assert s == Size(D(0), D(0), D(0), RiskReason.DUST), why
