from __future__ import annotations

import itertools
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from core.models import Fill, Order, OrderIntent, OrderStatus, OrderType, Side
from core.orders import (
    CLIENT_ID_LEN,
    TRANSITIONS,
    IllegalTransition,
    Overfill,
    apply_fill,
    client_order_id,
    is_stale,
    merge_remote,
    new_order,
    transition,
)

D = Decimal
S = OrderStatus
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# The spec's machine, written out independently of core.orders:
# NEW -> OPEN -> PARTIAL -> FILLED | CANCELED | EXPIRED | REJECTED | FAILED.
# A refresh may leave OPEN or PARTIAL where it is; terminal states never move.
EXPECTED = {
    S.NEW: {S.OPEN, S.PARTIAL, S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED, S.FAILED},
    S.OPEN: {S.OPEN, S.PARTIAL, S.FILLED, S.CANCELED, S.EXPIRED},
    S.PARTIAL: {S.PARTIAL, S.FILLED, S.CANCELED, S.EXPIRED},
    S.FILLED: set(),
    S.CANCELED: set(),
    S.EXPIRED: set(),
    S.REJECTED: set(),
    S.FAILED: set(),
}
ALL_PAIRS = list(itertools.product(list(S), list(S)))


def order(**kw: Any) -> Order:
    base: dict[str, Any] = {
        "client_order_id": "vg1",
        "symbol": "SOL/USDT",
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "amount": D(2),
        "price": D(100),
        "status": S.OPEN,
        "created_ms": 1_000,
        "updated_ms": 1_000,
    }
    base.update(kw)
    return Order(**base)


def fill(amount: str, price: str = "100", fee: str = "0", ts: int = 2_000, **kw: Any) -> Fill:
    base: dict[str, Any] = {
        "fill_id": f"f-{amount}-{price}-{ts}",
        "client_order_id": "vg1",
        "symbol": "SOL/USDT",
        "side": Side.BUY,
        "price": D(price),
        "amount": D(amount),
        "fee": D(fee),
        "ts": ts,
    }
    base.update(kw)
    return Fill(**base)


# --------------------------------------------------------------------------- the table


def test_table_matches_the_spec_and_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(S)
    assert {k: set(v) for k, v in TRANSITIONS.items()} == EXPECTED


def test_terminal_states_have_no_way_out_and_live_states_do() -> None:
    for st in S:
        assert (not TRANSITIONS[st]) is st.is_terminal


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_transition_pair(src: OrderStatus, dst: OrderStatus) -> None:
    o = order(status=src, updated_ms=5_000)
    if dst in EXPECTED[src]:
        out = transition(o, dst, 6_000)
        assert out.status is dst
        if dst is src:
            assert out is o  # a refresh that changed nothing is the same value
        else:
            assert out.updated_ms == 6_000
            assert replace(out, status=src, updated_ms=5_000) == o  # nothing else changed
    else:
        with pytest.raises(IllegalTransition) as err:
            transition(o, dst, 6_000)
        assert f"{src} -> {dst}" in str(err.value)
        assert err.value.order is o and err.value.target is dst


def test_transition_never_moves_updated_ms_backwards() -> None:
    o = order(status=S.NEW, updated_ms=9_000)
    assert transition(o, S.OPEN, 1_000).updated_ms == 9_000


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)
    assert issubclass(Overfill, ValueError)


def test_new_order_from_intent() -> None:
    intent = OrderIntent(
        client_order_id="vgabc",
        symbol="SOL/USDT",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        amount=D("1.5"),
        price=D(101),
        strategy="exits",
        cycle_ms=7,
        post_only=True,
        reduce_only=True,
        reason="stop_loss",
    )
    o = new_order(intent, 8_000)
    assert o.status is S.NEW
    assert (o.created_ms, o.updated_ms) == (8_000, 8_000)
    assert (o.client_order_id, o.symbol, o.side, o.amount, o.price) == (
        "vgabc",
        "SOL/USDT",
        Side.SELL,
        D("1.5"),
        D(101),
    )
    assert o.post_only and o.reduce_only and o.strategy == "exits" and o.reason == "stop_loss"
    assert o.filled == 0 and o.fee == 0


# --------------------------------------------------------------------------- fills


