"""Record shapes of shadow mode: what ShadowExchange remembers about an order (`_Entry`) and
the `shadow_order` / `shadow_fill` records built from it. Pure functions over plain values; the
exchange calls in shadow.py decide when a record is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from core.models import BPS, ZERO, Fill, Order, OrderIntent, OrderStatus, Quote, Side
from core.orders import new_order

BPS_QUANTUM = Decimal("0.01")
REFUSED = "REFUSED"  # sim status: the sim would not take the order (reason in sim.reason)
NOT_PLACED = "NOT_PLACED"  # sim status: never placed (the sim was not built yet)


@dataclass(slots=True)
class _Entry:
    """What the shadow remembers about one order until its record is written."""

    intent: OrderIntent
    submitted_ms: int
    intended: Decimal | None
    quote: Quote | None
    sim_status: str = ""  # "" while placed in the sim, else REFUSED / NOT_PLACED
    sim_reason: str = ""
    sim_first_fill_ts: int | None = None
    ack_latency_ms: int | None = None
    ack_filled: bool = False
    live: Order | None = None
    live_error: str = ""
    fills: dict[str, Fill] = field(default_factory=dict)
    ended_ms: int | None = None  # when the live end was first seen


# ---- record shapes ---------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _s(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def slippage_bps(side: Side, price: Decimal, ref: Decimal) -> Decimal:
    """How much worse than `ref` the price is for us, in bps (buy higher / sell lower > 0)."""
    diff = price - ref if side is Side.BUY else ref - price
    return (diff / ref * BPS).quantize(BPS_QUANTUM, ROUND_HALF_UP)


def _synthetic(e: _Entry, status: OrderStatus) -> Order:
    """The live order as far as we know it, when the venue never answered with one."""
    return replace(new_order(e.intent, e.submitted_ms), status=status, reason=e.live_error)


def _live_numbers(e: _Entry) -> tuple[Decimal, Decimal | None, Decimal, int | None]:
    """filled, avg price, fee, first fill ts: from the fills when they cover the order's
    filled amount (orders often carry no fee), else from the order as the venue reported it."""
    assert e.live is not None
    fills = list(e.fills.values())
    qty = sum((f.amount for f in fills), ZERO)
    first_ts = min((f.ts for f in fills), default=None)
    if fills and qty >= e.live.filled:
        notional = sum((f.price * f.amount for f in fills), ZERO)
        return qty, notional / qty, sum((f.fee for f in fills), ZERO), first_ts
    o = e.live
    avg = o.avg_fill_price if o.filled > 0 and o.avg_fill_price > 0 else None
    return o.filled, avg, max(o.fee, sum((f.fee for f in fills), ZERO)), first_ts


def _order_data(e: _Entry, sim: Order | None) -> dict[str, Any]:
    assert e.live is not None
    i = e.intent
    filled, avg, fee, first_ts = _live_numbers(e)
    if e.ack_filled and e.ack_latency_ms is not None:
        first_fill: int | None = e.ack_latency_ms  # it had filled before the answer came back
    elif first_ts is not None and filled > 0:
        first_fill = max(0, first_ts - e.submitted_ms)
    else:
        first_fill = None
    sim_avg = sim.avg_fill_price if sim is not None and sim.filled > 0 else None
    ref = e.intended
    slip = slippage_bps(i.side, avg, ref) if avg is not None and ref else None
    sim_slip = slippage_bps(i.side, sim_avg, ref) if sim_avg is not None and ref else None
    gap: Decimal | None = None
    if slip is not None and sim_slip is not None:
        gap = slip - sim_slip  # both from the intended price, so they subtract exactly
    elif avg is not None and sim_avg is not None:
        gap = slippage_bps(i.side, avg, sim_avg)  # no intended price: the sim's is the yardstick
    sim_first = e.sim_first_fill_ts
    q = e.quote
    return {
        "client_order_id": i.client_order_id,
        "symbol": i.symbol,
        "side": i.side.value,
        "type": i.order_type.value,
        "post_only": i.post_only,
        "strategy": i.strategy,
        "submitted_ms": e.submitted_ms,
        "ended_ms": e.ended_ms,
        "intended_price": _s(ref),
        "intended_qty": str(i.amount),
        "quote": None if q is None else {"bid": str(q.bid), "ask": str(q.ask), "ts": q.ts},
        "live": {
            "status": e.live.status.value,
            "filled": str(filled),
            "avg_price": _s(avg),
            "fee": str(fee),
            "ack_latency_ms": e.ack_latency_ms,
            "first_fill_latency_ms": first_fill,
            "fills": len(e.fills),
            "error": e.live_error,
        },
        "sim": {
            "status": e.sim_status or (sim.status.value if sim is not None else NOT_PLACED),
            "filled": str(sim.filled) if sim is not None else "0",
            "avg_price": _s(sim_avg),
            "fee": str(sim.fee) if sim is not None else "0",
            "first_fill_latency_ms": (
                None if sim_first is None or sim_avg is None else max(0, sim_first - e.submitted_ms)
            ),
            "reason": e.sim_reason,
        },
        "slippage_bps": _s(slip),
        "sim_slippage_bps": _s(sim_slip),
        "sim_vs_live_bps": _s(gap),
    }


def _fill_data(e: _Entry, f: Fill) -> dict[str, Any]:
    ref = e.intended
    return {
        "client_order_id": f.client_order_id,
        "fill_id": f.fill_id,
        "symbol": f.symbol,
        "side": f.side.value,
        "price": str(f.price),
        "amount": str(f.amount),
        "fee": str(f.fee),
        "liquidity": f.liquidity.value,
        "ts": f.ts,
        "since_submit_ms": f.ts - e.submitted_ms,
        "intended_price": _s(ref),
        "slippage_bps": _s(slippage_bps(f.side, f.price, ref) if ref else None),
    }
