"""Exit rules: stop loss, take profit, trailing stop, max hold; precedence; exact boundaries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import ExitConfig
from core.exits import ExitDecision, evaluate_exit
from core.models import Position
from core.reasons import ExitReason as X
from tests.core.helpers import T0, Num, dec, position

RULES = ExitConfig()  # stop -10%, take profit +20%, trailing 5% after +3%, max hold 7 days
WEEK_MS = 7 * 24 * 60 * 60_000
NOW = T0 + 60_000


def ex(
    mark: Num,
    *,
    entry: Num = 100,
    peak: Num | None = None,
    now_ms: int = NOW,
    rules: ExitConfig = RULES,
    pos: Position | None = None,
) -> ExitDecision | None:
    p = pos if pos is not None else position("X/USDT", 1, entry, peak=peak)
    return evaluate_exit(p, dec(mark), now_ms, rules)


def reason(mark: Num, **kw: object) -> X | None:
    d = ex(mark, **kw)  # type: ignore[arg-type]
    return d.reason if d is not None else None


def test_a_healthy_position_stays() -> None:
    assert ex(101) is None
    assert ex(95, peak=101) is None


# --------------------------------------------------------------------------- stop loss


def test_stop_loss_at_exactly_minus_ten_percent() -> None:
    d = ex(90)
    assert d == ExitDecision("X/USDT", X.STOP_LOSS, "pnl -10.00%")


def test_stop_loss_not_a_hair_above() -> None:
    assert ex("90.00000001") is None


def test_stop_loss_below() -> None:
    assert reason(50) is X.STOP_LOSS


@pytest.mark.parametrize(
    ("entry", "mark"),
    [
        ("0.3", "0.27"),
        ("33.33", "29.997"),
        ("7", "6.3"),
        ("0.00001234", "0.000011106"),
        ("61234.5", "55111.05"),
    ],
)
def test_stop_loss_boundary_is_exact_for_awkward_prices(entry: str, mark: str) -> None:
    assert reason(mark, entry=entry) is X.STOP_LOSS
    assert reason(Decimal(mark) + Decimal("1e-12"), entry=entry) is None


def test_configured_stop() -> None:
    rules = ExitConfig(stop_loss_pct=Decimal("-2.5"))
    assert reason("97.5", rules=rules) is X.STOP_LOSS
    assert reason("97.51", rules=rules) is None


# --------------------------------------------------------------------------- take profit


def test_take_profit_at_exactly_plus_twenty_percent() -> None:
    assert ex(120) == ExitDecision("X/USDT", X.TAKE_PROFIT, "pnl 20.00%")


def test_take_profit_not_just_below() -> None:
    assert ex("119.99") is None


def test_take_profit_disabled() -> None:
    assert ex(500, rules=ExitConfig(take_profit_pct=None, trailing_stop_pct=None)) is None


# --------------------------------------------------------------------------- trailing stop


def test_trailing_stop_at_exactly_five_percent_off_the_peak() -> None:
    d = ex("104.5", peak=110)
    assert d is not None and d.reason is X.TRAILING_STOP
    assert d.detail == "-5.00% off peak 110"


def test_trailing_stop_not_just_above() -> None:
    assert ex("104.51", peak=110) is None


def test_trailing_stop_arms_only_after_the_activation_run_up() -> None:
    # Peak 2.9% above entry: a 5% fall from it is not a trailing stop yet.
    assert ex("97.755", peak="102.9") is None
    # Peak exactly 3% above entry: armed.
    assert reason("97.85", peak=103) is X.TRAILING_STOP


def test_trailing_activation_zero_arms_at_once() -> None:
    rules = ExitConfig(trailing_activation_pct=Decimal(0))
    assert reason(95, rules=rules) is X.TRAILING_STOP  # peak = entry = 100
    assert reason("95.01", rules=rules) is None


def test_trailing_stop_disabled() -> None:
    assert ex(95, peak=150, rules=ExitConfig(trailing_stop_pct=None)) is None


def test_the_mark_counts_as_the_peak_when_it_is_higher() -> None:
    # The stored peak lags; a new high is not a fall from the old peak.
    assert ex(110, peak=100) is None


# --------------------------------------------------------------------------- max hold


def test_max_hold_at_exactly_seven_days() -> None:
    d = ex(100, now_ms=T0 + WEEK_MS)
    assert d == ExitDecision("X/USDT", X.MAX_HOLD, "held 10080 min")


def test_max_hold_not_a_millisecond_before() -> None:
    assert ex(100, now_ms=T0 + WEEK_MS - 1) is None


def test_max_hold_disabled() -> None:
    assert ex(100, now_ms=T0 + 100 * WEEK_MS, rules=ExitConfig(max_holding_minutes=None)) is None


# --------------------------------------------------------------------------- precedence

LATE = T0 + WEEK_MS


@pytest.mark.parametrize(
    ("mark", "peak", "now_ms", "expected"),
    [
        (90, 120, LATE, X.STOP_LOSS),  # stop, trailing and max hold all hit
        (90, None, LATE, X.STOP_LOSS),  # stop and max hold
        ("123.5", 130, LATE, X.TRAILING_STOP),  # trailing, take profit and max hold
        (120, None, LATE, X.TAKE_PROFIT),  # take profit and max hold
        (100, None, LATE, X.MAX_HOLD),
    ],
)
def test_precedence(mark: Num, peak: Num | None, now_ms: int, expected: X) -> None:
    assert reason(mark, peak=peak, now_ms=now_ms) is expected


# --------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize(("qty", "entry"), [(0, 100), (-1, 100), (1, 0)])
def test_no_decision_for_an_empty_or_unpriced_position(qty: int, entry: int) -> None:
    assert ex(1, pos=position("X/USDT", qty, entry)) is None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    entry=st.decimals("0.00000001", "100000", places=8),
    move=st.decimals("-0.5", "0.5", places=6),
)
def test_stop_loss_fires_exactly_when_the_loss_reaches_ten_percent(
    entry: Decimal, move: Decimal
) -> None:
    mark = entry * (1 + move)
    d = evaluate_exit(position("X/USDT", 1, entry, peak=entry), mark, NOW, RULES)
    is_stop = d is not None and d.reason is X.STOP_LOSS
    assert is_stop == (mark <= entry * Decimal("0.9"))