def test_fills_accumulate_with_vwap_and_fees_partial_then_filled() -> None:
    o = order(amount=D(2))
    o = apply_fill(o, fill("0.5", "100", "0.05", ts=2_000))
    assert o.status is S.PARTIAL
    assert (o.filled, o.avg_fill_price, o.fee, o.remaining) == (D("0.5"), D(100), D("0.05"), 1.5)
    assert o.updated_ms == 2_000
    o = apply_fill(o, fill("1.5", "102", "0.153", ts=3_000))
    assert o.status is S.FILLED
    assert o.filled == D(2) and o.remaining == 0
    assert o.avg_fill_price == (D(50) + D(153)) / D(2) == D("101.5")
    assert o.fee == D("0.203")
    assert o.updated_ms == 3_000


def test_three_fills_vwap() -> None:
    o = order(amount=D(6))
    for amt, px in (("1", "10"), ("2", "13"), ("3", "9")):
        o = apply_fill(o, fill(amt, px))
    assert o.status is S.FILLED
    assert o.avg_fill_price == D(63) / D(6)


def test_a_single_fill_can_take_new_straight_to_filled() -> None:
    o = apply_fill(order(status=S.NEW), fill("2", "99"))
    assert o.status is S.FILLED and o.avg_fill_price == D(99)


def test_fill_timestamp_never_moves_updated_ms_backwards() -> None:
    o = apply_fill(order(updated_ms=9_000), fill("1", ts=2_000))
    assert o.updated_ms == 9_000


def test_overfill_is_refused() -> None:
    o = apply_fill(order(amount=D(2)), fill("1.5"))
    with pytest.raises(Overfill, match=r"would fill 2\.1 of 2"):
        apply_fill(o, fill("0.6", ts=3_000))


def test_fill_of_another_order_is_refused() -> None:
    with pytest.raises(ValueError, match="belongs to vg2"):
        apply_fill(order(), fill("1", client_order_id="vg2"))


@pytest.mark.parametrize("status", [S.FILLED, S.EXPIRED, S.REJECTED, S.FAILED])
def test_fill_on_a_closed_order_is_refused(status: OrderStatus) -> None:
    o = order(status=status, filled=D(2) if status is S.FILLED else D(0))
    with pytest.raises(IllegalTransition):
        apply_fill(o, fill("0.1"))


def test_fill_racing_a_cancel_is_booked_and_stays_canceled() -> None:
    o = transition(order(amount=D(2)), S.CANCELED, 1_500)
    o = apply_fill(o, fill("0.7", "100", "0.07", ts=1_400))
    assert o.status is S.CANCELED
    assert o.filled == D("0.7") and o.fee == D("0.07") and o.avg_fill_price == D(100)
    assert o.updated_ms == 1_500
    # Even a race that completes the amount leaves it canceled, not filled.
    o = apply_fill(o, fill("1.3", "101", ts=1_450))
    assert o.status is S.CANCELED and o.remaining == 0


def test_canceled_order_still_refuses_overfill() -> None:
    o = transition(order(amount=D(1)), S.CANCELED, 1_500)
    with pytest.raises(Overfill):
        apply_fill(o, fill("1.1"))


@pytest.mark.parametrize(
    "bad",
    [
        {"amount": D(0)},
        {"amount": D(-1)},
        {"fee": D("-0.01")},
        {"price": D(0)},
        {"symbol": "BTC/USDT"},
        {"side": Side.SELL},
    ],
    ids=["zero-amount", "negative-amount", "negative-fee", "zero-price", "symbol", "side"],
)
def test_malformed_fill_is_refused_with_a_clear_error(bad: dict[str, Any]) -> None:
    f = replace(fill("1"), **bad)
    with pytest.raises(ValueError, match=f.fill_id):
        apply_fill(order(), f)


# --------------------------------------------------------------------------- merge_remote


def test_merge_remote_unchanged_returns_local() -> None:
    local = order(status=S.OPEN)
    assert merge_remote(local, replace(local, exchange_order_id="x9")) is local


def test_merge_remote_takes_status_fill_and_exchange_id() -> None:
    local = order(status=S.NEW)
    remote = order(
        status=S.PARTIAL,
        filled=D("0.5"),
        avg_fill_price=D("99.5"),
        fee=D("0.04"),
        exchange_order_id="E1",
        updated_ms=4_000,
    )
    out = merge_remote(local, remote)
    assert out.status is S.PARTIAL
    assert (out.filled, out.avg_fill_price, out.fee) == (D("0.5"), D("99.5"), D("0.04"))
    assert out.exchange_order_id == "E1" and out.updated_ms == 4_000
    # Later refresh with no exchange id keeps ours; fee never goes down.
    later = order(status=S.FILLED, filled=D(2), avg_fill_price=D(100), fee=D("0.01"))
    out2 = merge_remote(out, later)
    assert out2.status is S.FILLED and out2.filled == 2
    assert out2.exchange_order_id == "E1"
    assert out2.fee == D("0.04")
    assert out2.updated_ms == 4_000


