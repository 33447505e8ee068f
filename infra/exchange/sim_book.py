"""Per-symbol state of the simulated exchange: candle history, live orders, derived quotes.

`SymbolBook` holds what the sim keeps for one symbol; `SimQuoteBoard` is the lazy quote board
the engines read every cycle. Nothing here is public API; `infra.exchange.sim.SimExchange` is
the adapter others use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

from core.models import Candle, Market, Quote, QuoteBoard
from infra.exchange.sim_orders import SimOrder
from infra.exchange.sim_prices import PriceGrid, candle_last, candle_quote, float_spread_bps, to_dec

NEVER = -(2**63)  # last_ts before any candle: every real timestamp is newer

# One candle as fed to on_candle: (open_ts, open, high, low, close, volume), floats as given.
CandleRow = tuple[int, float, float, float, float, float]


class SimQuoteBoard(QuoteBoard):
    """Quotes built on first access: a backtest screens every symbol's spread each cycle but
    needs a full Decimal quote only for the few it trades or holds. It reads the books live,
    so one board serves every cycle."""

    __slots__ = ("_books",)

    def __init__(self, books: dict[str, SymbolBook]) -> None:
        super().__init__({})
        self._books = books

    def __getitem__(self, symbol: str) -> Quote:
        book = self._books.get(symbol)
        q = None if book is None else book.quote()
        if q is None:
            raise KeyError(symbol)
        return q

    def __iter__(self) -> Iterator[str]:
        return (s for s, b in self._books.items() if b.history or b.pushed is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, symbol: object) -> bool:
        b = self._books.get(symbol) if isinstance(symbol, str) else None
        return b is not None and (bool(b.history) or b.pushed is not None)

    # Marks and the universe ask these for every symbol, every cycle: a close already in the
    # book's memo is answered here without another call (with no pushed quote the candle's is
    # the newest), anything else by the book.

    def last(self, symbol: str) -> Decimal | None:
        book = self._books.get(symbol)
        if book is None:
            return None
        history = book.history
        if history and book.pushed is None:
            last = book.lasts.get(history[-1][4])
            if last is not None:
                return last
        return book.last()

    def spread_bps(self, symbol: str) -> float | None:
        book = self._books.get(symbol)
        if book is None:
            return None
        history = book.history
        if history and book.pushed is None:
            close = history[-1][4]
            spread = book.spreads.get(close)
            return book.spread_of(close) if spread is None else spread
        return book.spread_bps()


def row_to_candle(row: CandleRow) -> Candle:
    ts, o, h, lo, c, v = row
    return Candle(
        ts=ts, open=to_dec(o), high=to_dec(h), low=to_dec(lo), close=to_dec(c), volume=to_dec(v)
    )


class SymbolBook:
    """Everything the sim keeps for one symbol. Mutable, owned by one SimExchange.

    `on_candle` appends each closed candle to `history`; the quote, its last price and its
    float spread are derived from `history[-1]` when asked for. They depend on the close
    alone (and this market's constants), so they are cached by the close's value: the last
    price and the spread in a memo of recent closes (prices revisit the same levels: about
    three candles in four find theirs there), the quote for the last close. A restored history
    needs no invalidation."""

    __slots__ = (
        "_hi_f",
        "_hi_k",
        "_lo_f",
        "_lo_k",
        "_quote",
        "_quote_close",
        "_tf",
        "grid",
        "history",
        "last_ts",
        "lasts",
        "market",
        "orders",
        "pushed",
        "spreads",
    )

    def __init__(
        self, market: Market, history_size: int, *, half_spread: Decimal, timeframe_ms: int
    ) -> None:
        self.market = market
        self.grid = PriceGrid(market.price_increment)  # increments never change, statuses do
        self._tf = timeframe_ms  # a candle's quote is stamped at its close: open time + this
        self._lo_k, self._hi_k = 1 - half_spread, 1 + half_spread
        half_f = float(half_spread)
        self._lo_f, self._hi_f = 1.0 - half_f, 1.0 + half_f
        self.history: deque[CandleRow] = deque(maxlen=history_size)
        self.last_ts = NEVER
        self.pushed: Quote | None = None  # from set_quote (PAPER mode)
        self.orders: list[SimOrder] = []  # live orders, oldest first
        self.spreads: dict[float, float] = {}  # close -> float_spread_bps
        self.lasts: dict[float, Decimal] = {}  # close -> candle_last
        self._quote_close = math.nan  # equal to no close
        self._quote: Quote | None = None

    def _candle(self) -> CandleRow | None:
        """The last candle, when the quote derived from it is newer than any pushed quote."""
        history = self.history
        if not history:
            return None
        row = history[-1]
        pushed = self.pushed
        return row if pushed is None or pushed.ts < row[0] + self._tf else None

    def spread_bps(self) -> float | None:
        """The spread of `quote()` in float, without building it (universe screening)."""
        row = self._candle()
        if row is None:
            return None if self.pushed is None else float(self.pushed.spread_bps)
        spread = self.spreads.get(row[4])
        return self.spread_of(row[4]) if spread is None else spread

    def spread_of(self, close: float) -> float:
        """float_spread_bps of a close not in the memo yet, remembered."""
        spread = float_spread_bps(close, self._lo_f, self._hi_f, self.grid.inc_f)
        spreads = self.spreads
        if len(spreads) >= MEMO_SIZE:
            spreads.clear()  # prices drift: the next closes are near the current one
        spreads[close] = spread
        return spread

    def last(self) -> Decimal | None:
        """`quote().last`, without building a Quote for a candle-derived price."""
        row = self._candle()
        if row is None:
            return None if self.pushed is None else self.pushed.last
        close = row[4]
        last = self.lasts.get(close)
        if last is None:
            last = candle_last(self.grid, to_dec(float(close)))
            _remember(self.lasts, close, last)
        return last

    def quote(self) -> Quote | None:
        """The newest of the pushed quote and the one derived from the last candle."""
        row = self._candle()
        if row is None:
            return self.pushed
        ts, close = row[0] + self._tf, row[4]
        q = self._quote
        if q is None or q.ts != ts or close != self._quote_close:
            q = candle_quote(self.market.symbol, self.grid, close, self._lo_k, self._hi_k, ts)
            self._quote, self._quote_close = q, close
        return q

    def restore(self, state: Any, orders: list[SimOrder]) -> None:
        """Take a snapshot's view of this symbol (sim_state.SymbolState, or None for none)."""
        self.orders = orders
        self.history.clear()
        self.pushed = None
        self.last_ts = NEVER
        if state is not None:
            self.market = replace(self.market, status=state.status)
            self.history.extend(state.history)
            self.pushed = state.pushed
            if self.history:
                self.last_ts = self.history[-1][0]


MEMO_SIZE = 4096  # closes remembered per symbol and value: about 0.5 MB each when full


def _remember(memo: dict[float, Any], close: float, value: Any) -> None:
    if len(memo) >= MEMO_SIZE:
        memo.clear()  # prices drift: the next closes are near the current one, not the old
    memo[close] = value
