"""Reconciliation: the exchange's account into the engine's view, every cycle and at start.

Fills first (they move money, and are booked once by fill id, so fills missed while the
daemon was down are booked when it comes back), then order states (an order no longer open
is looked up to learn how it ended), then balances: the exchange is the truth for cash, and
a holding smaller than our position shrinks the position once the gap has been seen twice
(one look could race a fill that has not reached us yet). Orders nobody here placed are
reported and, by policy (`execution.foreign_orders`), left alone or canceled.

The reconciler never holds the engine: it gets the exchange, the order book, the store and
the recorder, is handed the engine's account values (portfolio, state, markets) each run and
hands back new ones, which the engine assigns. It keeps only its own memory (fills seen,
orders reported, holdings short).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import NamedTuple, Protocol

from core.config import PipelineConfig
from core.cycle import note_fill
from core.errors import ExchangeError, OrderNotFound
from core.models import Balance, EngineState, Fill, Market, Order, OrderStatus
from core.orders import IllegalTransition, Overfill, apply_fill, merge_remote
from core.portfolio import Booking, Portfolio, PortfolioError, resize_position
from core.portfolio import apply_fill as book_fill
from core.ports import Exchange
from runner.execution import OrderBookkeeper
from runner.holdings import HoldingsStore, UnknownHoldings
from runner.recorder import Recorder

log = logging.getLogger("vigil.reconcile")


class ReconcileStore(HoldingsStore, Protocol):
    def save_order(self, o: Order) -> None: ...

    def record_fill(
        self, f: Fill, order: Order, booking: Booking, portfolio: Portfolio
    ) -> None: ...


class _HoldingsInputs(NamedTuple):
    balances: dict[str, Balance]
    held: tuple[tuple[str, Decimal], ...]
    markets: Mapping[str, Market]


class Account(NamedTuple):
    """The engine's account values a reconcile starts from and hands back."""

    portfolio: Portfolio
    state: EngineState


