"""Market data passed through to another adapter, for the wrappers that only change where
orders go (DRY_RUN, PAPER, shadow)."""

from __future__ import annotations

from decimal import Decimal

from core.models import Candle, OrderBook
from core.ports import Exchange


class MarketDataPassthrough:
    """Set `self._market_data` in __init__; candles, books and fees come from it."""

    _market_data: Exchange

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[Candle]:
        return await self._market_data.fetch_ohlcv(symbol, timeframe, since_ms, limit)

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        return await self._market_data.fetch_order_book(symbol, limit)

    async def fetch_fees(self) -> dict[str, tuple[Decimal, Decimal]]:
        return await self._market_data.fetch_fees()
