"""Sends order intents and cancels through the Exchange port, safely.

The intent is stored and fsynced to the audit log before the order leaves. A submit whose
outcome is unknown (timeout, connection dropped) is never re-sent blindly: the client order
id is looked up first. The order gate (kill switch, shutdown) is checked immediately before every
send, and sends that passed it are counted until they return, so a block is acknowledged only
once no order can still reach the exchange.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from core.errors import (
    DuplicateOrder,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    PostOnlyWouldTake,
    RateLimited,
    RequestTimeout,
)
from core.models import CancelRequest, Order, OrderIntent, OrderStatus
from core.orders import merge_remote, new_order, transition
from core.ports import Exchange
from runner.recorder import Recorder

log = logging.getLogger("vigil.execution")


class OrderBookkeeper:
    """The daemon's local view of its orders, keyed by client order id. Live orders are
    indexed apart: every cycle asks for them, and terminal ones pile up."""

    def __init__(self, orders: list[Order] | None = None) -> None:
        self.orders: dict[str, Order] = {}
        self._live: dict[str, Order] = {}
        self.load(orders or [])

    def load(self, orders: list[Order]) -> None:
        """Start over from `orders` (the store's live orders at start-up)."""
        self.orders.clear()
        self._live.clear()
        for o in orders:
            self.put(o)

    def live(self) -> list[Order]:
        return list(self._live.values())

    def has_live(self) -> bool:
        return bool(self._live)

    def put(self, o: Order) -> None:
        coid = o.client_order_id
        self.orders[coid] = o
        if o.status.is_live:
            self._live[coid] = o
        else:
            self._live.pop(coid, None)

    def forget_terminal(self, keep: int = 500) -> None:
        """Bound memory: terminal orders are in the store; keep only the newest in RAM."""
        terminal = [o for o in self.orders.values() if o.status.is_terminal]
        if len(terminal) <= keep:
            return
        terminal.sort(key=lambda o: o.updated_ms)
        for o in terminal[: len(terminal) - keep]:
            del self.orders[o.client_order_id]


class OrderGate:
    """What the executor asks before every send. Closed while the kill switch is engaged
    (the kill-switch file, an operator's or a guard's kill: `close`; or the latch in the
    engine's state: `latched()`) and while the engine stops. Only reduce-only flatten orders
    pass a kill (never a stopping engine)."""

    __slots__ = ("_latched", "killed", "reason", "stopping")

    def __init__(self, latched: Callable[[], bool]) -> None:
        self._latched = latched
        self.killed = False  # the kill switch was engaged here (file, operator, guard)
        self.reason = ""
        self.stopping = False

    def close(self, reason: str) -> None:
        self.killed = True
        self.reason = reason

    def open(self) -> None:
        self.killed = False
        self.reason = ""

    def kill_active(self) -> bool:
        return self.killed or self._latched()

    def refuses(self, *, past_kill: bool) -> bool:
        return self.stopping or (not past_kill and self.kill_active())


class Executor:
    def __init__(
        self,
        *,
        exchange: Exchange,
        recorder: Recorder,
        book: OrderBookkeeper,
        gate: OrderGate,
        on_rejection: Callable[[int, str], None],
        on_api_error: Callable[[int, str], None],
        persist: Callable[[Order], None],
        on_order: Callable[[str], None] = lambda result: None,
    ) -> None:
        self._ex = exchange
        self._rec = recorder
        self._book = book
        self._gate = gate
        self._on_rejection = on_rejection
        self._on_api_error = on_api_error
        self._persist = persist
        self._on_order = on_order
        self._sending = 0  # sends that passed the gate and have not returned yet
        self._idle = asyncio.Event()
        self._idle.set()

    def in_flight(self) -> int:
        return self._sending

    async def blocked(self) -> None:
        """Called after the gate closed: returns once no order can still reach the exchange,
        i.e. every send that passed the gate before it closed has returned (the gate check and
        the count of sends happen in one step, with no await between). The kill switch's
        `block` latency ends here (runner/loop.py)."""
        while self._sending:
            await self._idle.wait()

    async def submit(self, intent: OrderIntent, now_ms: int, *, past_kill: bool = False) -> Order:
        """`past_kill`: an operator's flatten order goes out under the kill switch; only a
        reduce-only one may (runner/flatten.py)."""
        if self._gate.refuses(past_kill=past_kill and intent.reduce_only):
            why = "kill switch" if self._gate.kill_active() else "shutting down"
            o = transition(new_order(intent, now_ms), OrderStatus.REJECTED, now_ms)
            o = replace(o, reason=f"{intent.reason}; blocked by {why}")
            self._book.put(o)
            self._persist(o)
            self._rec.ack(o, detail=f"blocked: {why} active")
            self._on_order("blocked")
            return o
        if intent.client_order_id in self._book.orders:
            # Already ours (a replayed cycle after a restart): never send twice.
            return self._book.orders[intent.client_order_id]
        local = new_order(intent, now_ms)
        self._book.put(local)
        self._persist(local)
        self._rec.intent(intent)
        self._sending += 1
        self._idle.clear()
        try:
            remote = await self._ex.create_order(intent)
        except (InvalidOrder, InsufficientFunds) as exc:
            return self._reject(local, now_ms, exc)
        except DuplicateOrder:
            return await self._resolve_unknown(local, now_ms, "duplicate client order id")
        except (RequestTimeout, RateLimited) as exc:
            self._on_api_error(now_ms, type(exc).__name__)
            return await self._resolve_unknown(local, now_ms, type(exc).__name__)
        except ExchangeError as exc:
            self._on_api_error(now_ms, type(exc).__name__)
            return await self._resolve_unknown(local, now_ms, type(exc).__name__)
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()
        return self._accept(local, remote, now_ms)

    def _accept(self, local: Order, remote: Order, now_ms: int, detail: str = "") -> Order:
        remote = replace(remote, updated_ms=max(remote.updated_ms, now_ms))
        if remote.filled > local.filled:
            # Filled at once (a market order on a real venue): the fills come through
            # reconciliation, which books them one by one. Taking the filled quantity from
            # this answer would make the order refuse its own fills.
            remote = replace(
                remote,
                status=OrderStatus.OPEN,
                filled=local.filled,
                avg_fill_price=local.avg_fill_price,
                fee=local.fee,
            )
        merged = merge_remote(local, remote)
        self._book.put(merged)
        self._persist(merged)
        self._rec.ack(merged, detail=detail)
        self._on_order("accepted")
        return merged

    def _reject(self, local: Order, now_ms: int, exc: Exception) -> Order:
        o = replace(transition(local, OrderStatus.REJECTED, now_ms), reason=local.reason)
        self._book.put(o)
        self._persist(o)
        if not isinstance(exc, PostOnlyWouldTake):  # the price moved; the venue is fine
            self._on_rejection(now_ms, o.symbol)
        self._rec.ack(o, detail=f"{type(exc).__name__}: {exc}")
        self._on_order("rejected")
        log.warning("order %s rejected: %s", o.client_order_id, exc)
        return o

    async def _resolve_unknown(self, local: Order, now_ms: int, why: str) -> Order:
        """The submit may or may not have landed. Ask; only a definite 'not found' is final."""
        try:
            remote = await self._ex.fetch_order(local.client_order_id, local.symbol)
        except OrderNotFound:
            o = transition(local, OrderStatus.FAILED, now_ms)
            self._book.put(o)
            self._persist(o)
            self._rec.ack(o, detail=f"{why}; not on the exchange")
            self._on_order("failed")
            return o
        except ExchangeError as exc:
            # Still unknown: keep it NEW so reconciliation looks again next cycle.
            self._on_api_error(now_ms, type(exc).__name__)
            self._rec.ack(local, detail=f"{why}; outcome unknown, will reconcile")
            return local
        return self._accept(local, remote, now_ms, detail=f"{why}; found on the exchange")

    async def cancel(self, req: CancelRequest, now_ms: int) -> str:
        local = self._book.orders.get(req.client_order_id)
        try:
            remote = await self._ex.cancel_order(req.client_order_id, req.symbol)
        except OrderNotFound:
            result = "not_found"
            if local is not None and local.status.is_live:
                # Gone from the book: filled or canceled meanwhile; reconciliation settles it.
                try:
                    remote = await self._ex.fetch_order(req.client_order_id, req.symbol)
                    self._merge(local, remote)
                except ExchangeError:
                    pass
            self._rec.cancel(req, result, now_ms)
            return result
        except ExchangeError as exc:
            self._on_api_error(now_ms, type(exc).__name__)
            self._rec.cancel(req, f"error: {type(exc).__name__}", now_ms)
            return "error"
        if local is not None:
            self._merge(local, remote)
        self._rec.cancel(req, "canceled", now_ms)
        return "canceled"

    async def execute(
        self, cancels: Sequence[CancelRequest], intents: Sequence[OrderIntent], now_ms: int
    ) -> None:
        """A cycle's orders: its cancels first, then its new orders."""
        for c in cancels:
            await self.cancel(c, now_ms)
        for intent in intents:
            await self.submit(intent, now_ms)

    async def cancel_all(self, now_ms: int, *, reason: str) -> int:
        """Cancel every live order in the book; returns how many were asked to cancel."""
        live = self._book.live()
        for o in live:
            await self.cancel(CancelRequest(o.client_order_id, o.symbol, reason), now_ms)
        return len(live)

    def _merge(self, local: Order, remote: Order) -> Order:
        if remote.filled > local.filled:
            # Filled since the last trade query: reconciliation books those fills, then
            # merges. Marked filled now, the order would refuse its own fills.
            return local
        merged = merge_remote(local, remote)
        if merged is not local:
            self._book.put(merged)
            self._persist(merged)
        return merged