def test_merge_remote_keeps_our_vwap_when_remote_reports_no_fill() -> None:
    local = order(status=S.OPEN, avg_fill_price=D(0))
    out = merge_remote(local, order(status=S.CANCELED, avg_fill_price=D(5)))
    assert out.status is S.CANCELED and out.avg_fill_price == 0


def test_merge_remote_refuses_an_impossible_move() -> None:
    with pytest.raises(IllegalTransition, match="FILLED -> OPEN"):
        merge_remote(order(status=S.FILLED, filled=D(2)), order(status=S.OPEN))


def test_merge_remote_refuses_a_shrinking_fill() -> None:
    local = order(status=S.PARTIAL, filled=D(1))
    with pytest.raises(ValueError, match="below our 1"):
        merge_remote(local, order(status=S.PARTIAL, filled=D("0.5")))


def test_merge_remote_accepts_a_late_fill_report_on_a_canceled_order() -> None:
    local = order(status=S.CANCELED, filled=D("0.5"), avg_fill_price=D(100))
    remote = order(status=S.CANCELED, filled=D("0.8"), avg_fill_price=D("100.5"))
    out = merge_remote(local, remote)
    assert out.status is S.CANCELED and out.filled == D("0.8")


def test_merge_remote_refuses_another_orders_state() -> None:
    other = order(client_order_id="vg2", symbol="BTC/USDT", status=S.PARTIAL, filled=D(1))
    with pytest.raises(ValueError, match="vg2"):
        merge_remote(order(), other)


def test_merge_remote_refuses_an_overfill() -> None:
    with pytest.raises(Overfill):
        merge_remote(order(amount=D(2)), order(status=S.FILLED, filled=D(5)))


# --------------------------------------------------------------------------- staleness


@pytest.mark.parametrize("status", [S.NEW, S.OPEN, S.PARTIAL])
def test_live_order_is_stale_at_ttl(status: OrderStatus) -> None:
    o = order(status=status, created_ms=1_000)
    assert not is_stale(o, 1_000, 60_000)
    assert not is_stale(o, 60_999, 60_000)
    assert is_stale(o, 61_000, 60_000)


@pytest.mark.parametrize("status", [S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED, S.FAILED])
def test_closed_order_is_never_stale(status: OrderStatus) -> None:
    assert not is_stale(order(status=status, created_ms=0), 10**12, 1)


def test_staleness_counts_from_creation_not_last_update() -> None:
    o = order(status=S.PARTIAL, created_ms=0, updated_ms=59_000)
    assert is_stale(o, 60_000, 60_000)


# --------------------------------------------------------------------------- client order ids

BASE_ID_ARGS: dict[str, Any] = {
    "strategy": "rules",
    "symbol": "SOL/USDT",
    "side": Side.BUY,
    "amount": D("1.25"),
    "cycle_ms": 1_704_067_200_000,
}


def coid(**kw: Any) -> str:
    args = {**BASE_ID_ARGS, **kw}
    return client_order_id(
        args["strategy"], args["symbol"], args["side"], args["amount"], args["cycle_ms"]
    )


def test_client_order_id_is_deterministic_and_venue_safe() -> None:
    a, b = coid(), coid()
    assert a == b
    assert len(a) == CLIENT_ID_LEN == 32
    assert ID_RE.fullmatch(a)
    assert a.startswith("vg")


@pytest.mark.parametrize(
    "change",
    [
        {"strategy": "ema_cross"},
        {"symbol": "SOL/USDC"},
        {"side": Side.SELL},
        {"amount": D("1.26")},
        {"amount": D("0.00000001")},
        {"cycle_ms": BASE_ID_ARGS["cycle_ms"] + 1},
    ],
)
def test_client_order_id_differs_when_any_input_differs(change: dict[str, Any]) -> None:
    assert coid(**change) != coid()


def test_client_order_id_treats_equal_amounts_as_equal() -> None:
    # The same size written differently is the same decision, hence the same id.
    assert coid(amount=D("1.250")) == coid(amount=D("1.25"))
    assert coid(amount=D("100")) == coid(amount=D("1E+2"))


def test_client_order_id_is_safe_for_odd_inputs() -> None:
    out = coid(strategy="weird name/é|\n", symbol="A:B", amount=D("123456789.123456789"))
    assert ID_RE.fullmatch(out) and len(out) == 32


def test_client_order_id_has_no_separator_collisions() -> None:
    assert coid(strategy="a|b", symbol="c") != coid(strategy="a", symbol="b|c")
