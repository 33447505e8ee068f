"""Turns decisions and order events into audit records. One payload shape for daemon and
backtest, so their decision streams can be compared record by record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from core.fast_exit import FastExit
from core.models import (
    BreakerState,
    CancelRequest,
    CycleDecision,
    EngineState,
    Fill,
    Order,
    OrderIntent,
    Quote,
    RiskVerdict,
    TradeProposal,
)

# Kinds that make up the decision stream (what a backtest and the daemon must agree on).
DECISION_KINDS = frozenset(
    {
        "proposal",
        "verdict",
        "order_intent",
        "order_ack",
        "cancel",
        "fill",
        "breaker_trip",
        "breaker_clear",
    }
)


class AuditSink(Protocol):
    def append(self, kind: str, data: Mapping[str, Any], *, sync: bool = False) -> Any: ...


class MemorySink:
    """Keeps records in a list; backtests use it when no audit directory is asked for."""

    def __init__(self, *, keep: frozenset[str] | None = None) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self._keep = keep

    def append(self, kind: str, data: Mapping[str, Any], *, sync: bool = False) -> None:
        if self._keep is None or kind in self._keep:
            self.records.append((kind, dict(data)))


def _d(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def proposal_data(p: TradeProposal, ts: int) -> dict[str, Any]:
    return {
        "cycle_ts": ts,
        "strategy": p.strategy,
        "symbol": p.symbol,
        "side": p.side.value,
        "kind": p.kind.value,
        "confidence": p.confidence,
        "reason": p.reason,
        "ref_price": str(p.ref_price),
        "quantity": _d(p.quantity),
    }


def verdict_data(v: RiskVerdict, ts: int) -> dict[str, Any]:
    p = v.proposal
    return {
        "cycle_ts": ts,
        "strategy": p.strategy,
        "symbol": p.symbol,
        "kind": p.kind.value,
        "approved": v.approved,
        "reason": v.reason,
        "detail": v.detail,
        "quantity": str(v.quantity),
        "price": str(v.price),
        "notional": str(v.notional),
    }


def intent_data(i: OrderIntent) -> dict[str, Any]:
    return {
        "client_order_id": i.client_order_id,
        "cycle_ts": i.cycle_ms,
        "strategy": i.strategy,
        "symbol": i.symbol,
        "side": i.side.value,
        "type": i.order_type.value,
        "amount": str(i.amount),
        "price": _d(i.price),
        "post_only": i.post_only,
        "reduce_only": i.reduce_only,
        "reason": i.reason,
    }


def order_data(o: Order) -> dict[str, Any]:
    return {
        "client_order_id": o.client_order_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "type": o.order_type.value,
        "status": o.status.value,
        "amount": str(o.amount),
        "price": _d(o.price),
        "filled": str(o.filled),
        "avg_fill_price": str(o.avg_fill_price),
        "fee": str(o.fee),
        "exchange_order_id": o.exchange_order_id,
        "strategy": o.strategy,
        "reason": o.reason,
    }


def fill_data(f: Fill, *, realized: Decimal, strategy: str, order_reason: str) -> dict[str, Any]:
    return {
        "fill_id": f.fill_id,
        "client_order_id": f.client_order_id,
        "symbol": f.symbol,
        "side": f.side.value,
        "price": str(f.price),
        "amount": str(f.amount),
        "fee": str(f.fee),
        "ts": f.ts,
        "liquidity": f.liquidity.value,
        "base_fee": str(f.base_fee),
        "realized": str(realized),
        "strategy": strategy,
        "order_reason": order_reason,
    }


def cancel_data(c: CancelRequest, result: str, ts: int) -> dict[str, Any]:
    return {
        "cycle_ts": ts,
        "client_order_id": c.client_order_id,
        "symbol": c.symbol,
        "reason": c.reason,
        "result": result,
    }


def cycle_data(d: CycleDecision, *, positions: int, open_orders: int) -> dict[str, Any]:
    excluded = Counter(e.reason for e in d.universe.excluded)
    tripped = sorted(n for n, b in d.state.breakers.items() if b.tripped)
    return {
        "cycle_ts": d.ts,
        "trading_state": d.trading_state.value,
        "regime": d.regime.value,
        "risk_multiplier": str(d.risk_multiplier),
        "equity": str(d.equity),
        "eligible": list(d.universe.eligible),
        "excluded": dict(sorted(excluded.items())),
        "triggers": len(d.triggers),
        "proposals": len(d.proposals),
        "approved": sum(1 for v in d.verdicts if v.approved),
        "intents": len(d.intents),
        "cancels": len(d.cancels),
        "no_trade_reason": d.no_trade_reason,
        "breakers_tripped": tripped,
        "kill_switch": d.state.kill_switch,
        "positions": positions,
        "open_orders": open_orders,
        "timings_ms": dict(d.timings_ms),
        "notes": list(d.notes),
    }


def breaker_events(
    before: Mapping[str, BreakerState], after: Mapping[str, BreakerState], ts: int
) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if before is after:
        return out  # the cycle changed no breaker (the usual case)
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        was = b is not None and b.tripped
        now = a is not None and a.tripped
        if now and not was:
            assert a is not None
            out.append(("breaker_trip", {"cycle_ts": ts, "breaker": name, "reason": a.reason}))
        elif was and not now:
            out.append(("breaker_clear", {"cycle_ts": ts, "breaker": name}))
    return out


class Recorder:
    """Writes the decision stream to an audit sink. `cycle_summaries=False` skips the one
    record per cycle (backtests over a million candles do not need 70,000 of them)."""

    def __init__(self, sink: AuditSink, *, cycle_summaries: bool = True) -> None:
        self.sink = sink
        self.cycle_summaries = cycle_summaries

    def decision(
        self,
        d: CycleDecision,
        before: EngineState,
        *,
        positions: int,
        open_orders: int,
    ) -> None:
        """A cycle's records; `before` is the engine state the cycle started from."""
        append = self.sink.append
        ts = d.ts
        for kind, data in breaker_events(before.breakers, d.state.breakers, ts):
            append(kind, data)
        for p in d.proposals:
            append("proposal", proposal_data(p, ts))
        for v in d.verdicts:
            append("verdict", verdict_data(v, ts))
        if self.cycle_summaries:
            append("cycle", cycle_data(d, positions=positions, open_orders=open_orders))
        if d.state.kill_switch and not before.kill_switch:
            append("kill_switch", {"reason": d.state.kill_reason, "source": "cycle"}, sync=True)

    def fast_exit(self, symbol: str, quote: Quote, plan: FastExit, ts: int) -> None:
        """A fast exit's decision (runner/fast_exits.py), before its orders are sent."""
        append = self.sink.append
        append(
            "fast_exit",
            {"symbol": symbol, "ts": ts, "last": str(quote.last), "bid": str(quote.bid)},
        )
        if plan.proposal is not None:
            append("proposal", proposal_data(plan.proposal, ts))
        for v in plan.verdicts:
            append("verdict", verdict_data(v, ts))

    def intent(self, i: OrderIntent) -> None:
        # Durable before the order leaves: after a crash the intent tells us what may exist.
        self.sink.append("order_intent", intent_data(i), sync=True)

    def ack(self, o: Order, *, detail: str = "") -> None:
        data = order_data(o)
        if detail:
            data["detail"] = detail
        self.sink.append("order_ack", data)

    def cancel(self, c: CancelRequest, result: str, ts: int) -> None:
        self.sink.append("cancel", cancel_data(c, result, ts))

    def fill(self, f: Fill, *, realized: Decimal, strategy: str, order_reason: str) -> None:
        self.sink.append(
            "fill", fill_data(f, realized=realized, strategy=strategy, order_reason=order_reason)
        )

    def event(self, kind: str, data: Mapping[str, Any], *, sync: bool = False) -> None:
        self.sink.append(kind, data, sync=sync)
