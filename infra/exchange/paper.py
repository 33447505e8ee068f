"""PAPER: real market data from a venue, fills from the SimExchange.

Market data (markets, quotes, candles, books, fees) passes through to the data adapter; the
paper wallet, orders and fills live in a SimExchange built from the venue's own markets. The
sim matches resting orders on the venue's closed candles (the live feed calls `on_candle`) and
checks post-only orders against the venue's live quotes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from core.errors import ExchangeUnavailable
from core.models import Balance, Fill, Market, Order, OrderIntent, Quote
from core.ports import Exchange
from infra.exchange.passthrough import MarketDataPassthrough
from infra.exchange.sim import SimExchange

SimFactory = Callable[[Mapping[str, Market]], SimExchange]


class PaperExchange(MarketDataPassthrough):
    def __init__(self, *, data: Exchange, sim_factory: SimFactory) -> None:
        self.name = f"paper({data.name})"
        self._market_data = self._data = data
        self._factory = sim_factory
        self._sim: SimExchange | None = None
        self._markets: dict[str, Market] = {}

    @property
    def sim(self) -> SimExchange:
        if self._sim is None:
            raise ExchangeUnavailable(f"{self.name}: markets not loaded yet")
        return self._sim

    def on_candle(
        self, symbol: str, ts: int, o: float, h: float, lo: float, c: float, v: float
    ) -> None:
        if self._sim is not None and symbol in self._markets:
            self._sim.on_candle(symbol, ts, o, h, lo, c, v)

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        markets = await self._data.load_markets(reload)
        if self._sim is None:
            self._sim = self._factory(markets)
            self._markets = dict(markets)
        else:
            # The venue's status changes reach the paper book: a halted product stops filling.
            for sym, m in markets.items():
                known = self._markets.get(sym)
                if known is not None and known.status is not m.status:
                    self._sim.set_market_status(sym, m.status)
                    self._markets[sym] = m
        return {s: self._markets[s] for s in self._markets}

    async def fetch_quotes(self, symbols: Sequence[str]) -> Mapping[str, Quote]:
        quotes = await self._data.fetch_quotes(symbols)
        sim = self._sim
        if sim is not None:
            for sym in symbols:
                q = quotes.get(sym)
                if q is not None and sym in self._markets and 0 < q.bid <= q.ask:
                    sim.set_quote(q)
        return quotes

    async def fetch_balances(self) -> dict[str, Balance]:
        return await self.sim.fetch_balances()

    async def create_order(self, intent: OrderIntent) -> Order:
        return await self.sim.create_order(intent)

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        return await self.sim.cancel_order(client_order_id, symbol)

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        return await self.sim.fetch_order(client_order_id, symbol)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self.sim.fetch_open_orders(symbol)

    async def fetch_my_trades(
        self, symbol: str | None = None, since_ms: int | None = None
    ) -> list[Fill]:
        return await self.sim.fetch_my_trades(symbol, since_ms)

    async def close(self) -> None:
        await self._data.close()
