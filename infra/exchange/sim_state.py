"""JSON-able snapshots of the simulated exchange, so the fake server survives its own restarts.

Decimals travel as strings, candles as the floats they were fed with (JSON round-trips them
exactly). `parse_state` checks the snapshot before anything is replaced, including that every
asset's `used` equals what its live orders reserve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from core.models import ZERO, Fill, Liquidity, Market, MarketStatus, Quote, Side
from infra.exchange.sim_account import balances
from infra.exchange.sim_book import CandleRow, SymbolBook
from infra.exchange.sim_orders import SimOrder

STATE_VERSION = 1

RngState = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SymbolState:
    status: MarketStatus
    history: list[CandleRow]
    pushed: Quote | None


@dataclass(frozen=True, slots=True)
class ParsedState:
    free: dict[str, Decimal]
    used: dict[str, Decimal]
    orders: dict[str, SimOrder]
    fills: list[Fill]
    symbols: dict[str, SymbolState]
    next_seq: int
    rng: RngState


def dump_state(
    *,
    name: str,
    timeframe_ms: int,
    next_seq: int,
    free: Mapping[str, Decimal],
    used: Mapping[str, Decimal],
    orders: Iterable[SimOrder],
    fills: Iterable[Fill],
    books: Mapping[str, SymbolBook],
    rng: RngState,
) -> dict[str, Any]:
    version, internal, gauss = rng
    return {
        "version": STATE_VERSION,
        "name": name,
        "timeframe_ms": timeframe_ms,
        "next_seq": next_seq,
        "balances": {
            a: {"free": str(b.free), "used": str(b.used)} for a, b in balances(free, used).items()
        },
        "orders": [o.to_json() for o in sorted(orders, key=lambda o: o.seq)],
        "fills": [fill_to_json(f) for f in fills],
        "symbols": {
            s: {
                "status": b.market.status.value,
                "history": [list(r) for r in b.history],
                "pushed_quote": None if b.pushed is None else quote_to_json(b.pushed),
            }
            for s, b in books.items()
        },
        "rng": [version, list(internal), gauss],
    }


def parse_state(
    state: Mapping[str, Any], *, timeframe_ms: int, markets: Mapping[str, Market]
) -> ParsedState:
    """Validate and decode a snapshot; raises ValueError naming what is wrong."""
    try:
        return _parse(state, timeframe_ms, markets)
    except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as e:
        raise ValueError(f"sim state is malformed ({type(e).__name__}: {e}); not restored") from e


def _parse(
    state: Mapping[str, Any], timeframe_ms: int, markets: Mapping[str, Market]
) -> ParsedState:
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
    if state["timeframe_ms"] != timeframe_ms:
        raise ValueError(f"timeframe_ms {state['timeframe_ms']} != this sim's {timeframe_ms}")
    free = {str(a): Decimal(b["free"]) for a, b in state["balances"].items()}
    used = {str(a): Decimal(b["used"]) for a, b in state["balances"].items()}
    if any(x < 0 for x in (*free.values(), *used.values())):
        raise ValueError("a balance is negative")
    orders: dict[str, SimOrder] = {}
    for d in state["orders"]:
        order = SimOrder.from_json(d)
        if order.symbol not in markets:
            raise ValueError(f"order {order.client_order_id!r} is for unknown {order.symbol!r}")
        orders[order.client_order_id] = order
    fills = [fill_from_json(d) for d in state["fills"]]
    symbols: dict[str, SymbolState] = {}
    for symbol, d in state["symbols"].items():
        if symbol not in markets:
            raise ValueError(f"unknown symbol {symbol!r}; this sim trades {sorted(markets)}")
        history: list[CandleRow] = [
            (int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in d["history"]
        ]
        pushed = None if d["pushed_quote"] is None else quote_from_json(d["pushed_quote"])
        symbols[symbol] = SymbolState(MarketStatus(d["status"]), history, pushed)
    reserved: dict[str, Decimal] = {}
    for o in orders.values():
        if o.status.is_live:
            m = markets[o.symbol]
            asset = m.quote if o.side is Side.BUY else m.base
            reserved[asset] = reserved.get(asset, ZERO) + o.reserved
    for asset in set(reserved) | set(used):
        if reserved.get(asset, ZERO) != used.get(asset, ZERO):
            raise ValueError(
                f"{asset}: used {used.get(asset, ZERO)} != reserved by live orders "
                f"{reserved.get(asset, ZERO)}"
            )
    version, internal, gauss = state["rng"]
    rng = (int(version), tuple(int(x) for x in internal), gauss)
    return ParsedState(free, used, orders, fills, symbols, int(state["next_seq"]), rng)


def fill_to_json(f: Fill) -> dict[str, Any]:
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
    }


def fill_from_json(d: dict[str, Any]) -> Fill:
    return Fill(
        fill_id=str(d["fill_id"]),
        client_order_id=str(d["client_order_id"]),
        symbol=str(d["symbol"]),
        side=Side(d["side"]),
        price=Decimal(d["price"]),
        amount=Decimal(d["amount"]),
        fee=Decimal(d["fee"]),
        ts=int(d["ts"]),
        liquidity=Liquidity(d["liquidity"]),
    )


def quote_to_json(q: Quote) -> dict[str, Any]:
    return {
        "symbol": q.symbol,
        "bid": str(q.bid),
        "ask": str(q.ask),
        "last": str(q.last),
        "ts": q.ts,
    }


def quote_from_json(d: dict[str, Any]) -> Quote:
    return Quote(
        symbol=str(d["symbol"]),
        bid=Decimal(d["bid"]),
        ask=Decimal(d["ask"]),
        last=Decimal(d["last"]),
        ts=int(d["ts"]),
    )
