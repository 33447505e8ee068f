"""Ports: the async surfaces the pipeline needs from the world. Adapters live in infra/."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from pydantic import BaseModel

from core.context import StrategyContext
from core.indicators import Indicator
from core.models import (
    Balance,
    Candle,
    EngineState,
    Fill,
    Market,
    Order,
    OrderBook,
    OrderIntent,
    Position,
    Quote,
    TradeProposal,
)
from core.portfolio import Booking, Portfolio


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


# -- candles and the engine's store (feeds: infra/feeds.py, infra/live_feed.py; stores:
# runner/store.py). Kept together so this block merges as one piece.

# Where a feed delivers each closed candle: `sink(symbol, ts, open, high, low, close, volume)`,
# ts the candle's open time in epoch ms, prices as floats (indicators are float math).
CandleSink: TypeAlias = Callable[[str, int, float, float, float, float, float], Any]


class CandleFeed(Protocol):
    """Where closed candles come from: recorded files (ReplayFeed) or an exchange
    (ExchangeFeed). The engine asks `poll(now)` every cycle; a candle is delivered once, after
    it has closed (open time + timeframe <= now), oldest first per symbol."""

    timeframe_ms: int

    async def warmup(self, start_ms: int, bars: int, sink: CandleSink) -> int:
        """Deliver the history closed by `start_ms` (at least `bars` candles per symbol where
        the source has them); returns how many candles were delivered."""
        ...

    async def poll(self, now_ms: int, sink: CandleSink) -> int:
        """Deliver every candle closed by `now_ms` not delivered before; returns the count."""
        ...


class Store(Protocol):
    """What the engine persists and reads back: SqliteStore (the daemon, state.db) and
    MemoryStore (backtests) in runner/store.py."""

    def load_engine_state(self) -> EngineState: ...

    def load_positions(self) -> dict[str, Position]: ...

    def load_orders(self, *, live_only: bool = False) -> list[Order]: ...

    def load_fills(self) -> list[Fill]: ...

    def get_order(self, client_order_id: str) -> Order | None: ...

    def save_order(self, o: Order) -> None: ...

    def record_fill(
        self, f: Fill, order: Order, booking: Booking, portfolio: Portfolio
    ) -> None: ...

    def save_cycle(self, state: EngineState, portfolio: Portfolio, now_ms: int) -> None: ...

    def set_kill(self, on: bool, reason: str) -> None: ...

    def set_unknown_holdings(self, holdings: dict[str, str]) -> None: ...


class StrategyCatalog(Protocol):
    """The strategies a config may name, as the config loader (infra/config_loader.py) asks
    about them: infra may not import strategy, so runner hands it this (runner/strategy_loader.py
    adapts strategy.registry and the user-strategy loader). Problems are ConfigError lines."""

    def load(self, dirs: Sequence[Path]) -> None:
        """Import the user strategies in `dirs`, then installed packages' entry points."""
        ...

    def known(self) -> list[str]:
        """Every registered strategy name, sorted."""
        ...

    def params_model(self, name: str) -> type[BaseModel]:
        """The parameter model of a known strategy."""
        ...

    def required_features(self, name: str, params: BaseModel) -> frozenset[str]:
        """The feature keys the strategy reads with these parameters (its own code runs)."""
        ...

    def indicators(self, name: str) -> Sequence[type[Indicator]]:
        """The strategy's own indicator kinds (its `indicators`), besides the built-ins."""
        ...

    def origin(self, name: str) -> str | None:
        """The file a user strategy was loaded from; None for a built-in."""


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
    def indicators(self) -> Sequence[type[Indicator]]:
        """Its own indicator kinds, usable in its feature keys besides the built-ins."""
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
