"""The simulated exchange's mutable order record, and its JSON form for snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.models import ZERO, Order, OrderStatus, OrderType, Side


@dataclass(slots=True)
class SimOrder:
    """The engine's mutable record of an order; callers only ever see `to_order()` copies."""

    seq: int
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    amount: Decimal
    price: Decimal | None
    status: OrderStatus
    created_ms: int
    updated_ms: int
    strategy: str = ""
    post_only: bool = False
    reduce_only: bool = False
    reason: str = ""
    filled: Decimal = ZERO
    cost: Decimal = ZERO  # sum of fill notionals, for the volume-weighted average price
    fee: Decimal = ZERO
    reserved: Decimal = ZERO  # quote (buys) or base (sells) still held in `used`
    taker_at_placement: bool = False
    arrived: bool = False  # has seen its first fillable candle
    fill_count: int = 0

    price_f: float = field(default=0.0, init=False, repr=False, compare=False)  # for matching

    def __post_init__(self) -> None:
        self.price_f = float(self.price) if self.price is not None else 0.0

    def to_order(self) -> Order:
        avg = self.cost / self.filled if self.filled else ZERO
        return Order(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            order_type=self.order_type,
            amount=self.amount,
            price=self.price,
            status=self.status,
            created_ms=self.created_ms,
            updated_ms=self.updated_ms,
            filled=self.filled,
            avg_fill_price=avg,
            fee=self.fee,
            exchange_order_id=str(self.seq),
            strategy=self.strategy,
            post_only=self.post_only,
            reduce_only=self.reduce_only,
            reason=self.reason,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "amount": str(self.amount),
            "price": None if self.price is None else str(self.price),
            "status": self.status.value,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "strategy": self.strategy,
            "post_only": self.post_only,
            "reduce_only": self.reduce_only,
            "reason": self.reason,
            "filled": str(self.filled),
            "cost": str(self.cost),
            "fee": str(self.fee),
            "reserved": str(self.reserved),
            "taker_at_placement": self.taker_at_placement,
            "arrived": self.arrived,
            "fill_count": self.fill_count,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SimOrder:
        return cls(
            seq=int(d["seq"]),
            client_order_id=str(d["client_order_id"]),
            symbol=str(d["symbol"]),
            side=Side(d["side"]),
            order_type=OrderType(d["order_type"]),
            amount=Decimal(d["amount"]),
            price=None if d["price"] is None else Decimal(d["price"]),
            status=OrderStatus(d["status"]),
            created_ms=int(d["created_ms"]),
            updated_ms=int(d["updated_ms"]),
            strategy=str(d["strategy"]),
            post_only=bool(d["post_only"]),
            reduce_only=bool(d["reduce_only"]),
            reason=str(d["reason"]),
            filled=Decimal(d["filled"]),
            cost=Decimal(d["cost"]),
            fee=Decimal(d["fee"]),
            reserved=Decimal(d["reserved"]),
            taker_at_placement=bool(d["taker_at_placement"]),
            arrived=bool(d["arrived"]),
            fill_count=int(d["fill_count"]),
        )
