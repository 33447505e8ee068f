"""The state the audit log implies: what `vigil state rebuild` writes into a new state.db and
what `vigil audit replay` compares with the existing one. One reading of the log for both.

The log holds every fill, order intent, acknowledgement and cancel, every breaker trip and
clear, every kill and resume and one summary per cycle, so it determines the positions (with
their cost basis), realized PnL per day, the orders still open, the kill latch, the breakers,
the high-water mark, the regime and where a replay left off. It does not hold cooldowns or
bans (they start empty) nor peak prices beyond the entry (trailing stops re-arm from the
entry). Cash is the configured paper wallet moved by every fill; in LIVE the exchange's
balance replaces it at the first reconcile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from core.breakers import roll_marks
from core.clock import day_start_ms
from core.models import (
    BreakerState,
    EngineState,
    EquityMarks,
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    Regime,
    RegimeState,
    Side,
)
from core.orders import IllegalTransition, Overfill
from core.orders import apply_fill as order_fill
from core.portfolio import Portfolio, apply_fill
from infra.audit_verify import iter_records


@dataclass
class Rebuilt:
    """What the audit log says the state is."""

    portfolio: Portfolio
    realized: Decimal = Decimal(0)
    fills: list[Fill] = field(default_factory=list)
    daily: dict[int, tuple[Decimal, Decimal, int]] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    breakers: dict[str, BreakerState] = field(default_factory=dict)
    kill: tuple[bool, str] = (False, "")
    marks: EquityMarks = field(default_factory=EquityMarks)
    regime: RegimeState | None = None
    last_cycle_ms: int | None = None
    records: int = 0

    def open_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.status.is_live]

    def engine_state(self) -> EngineState:
        return EngineState(
            regime=self.regime or RegimeState(),
            breakers=MappingProxyType(dict(sorted(self.breakers.items()))),
            kill_switch=self.kill[0],
            kill_reason=self.kill[1],
            marks=self.marks,
        )


def fill_of(d: Mapping[str, Any]) -> Fill:
    return Fill(
        fill_id=d["fill_id"],
        client_order_id=d["client_order_id"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        price=Decimal(d["price"]),
        amount=Decimal(d["amount"]),
        fee=Decimal(d["fee"]),
        ts=int(d["ts"]),
        liquidity=Liquidity(d["liquidity"]),
        base_fee=Decimal(d.get("base_fee", "0")),
    )


def _intent_order(d: Mapping[str, Any], ts: int) -> Order:
    price = d.get("price")
    return Order(
        client_order_id=d["client_order_id"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        order_type=OrderType(d["type"]),
        amount=Decimal(d["amount"]),
        price=None if price is None else Decimal(price),
        status=OrderStatus.NEW,
        created_ms=int(d.get("cycle_ts", ts)),
        updated_ms=ts,
        strategy=d.get("strategy", ""),
        post_only=bool(d.get("post_only", False)),
        reduce_only=bool(d.get("reduce_only", False)),
        reason=d.get("reason", ""),
    )


def _acked(old: Order | None, d: Mapping[str, Any], ts: int) -> Order:
    price = d.get("price")
    base = old or Order(
        client_order_id=d["client_order_id"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        order_type=OrderType(d["type"]),
        amount=Decimal(d["amount"]),
        price=None if price is None else Decimal(price),
        status=OrderStatus.NEW,
        created_ms=ts,
        updated_ms=ts,
    )
    filled = Decimal(d.get("filled", "0"))
    if filled < base.filled:  # fills booked before this ack already count for more
        return replace(base, status=OrderStatus(d["status"]), updated_ms=ts)
    return replace(
        base,
        status=OrderStatus(d["status"]),
        updated_ms=ts,
        filled=filled,
        avg_fill_price=Decimal(d.get("avg_fill_price", "0")),
        fee=Decimal(d.get("fee", "0")),
        exchange_order_id=d.get("exchange_order_id", "") or base.exchange_order_id,
        strategy=d.get("strategy", "") or base.strategy,
        reason=d.get("reason", "") or base.reason,
    )


def _records(directory: Path) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    for rec in iter_records(directory):
        yield str(rec.get("kind")), int(rec.get("ts", 0)), rec.get("data") or {}


def replay_audit(directory: Path, *, cash: Decimal = Decimal(0), quote: str = "USDT") -> Rebuilt:
    """Read the whole log in order. Raises PortfolioError, KeyError or ValueError when the
    fill records do not add up (a sell of more than is held, a malformed record)."""
    out = Rebuilt(portfolio=Portfolio(cash=cash, quote=quote))
    for kind, ts, d in _records(directory):
        out.records += 1
        if kind == "state_fresh":
            # The operator started afresh here: what came before no longer counts.
            out = Rebuilt(portfolio=Portfolio(cash=cash, quote=quote), records=out.records)
        elif kind == "fill":
            _on_fill(out, d)
        elif kind == "order_intent":
            out.orders[d["client_order_id"]] = _intent_order(d, ts)
        elif kind == "order_ack":
            coid = d["client_order_id"]
            out.orders[coid] = _acked(out.orders.get(coid), d, ts)
        elif kind == "cancel":
            _on_cancel(out, d, ts)
        elif kind == "breaker_trip":
            name = d["breaker"]
            out.breakers[name] = BreakerState(
                name=name, tripped=True, tripped_ms=int(d["cycle_ts"]), reason=d.get("reason", "")
            )
        elif kind == "breaker_clear":
            out.breakers.pop(d["breaker"], None)
        elif kind == "kill_switch":
            out.kill = (True, str(d.get("reason", "")))
        elif kind == "resume":
            out.kill = (False, "")
        elif kind == "cycle":
            _on_cycle(out, d)
    return out


def _on_cycle(out: Rebuilt, d: Mapping[str, Any]) -> None:
    ts = int(d["cycle_ts"])
    out.last_cycle_ms = ts
    out.marks = roll_marks(out.marks, Decimal(d["equity"]), ts)  # as the cycle rolls them
    regime = Regime(d["regime"])
    if out.regime is None or out.regime.regime is not regime:
        out.regime = RegimeState(regime=regime, since_ms=ts)


def _on_fill(out: Rebuilt, d: Mapping[str, Any]) -> None:
    fill = fill_of(d)
    booking = apply_fill(out.portfolio, fill, strategy=d.get("strategy", ""))
    out.portfolio = booking.portfolio
    out.realized += booking.realized
    out.fills.append(fill)
    day = day_start_ms(fill.ts)
    r, f, n = out.daily.get(day, (Decimal(0), Decimal(0), 0))
    out.daily[day] = (r + booking.realized, f + fill.fee, n + 1)
    order = out.orders.get(fill.client_order_id)
    if order is not None:
        # Overfill etc.: an ack already carried this fill; the ack's figures stand.
        with contextlib.suppress(Overfill, IllegalTransition, ValueError):
            out.orders[fill.client_order_id] = order_fill(order, fill)


def _on_cancel(out: Rebuilt, d: Mapping[str, Any], ts: int) -> None:
    order = out.orders.get(d["client_order_id"])
    # "not_found": the venue no longer has it; it ended (its fills, if any, are in the log).
    if order is not None and order.status.is_live and d.get("result") in ("canceled", "not_found"):
        out.orders[order.client_order_id] = replace(
            order, status=OrderStatus.CANCELED, updated_ms=ts
        )


def rebuild_from_audit(directory: Path) -> tuple[Portfolio, Decimal, int]:
    """Positions and realized PnL from the fill records alone (cash is not rebuilt)."""
    r = replay_audit(directory)
    return r.portfolio, r.realized, len(r.fills)
