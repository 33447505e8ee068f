"""Reconciliation: the exchange's account into the engine's view, every cycle and at start.

Fills first (they move money, and are booked once by fill id, so fills missed while the
daemon was down are booked when it comes back), then order states (an order no longer open
is looked up to learn how it ended), then balances: the exchange is the truth for cash, and
a holding smaller than our position shrinks the position once the gap has been seen twice
(one look could race a fill that has not reached us yet). Orders nobody here placed are
reported and, by policy (`execution.foreign_orders`), left alone or canceled.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

from core.cycle import note_fill
from core.errors import ExchangeError, OrderNotFound
from core.models import Balance, Fill, Order, OrderStatus
from core.orders import IllegalTransition, Overfill, apply_fill, merge_remote
from core.portfolio import PortfolioError, resize_position
from core.portfolio import apply_fill as book_fill
from runner.holdings import UnknownHoldings

if TYPE_CHECKING:
    from runner.engine import Engine

log = logging.getLogger("vigil.reconcile")


class Reconciler:
    def __init__(self, engine: Engine) -> None:
        self._e = engine
        self.seen_fills: set[str] = set()
        self.fills_since: int | None = None
        self._reported: set[str] = set()
        self._short: dict[str, int] = {}  # symbol -> consecutive cycles held < position
        self.unknown = UnknownHoldings(engine)

    def restore(self, fills: list[Fill]) -> None:
        self.seen_fills = {f.fill_id for f in fills}
        self.fills_since = fills[-1].ts if fills else None

    async def run(self, now_ms: int, missing: list[str]) -> None:
        e = self._e
        ex = e.exchange
        try:
            fills = await ex.fetch_my_trades(since_ms=self.fills_since)
            remote_open = await ex.fetch_open_orders()
            balances = await ex.fetch_balances()
        except ExchangeError as exc:
            e._exchange_failed(now_ms, exc)
            missing.append("account")
            return
        e.health.exchange_ms = now_ms
        e.health.exchange_error = ""
        for f in fills:
            if f.fill_id not in self.seen_fills:
                self._book_fill(f)
        open_ids = set()
        for r in remote_open:
            open_ids.add(r.client_order_id)
            local = e.book.orders.get(r.client_order_id)
            if local is None:
                await self._foreign(r, now_ms)
                continue
            await self._settle(local, r, now_ms, missing)
        for local in e.book.live():
            if local.client_order_id in open_ids:
                continue
            # No longer open on the exchange: learn how it ended.
            try:
                remote = await ex.fetch_order(local.client_order_id, local.symbol)
            except OrderNotFound:
                if local.status is OrderStatus.NEW:
                    # Our intent never reached the venue (the submit died before sending).
                    self._merge(local, replace(local, status=OrderStatus.FAILED))
                continue
            except ExchangeError as exc:
                e._api_error(now_ms, type(exc).__name__)
                missing.append("orders")
                continue
            await self._settle(local, remote, now_ms, missing)
        self._cash(balances, now_ms)
        self._holdings(balances, now_ms)
        await self.unknown.check(balances, now_ms)

    def _cash(self, balances: dict[str, Balance], now_ms: int) -> None:
        e = self._e
        bal = balances.get(e.quote)
        cash = bal.total if bal is not None else Decimal(0)
        if cash == e.portfolio.cash:
            return
        if e.book.orders or e.portfolio.positions:
            e.recorder.event(
                "reconcile",
                {
                    "ts": now_ms,
                    "what": "cash",
                    "local": str(e.portfolio.cash),
                    "exchange": str(cash),
                },
            )
        e.portfolio = replace(e.portfolio, cash=cash)

    def _holdings(self, balances: dict[str, Balance], now_ms: int) -> None:
        e = self._e
        for sym, pos in list(e.portfolio.positions.items()):
            market = e.markets.get(sym)
            base = market.base if market is not None else sym.split("/")[0]
            bal = balances.get(base)
            held = bal.total if bal is not None else Decimal(0)
            if held >= pos.quantity:
                self._short.pop(sym, None)
                continue
            seen = self._short.get(sym, 0) + 1
            self._short[sym] = seen
            if seen < 2:
                continue
            del self._short[sym]
            log.warning(
                "%s: exchange holds %s, position says %s; the exchange is the truth",
                sym,
                held,
                pos.quantity,
            )
            e.recorder.event(
                "reconcile",
                {
                    "ts": now_ms,
                    "what": "position",
                    "symbol": sym,
                    "local": str(pos.quantity),
                    "exchange": str(held),
                },
            )
            e.portfolio = resize_position(e.portfolio, sym, held)

    async def _settle(self, local: Order, remote: Order, now_ms: int, missing: list[str]) -> None:
        """Merge the exchange's view of one of our orders, its fills first. An order the
        exchange shows filled beyond the fills booked here got them after this cycle's trade
        query, or before a restart on a symbol not queried yet: merged first, it would read
        FILLED and its fills would then be refused, losing the money they moved."""
        e = self._e
        if remote.filled > local.filled:
            try:
                fills = await e.exchange.fetch_my_trades(local.symbol)
            except ExchangeError as exc:
                e._api_error(now_ms, type(exc).__name__)
                missing.append("fills")
                return
            for f in fills:
                if f.fill_id not in self.seen_fills:
                    self._book_fill(f)
            local = e.book.orders.get(local.client_order_id, local)
            if remote.filled > local.filled:
                return  # its trades are not visible yet: settle it next cycle
        self._merge(local, remote)

    def _merge(self, local: Order, remote: Order) -> None:
        e = self._e
        try:
            merged = merge_remote(local, remote)
        except (IllegalTransition, ValueError) as exc:
            log.error("order %s: exchange view refused: %s", local.client_order_id, exc)
            e.recorder.event(
                "reconcile",
                {"what": "order", "client_order_id": local.client_order_id, "error": str(exc)},
            )
            return
        if merged is not local:
            e.book.put(merged)
            e.store.save_order(merged)

    async def _foreign(self, r: Order, now_ms: int) -> None:
        e = self._e
        if r.client_order_id in self._reported:
            return
        self._reported.add(r.client_order_id)
        policy = e.config.execution.foreign_orders
        log.warning(
            "order %s on %s was not placed by this vigil; policy: %s",
            r.client_order_id or r.exchange_order_id,
            r.symbol,
            policy,
        )
        result = "left alone"
        if policy == "cancel" and r.client_order_id:
            try:
                await e.exchange.cancel_order(r.client_order_id, r.symbol)
                result = "canceled"
            except ExchangeError as exc:
                result = f"cancel failed: {type(exc).__name__}"
        e.recorder.event(
            "reconcile",
            {
                "ts": now_ms,
                "what": "foreign_order",
                "client_order_id": r.client_order_id,
                "exchange_order_id": r.exchange_order_id,
                "symbol": r.symbol,
                "result": result,
            },
        )

    def _book_fill(self, f: Fill) -> None:
        e = self._e
        self.seen_fills.add(f.fill_id)
        self.unknown.touched.add(f.symbol)
        if self.fills_since is None or f.ts > self.fills_since:
            self.fills_since = f.ts
        order = e.book.orders.get(f.client_order_id) or e.store.get_order(f.client_order_id)
        if order is None:
            # Not booked: its coins show up as an unknown holding (reconcile.unknown_holdings).
            log.warning(
                "fill %s for unknown order %s not booked; its coins are checked as an unknown "
                "holding",
                f.fill_id,
                f.client_order_id,
            )
            e.recorder.event(
                "reconcile", {"what": "foreign_fill", "fill_id": f.fill_id, "symbol": f.symbol}
            )
            return
        try:
            updated = apply_fill(order, f)
            booking = book_fill(e.portfolio, f, strategy=order.strategy)
        except (Overfill, IllegalTransition, PortfolioError, ValueError) as exc:
            log.error("fill %s not booked: %s", f.fill_id, exc)
            e.recorder.event(
                "reconcile", {"what": "fill_refused", "fill_id": f.fill_id, "error": str(exc)}
            )
            return
        e.book.put(updated)
        e.portfolio = booking.portfolio
        e.state = note_fill(
            e.state, f.symbol, f.ts, stop_out=order.reason == "stop_loss", risk=e.config.risk
        )
        e.store.record_fill(f, updated, booking, e.portfolio)
        e.recorder.fill(
            f, realized=booking.realized, strategy=order.strategy, order_reason=order.reason
        )
        e.telemetry.event("fill", side=f.side.value)
