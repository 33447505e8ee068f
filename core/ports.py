"""Ports: the async surfaces the pipeline needs from the world. Adapters live in infra/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from core.context import StrategyContext
from core.models import (
    Balance,
    Candle,
    Fill,
    Market,
    Order,
    OrderBook,
    OrderIntent,
    Quote,
    TradeProposal,
)


class Exchange(Protocol):
    """Shaped after ccxt's unified API; every method returns domain types.

    Errors are the ones in core.errors. `create_order` is idempotent by client order id:
    an adapter that cannot tell whether a submit landed looks the id up before anything else.
    """

    name: str

    async def load_markets(self, reload: bool = False) -> dict[str, Market]: ...

    async def fetch_quotes(self, symbols: Sequence[str]) -> Mapping[str, Quote]:
        """Latest quotes; adapters may return a QuoteBoard that builds them lazily."""
        ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[Candle]: ...

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook: ...

    async def fetch_balances(self) -> dict[str, Balance]: ...

    async def create_order(self, intent: OrderIntent) -> Order: ...

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order: ...

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def fetch_my_trades(
        self, symbol: str | None = None, since_ms: int | None = None
    ) -> list[Fill]: ...

    async def fetch_fees(self) -> dict[str, tuple[Decimal, Decimal]]:
        """symbol -> (maker, taker) rates."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- strategies


class Strategy(Protocol):
    """A strategy as the cycle runs it. `strategy.base.BaseStrategy` implements it; the runner
    resolves the configured ones (strategy.registry.resolve) and hands the instances to the
    cycle, so core never looks a strategy up by name."""

    @property
    def name(self) -> str:
        """The registered name, as in strategies.yaml."""
        ...

    @property
    def params(self) -> Any:
        """Its validated parameters (its own pydantic model), handed to it in every context."""
        ...

    @property
    def history_bars(self) -> int:
        """Raw candles it reads through StrategyContext.history (0: none)."""
        ...

    def required_features(self, params: Any) -> frozenset[str]:
        """Feature keys it reads from ctx.features[symbol].values with these params."""
        ...

    def propose(self, ctx: StrategyContext) -> Sequence[TradeProposal]:
        """Its proposals for this cycle; pure."""
        ...