class Reconciler:
    def __init__(
        self,
        *,
        config: PipelineConfig,
        exchange: Exchange,
        book: OrderBookkeeper,
        store: ReconcileStore,
        recorder: Recorder,
        quote: str,
        on_exchange_failed: Callable[[int, ExchangeError], None],
        on_api_error: Callable[[int, str], None],
        on_fill: Callable[[Fill], None] = lambda f: None,
    ) -> None:
        self._config = config
        self._ex = exchange
        self._book = book
        self._store = store
        self._rec = recorder
        self._quote = quote
        self._exchange_failed = on_exchange_failed
        self._api_error = on_api_error
        self._on_fill = on_fill
        self.seen_fills: set[str] = set()
        self.fills_since: int | None = None
        self._reported: set[str] = set()
        self._short: dict[str, int] = {}  # symbol -> consecutive cycles held < position
        # What the last holdings check read (balances, position quantities, markets), kept
        # when it found nothing off: the same inputs again give the same empty answer.
        self._steady: _HoldingsInputs | None = None
        self.unknown = UnknownHoldings(
            exchange=exchange,
            book=book,
            store=store,
            recorder=recorder,
            policy=config.reconcile.unknown_holdings,
            quote=quote,
            on_api_error=on_api_error,
        )

    def restore(self, fills: list[Fill]) -> None:
        self.seen_fills = {f.fill_id for f in fills}
        self.fills_since = fills[-1].ts if fills else None

    async def run(
        self, now_ms: int, missing: list[str], account: Account, markets: Mapping[str, Market]
    ) -> Account | None:
        """One reconcile. Returns the account after it, or None when the exchange could not
        be asked (`missing` then names what is missing)."""
        ex = self._ex
        try:
            fills = await ex.fetch_my_trades(since_ms=self.fills_since)
            remote_open = await ex.fetch_open_orders()
            balances = await ex.fetch_balances()
        except ExchangeError as exc:
            self._exchange_failed(now_ms, exc)
            missing.append("account")
            return None
        acct = account
        for f in fills:
            if f.fill_id not in self.seen_fills:
                acct = self._book_fill(f, acct)
        open_ids = set()
        book = self._book
        for r in remote_open:
            open_ids.add(r.client_order_id)
            local = book.orders.get(r.client_order_id)
            if local is None:
                await self._foreign(r, now_ms)
                continue
            acct = await self._settle(local, r, now_ms, missing, acct)
        if book.has_live():
            for local in book.live():
                if local.client_order_id in open_ids:
                    continue
                acct = await self._ended(local, now_ms, missing, acct)
        portfolio = self._cash(balances, now_ms, acct.portfolio)
        portfolio = await self._holdings(balances, now_ms, portfolio, markets)
        return acct if portfolio is acct.portfolio else acct._replace(portfolio=portfolio)

    async def _ended(self, local: Order, now_ms: int, missing: list[str], acct: Account) -> Account:
        """One of our live orders no longer open on the exchange: learn how it ended."""
        try:
            remote = await self._ex.fetch_order(local.client_order_id, local.symbol)
        except OrderNotFound:
            if local.status is OrderStatus.NEW:
                # Our intent never reached the venue (the submit died before sending).
                self._merge(local, replace(local, status=OrderStatus.FAILED))
            return acct
        except ExchangeError as exc:
            self._api_error(now_ms, type(exc).__name__)
            missing.append("orders")
            return acct
        return await self._settle(local, remote, now_ms, missing, acct)

    def _cash(self, balances: dict[str, Balance], now_ms: int, portfolio: Portfolio) -> Portfolio:
        bal = balances.get(self._quote)
        cash = bal.total if bal is not None else Decimal(0)
        if cash == portfolio.cash:
            return portfolio
        if self._book.orders or portfolio.positions:
            self._rec.event(
                "reconcile",
                {
                    "ts": now_ms,
                    "what": "cash",
                    "local": str(portfolio.cash),
                    "exchange": str(cash),
                },
            )
        return replace(portfolio, cash=cash)

    async def _holdings(
        self,
        balances: dict[str, Balance],
        now_ms: int,
        portfolio: Portfolio,
        markets: Mapping[str, Market],
    ) -> Portfolio:
        """Held coins against positions: fewer shrink a position, more are unknown holdings.
        Both judge (balances, positions, markets) alone, and count looks only while something
        is off: when the last look found nothing off and the inputs are equal by value, this
        look finds nothing either (the usual cycle in a backtest)."""
        positions = portfolio.positions
        held = tuple([(s, p.quantity) for s, p in positions.items()])
        steady = self._steady
        if (
            steady is not None
            and not self.unknown.touched
            and steady.held == held
            and steady.balances == balances
            and (steady.markets is markets or steady.markets == markets)
        ):
            return portfolio
        portfolio = self._short_holdings(balances, now_ms, portfolio, markets)
        portfolio = await self.unknown.check(balances, now_ms, portfolio, markets)
        quiet = not self._short and portfolio.positions is positions and self.unknown.idle()
        self._steady = _HoldingsInputs(balances, held, markets) if quiet else None
        return portfolio

    def _short_holdings(
        self,
        balances: dict[str, Balance],
        now_ms: int,
        portfolio: Portfolio,
        markets: Mapping[str, Market],
    ) -> Portfolio:
        for sym, pos in list(portfolio.positions.items()):
            market = markets.get(sym)
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
            self._rec.event(
                "reconcile",
                {
                    "ts": now_ms,
                    "what": "position",
                    "symbol": sym,
                    "local": str(pos.quantity),
                    "exchange": str(held),
                },
            )
            portfolio = resize_position(portfolio, sym, held)
        return portfolio

    async def _settle(
        self, local: Order, remote: Order, now_ms: int, missing: list[str], acct: Account
    ) -> Account:
        """Merge the exchange's view of one of our orders, its fills first. An order the
        exchange shows filled beyond the fills booked here got them after this cycle's trade
        query, or before a restart on a symbol not queried yet: merged first, it would read
        FILLED and its fills would then be refused, losing the money they moved."""
        if remote.filled > local.filled:
            try:
                fills = await self._ex.fetch_my_trades(local.symbol)
            except ExchangeError as exc:
                self._api_error(now_ms, type(exc).__name__)
                missing.append("fills")
                return acct
            for f in fills:
                if f.fill_id not in self.seen_fills:
                    acct = self._book_fill(f, acct)
            local = self._book.orders.get(local.client_order_id, local)
            if remote.filled > local.filled:
                return acct  # its trades are not visible yet: settle it next cycle
        self._merge(local, remote)
        return acct

    def _merge(self, local: Order, remote: Order) -> None:
        try:
            merged = merge_remote(local, remote)
        except (IllegalTransition, ValueError) as exc:
            log.error("order %s: exchange view refused: %s", local.client_order_id, exc)
            self._rec.event(
                "reconcile",
                {"what": "order", "client_order_id": local.client_order_id, "error": str(exc)},
            )
            return
        if merged is not local:
            self._book.put(merged)
            self._store.save_order(merged)

    async def _foreign(self, r: Order, now_ms: int) -> None:
        if r.client_order_id in self._reported:
            return
        self._reported.add(r.client_order_id)
        policy = self._config.execution.foreign_orders
        log.warning(
            "order %s on %s was not placed by this vigil; policy: %s",
            r.client_order_id or r.exchange_order_id,
            r.symbol,
            policy,
        )
        result = "left alone"
        if policy == "cancel" and r.client_order_id:
            try:
                await self._ex.cancel_order(r.client_order_id, r.symbol)
                result = "canceled"
            except ExchangeError as exc:
                result = f"cancel failed: {type(exc).__name__}"
        self._rec.event(
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

    def _book_fill(self, f: Fill, acct: Account) -> Account:
        self.seen_fills.add(f.fill_id)
        self.unknown.touched.add(f.symbol)
        if self.fills_since is None or f.ts > self.fills_since:
            self.fills_since = f.ts
        order = self._book.orders.get(f.client_order_id) or self._store.get_order(f.client_order_id)
        if order is None:
            # Not booked: its coins show up as an unknown holding (reconcile.unknown_holdings).
            log.warning(
                "fill %s for unknown order %s not booked; its coins are checked as an unknown "
                "holding",
                f.fill_id,
                f.client_order_id,
            )
            self._rec.event(
                "reconcile", {"what": "foreign_fill", "fill_id": f.fill_id, "symbol": f.symbol}
            )
            return acct
        try:
            updated = apply_fill(order, f)
            booking = book_fill(acct.portfolio, f, strategy=order.strategy)
        except (Overfill, IllegalTransition, PortfolioError, ValueError) as exc:
            log.error("fill %s not booked: %s", f.fill_id, exc)
            self._rec.event(
                "reconcile", {"what": "fill_refused", "fill_id": f.fill_id, "error": str(exc)}
            )
            return acct
        self._book.put(updated)
        state = note_fill(
            acct.state, f.symbol, f.ts, stop_out=order.reason == "stop_loss", risk=self._config.risk
        )
        self._store.record_fill(f, updated, booking, booking.portfolio)
        self._rec.fill(
            f, realized=booking.realized, strategy=order.strategy, order_reason=order.reason
        )
        self._on_fill(f)
        return Account(booking.portfolio, state)
