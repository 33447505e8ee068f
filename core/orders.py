"""The order state machine, fill accumulation, stale detection and client order ids."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from decimal import Decimal

from core.models import Fill, Order, OrderIntent, OrderStatus, Side

S = OrderStatus

# Legal moves. Staying in OPEN or PARTIAL is legal (a refresh that changed nothing); a
# terminal order never moves again.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PARTIAL, S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED, S.FAILED}),
    S.OPEN: frozenset({S.OPEN, S.PARTIAL, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIAL: frozenset({S.PARTIAL, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
}

CLIENT_ID_PREFIX = "vg"
CLIENT_ID_LEN = 32


class IllegalTransition(ValueError):
    def __init__(self, order: Order, target: OrderStatus) -> None:
        super().__init__(
            f"order {order.client_order_id}: illegal transition {order.status} -> {target}"
        )
        self.order = order
        self.target = target


class Overfill(ValueError):
    pass


def client_order_id(strategy: str, symbol: str, side: Side, amount: Decimal, cycle_ms: int) -> str:
    """Deterministic: the same decision in the same cycle always gets the same id, so a
    resend after a crash is recognised by the exchange instead of doubling the order.

    32 characters of [a-z0-9]: inside every major venue's rules (Binance allows 36 of
    [.A-Z:/a-z0-9_-], Coinbase and MEXC accept it too).
    """
    # JSON, not a joined string: ("a|b", "c") and ("a", "b|c") must not collide.
    key = json.dumps([strategy, symbol, side.value, f"{amount.normalize():f}", cycle_ms])
    digest = hashlib.sha256(key.encode()).hexdigest()
    return CLIENT_ID_PREFIX + digest[: CLIENT_ID_LEN - len(CLIENT_ID_PREFIX)]


def new_order(intent: OrderIntent, now_ms: int) -> Order:
    return Order(
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        order_type=intent.order_type,
        amount=intent.amount,
        price=intent.price,
        status=S.NEW,
        created_ms=now_ms,
        updated_ms=now_ms,
        strategy=intent.strategy,
        post_only=intent.post_only,
        reduce_only=intent.reduce_only,
        reason=intent.reason,
    )


def transition(order: Order, target: OrderStatus, now_ms: int) -> Order:
    if target not in TRANSITIONS[order.status]:
        raise IllegalTransition(order, target)
    if target is order.status:
        return order
    return replace(order, status=target, updated_ms=max(now_ms, order.updated_ms))


def apply_fill(order: Order, fill: Fill) -> Order:
    """Accumulate one fill: quantity, volume-weighted price, fee, PARTIAL or FILLED."""
    if fill.client_order_id != order.client_order_id:
        raise ValueError(f"fill {fill.fill_id} belongs to {fill.client_order_id}")
    if fill.symbol != order.symbol or fill.side is not order.side:
        raise ValueError(
            f"fill {fill.fill_id} is a {fill.side} of {fill.symbol}; the order is a "
            f"{order.side} of {order.symbol}"
        )
    if fill.amount <= 0 or fill.price <= 0 or fill.fee < 0:
        raise ValueError(
            f"fill {fill.fill_id}: amount and price must be positive and the fee not negative"
        )
    if order.status.is_terminal and order.status is not S.CANCELED:
        raise IllegalTransition(order, S.FILLED)
    filled = order.filled + fill.amount
    if filled > order.amount:
        raise Overfill(
            f"order {order.client_order_id}: fill {fill.fill_id} would fill {filled} "
            f"of {order.amount}"
        )
    avg = (order.avg_fill_price * order.filled + fill.price * fill.amount) / filled
    if order.status is S.CANCELED:
        # A fill that raced the cancel: the exchange executed it before canceling.
        status = S.CANCELED
    else:
        status = S.FILLED if filled == order.amount else S.PARTIAL
    return replace(
        order,
        filled=filled,
        avg_fill_price=avg,
        fee=order.fee + fill.fee,
        status=status,
        updated_ms=max(order.updated_ms, fill.ts),
    )


def merge_remote(local: Order, remote: Order) -> Order:
    """Fold the exchange's view of an order into ours. The exchange is the truth for
    status and filled quantity; an impossible move is refused rather than papered over."""
    if remote.client_order_id != local.client_order_id:
        raise ValueError(
            f"order {local.client_order_id}: exchange view is of {remote.client_order_id}"
        )
    if remote.filled > local.amount:
        raise Overfill(
            f"order {local.client_order_id}: exchange reports {remote.filled} filled of "
            f"{local.amount}"
        )
    target = remote.status
    if local.status is target and local.filled == remote.filled:
        return local
    if target not in TRANSITIONS[local.status] and target is not local.status:
        raise IllegalTransition(local, target)
    if remote.filled < local.filled:
        raise ValueError(
            f"order {local.client_order_id}: exchange reports filled {remote.filled} "
            f"below our {local.filled}"
        )
    return replace(
        local,
        status=target,
        filled=remote.filled,
        avg_fill_price=remote.avg_fill_price if remote.filled else local.avg_fill_price,
        fee=max(local.fee, remote.fee),
        exchange_order_id=remote.exchange_order_id or local.exchange_order_id,
        updated_ms=max(local.updated_ms, remote.updated_ms),
    )


def is_stale(order: Order, now_ms: int, ttl_ms: int) -> bool:
    return order.status.is_live and now_ms - order.created_ms >= ttl_ms
