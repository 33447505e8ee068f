"""Coins the venue holds that the state does not know (reconcile.unknown_holdings).

After a lost state.db, or coins bought by hand, the venue shows a base balance larger than the
position vigil keeps. Such coins would get no stop and count toward no cap, so they are never
ignored silently. An excess counts once it has been seen in two reconciles in a row with no
fill booked on the symbol in between (a fill can land between the trade query and the balance
query) and is more than dust. Then, by policy:

- halt_entries (default): new entries are blocked (exits go on) while any remain;
- adopt: the coins become a position, strategy "adopted", its cost basis taken from the
  venue's most recent buy fills that are not vigil's, else from the mark; audited;
- ignore: left alone.

Every policy lists them on /health and in `vigil status`, and audits each one found or gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

from core.errors import ExchangeError
from core.models import Balance, Fill, Market, Order, Position, Quote, Side
from core.portfolio import Portfolio
from core.ports import Exchange
from core.sizing import is_dust
from runner.execution import OrderBookkeeper
from runner.recorder import Recorder

log = logging.getLogger("vigil.reconcile")

ADOPTED = "adopted"
SEEN_TWICE = 2


class HoldingsStore(Protocol):
    def get_order(self, client_order_id: str) -> Order | None: ...

    def set_unknown_holdings(self, holdings: dict[str, str]) -> None: ...


class UnknownHoldings:
    """Judges held coins against positions; hands back the portfolio (changed only by an
    adoption). `published` is what /health and `vigil status` list."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        book: OrderBookkeeper,
        store: HoldingsStore,
        recorder: Recorder,
        policy: str,
        quote: str,
        on_api_error: Callable[[int, str], None],
    ) -> None:
        self._ex = exchange
        self._book = book
        self._store = store
        self._rec = recorder
        self.policy = policy
        self._quote = quote
        self._api_error = on_api_error
        self._seen: dict[str, tuple[int, Decimal]] = {}  # symbol -> (times seen, excess)
        self.found: dict[str, Decimal] = {}  # symbol -> excess held beyond the state
        self.touched: set[str] = set()  # symbols with a fill booked in this reconcile
        self.published: dict[str, str] = {}
        self._blocks: tuple[str, ...] = ()
        self._excess_seen = False  # the last check found coins beyond the positions

    def entry_blocks(self) -> tuple[str, ...]:
        return self._blocks

    def idle(self) -> bool:
        """Nothing found, nothing being counted: the same inputs would find nothing."""
        return not (self._excess_seen or self._seen or self.found or self.touched)

    async def check(
        self,
        balances: Mapping[str, Balance],
        now_ms: int,
        portfolio: Portfolio,
        markets: Mapping[str, Market],
    ) -> Portfolio:
        excess = self._excess(balances, portfolio, markets)
        self._excess_seen = bool(excess)
        touched, self.touched = self.touched, set()
        for sym in [s for s in self._seen if s not in excess or s in touched]:
            del self._seen[sym]
        candidates: dict[str, Decimal] = {}
        for sym, amount in excess.items():
            if sym in touched:
                continue
            times = self._seen.get(sym, (0, amount))[0] + 1
            self._seen[sym] = (times, amount)
            if times >= SEEN_TWICE:
                candidates[sym] = amount
        quotes = await self._quotes(sorted(candidates), now_ms) if candidates else {}
        for sym, amount in list(candidates.items()):
            q = quotes.get(sym)
            market = markets[sym]
            if q is not None and is_dust(amount, q.last, market):
                candidates.pop(sym)
                continue
            if amount < market.min_size:
                candidates.pop(sym)
        for sym in sorted(set(self.found) - set(candidates)):
            self._gone(sym, now_ms)
        for sym, amount in sorted(candidates.items()):
            if self.policy == "adopt":
                portfolio = await self._adopt(
                    sym, amount, quotes.get(sym), now_ms, portfolio, markets[sym]
                )
            elif self.found.get(sym) != amount:
                self._report(sym, amount, now_ms, markets[sym])
        self._publish()
        return portfolio

    def _excess(
        self,
        balances: Mapping[str, Balance],
        portfolio: Portfolio,
        markets: Mapping[str, Market],
    ) -> dict[str, Decimal]:
        quote = self._quote
        positions = portfolio.positions
        out: dict[str, Decimal] = {}
        for asset, bal in balances.items():  # a few assets, not the venue's thousand markets
            if asset == quote:
                continue
            total = bal.free + bal.used
            if total <= 0:
                continue
            sym = f"{asset}/{quote}"
            market = markets.get(sym)
            if market is None or market.base != asset:
                continue  # not tradable against our quote: nothing vigil could do with it
            pos = positions.get(sym)
            extra = total - pos.quantity if pos is not None else total
            if extra > 0:
                out[sym] = extra
        return out

    async def _quotes(self, symbols: list[str], now_ms: int) -> Mapping[str, Quote]:
        try:
            return await self._ex.fetch_quotes(symbols)
        except ExchangeError as exc:
            self._api_error(now_ms, type(exc).__name__)
            return {}

    def _report(self, sym: str, amount: Decimal, now_ms: int, market: Market) -> None:
        first = sym not in self.found
        self.found[sym] = amount
        what = "new entries HALTED" if self.policy == "halt_entries" else "left alone"
        log.warning(
            "%s: the venue holds %s %s more than vigil's state knows; policy %s: %s",
            sym,
            amount,
            market.base,
            self.policy,
            what,
        )
        self._rec.event(
            "reconcile",
            {
                "ts": now_ms,
                "what": "unknown_holding",
                "symbol": sym,
                "amount": str(amount),
                "policy": self.policy,
                "first_seen": first,
            },
            sync=True,
        )

    def _gone(self, sym: str, now_ms: int) -> None:
        amount = self.found.pop(sym)
        log.info("%s: the unknown holding of %s is gone", sym, amount)
        self._rec.event(
            "reconcile",
            {"ts": now_ms, "what": "unknown_holding_gone", "symbol": sym, "amount": str(amount)},
        )

    async def _adopt(
        self,
        sym: str,
        amount: Decimal,
        quote: Quote | None,
        now_ms: int,
        portfolio: Portfolio,
        market: Market,
    ) -> Portfolio:
        price, source = await self._cost_basis(sym, amount, now_ms)
        if price is None:
            if quote is None or quote.last <= 0:
                # no price yet: listed, retried next cycle
                self._report(sym, amount, now_ms, market)
                return portfolio
            price, source = quote.last, "mark"
        pos = portfolio.positions.get(sym)
        cost = amount * price
        if pos is None:
            new = Position(
                symbol=sym,
                quantity=amount,
                avg_entry_price=price,
                entry_fees=Decimal(0),
                opened_ms=now_ms,
                peak_price=price,
                strategy=ADOPTED,
                cost=cost,
            )
        else:
            qty = pos.quantity + amount
            total = pos.cost_basis + cost
            new = replace(pos, quantity=qty, avg_entry_price=total / qty, cost=total)
        positions = dict(portfolio.positions)
        positions[sym] = new
        portfolio = replace(portfolio, positions=MappingProxyType(positions))
        self.found.pop(sym, None)
        self._seen.pop(sym, None)
        log.warning(
            "%s: ADOPTED %s %s held on the venue but unknown to the state, at %s (%s)",
            sym,
            amount,
            market.base,
            price,
            source,
        )
        self._rec.event(
            "reconcile",
            {
                "ts": now_ms,
                "what": "adopted",
                "symbol": sym,
                "amount": str(amount),
                "price": str(price),
                "cost_source": source,
                "position_quantity": str(new.quantity),
                "flag": "cost basis not from vigil's own fills",
            },
            sync=True,
        )
        return portfolio

    async def _cost_basis(
        self, sym: str, amount: Decimal, now_ms: int
    ) -> tuple[Decimal | None, str]:
        """Average price of the venue's newest buy fills not placed by vigil that cover
        `amount`; None when they do not cover it."""
        try:
            fills = await self._ex.fetch_my_trades(sym)
        except ExchangeError as exc:
            self._api_error(now_ms, type(exc).__name__)
            return None, ""
        left = amount
        paid = Decimal(0)
        for f in sorted(fills, key=lambda f: f.ts, reverse=True):
            if f.side is not Side.BUY or self._ours(f):
                continue
            take = min(left, f.amount)
            paid += take * f.price
            left -= take
            if left <= 0:
                return paid / amount, "venue fills"
        return None, ""

    def _ours(self, f: Fill) -> bool:
        coid = f.client_order_id
        return coid in self._book.orders or self._store.get_order(coid) is not None

    def _publish(self) -> None:
        if not self.found and not self.published:
            return  # nothing found before or now (the usual cycle)
        now = {s: str(a) for s, a in sorted(self.found.items())}
        if now != self.published:
            self.published = now
            self._store.set_unknown_holdings(now)
        halt = self.policy == "halt_entries"
        self._blocks = tuple(f"unknown_holdings:{s}" for s in now) if halt else ()
