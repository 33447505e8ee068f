"""DRY_RUN: real decisions on real data, nothing sent. Market data and balances pass through
to the wrapped adapter; orders are recorded as not sent and never reach it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from core.errors import OrderNotFound
from core.models import (
    Balance,
    Fill,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    Quote,
)
from core.orders import new_order, transition
from core.ports import Exchange
from infra.exchange.passthrough import MarketDataPassthrough

DRY_RUN_NOTE = "dry_run: not sent"


class DryRunExchange(MarketDataPassthrough):
    def __init__(self, inner: Exchange, *, now_ms: Callable[[], int]) -> None:
        self._market_data = self._inner = inner
        self._now_ms = now_ms
        self.name = f"dry_run({inner.name})"
        self._orders: dict[str, Order] = {}

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        return await self._inner.load_markets(reload)

    async def fetch_quotes(self, symbols: Sequence[str]) -> Mapping[str, Quote]:
        return await self._inner.fetch_quotes(symbols)

    async def fetch_balances(self) -> dict[str, Balance]:
        return await self._inner.fetch_balances()

    async def create_order(self, intent: OrderIntent) -> Order:
        now = self._now_ms()
        order = transition(new_order(intent, now), OrderStatus.CANCELED, now)
        self._orders[intent.client_order_id] = order
        return order

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        raise OrderNotFound(f"{client_order_id}: DRY_RUN never sent it")

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        try:
            return self._orders[client_order_id]
        except KeyError:
            raise OrderNotFound(client_order_id) from None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return []

    async def fetch_my_trades(
        self, symbol: str | None = None, since_ms: int | None = None
    ) -> list[Fill]:
        return []

    async def close(self) -> None:
        await self._inner.close()
