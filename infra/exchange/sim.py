"""SimExchange: the matching engine behind backtests, PAPER mode and the fake Binance server.

Market data comes in through `on_candle` (a closed candle) or `set_quote` (PAPER: real quotes);
resting orders are matched against each closed candle by the fill model in docs/sim_exchange.md.
The async methods implement `core.ports.Exchange` and never await anything, so a backtest can
drive them from one coroutine at no scheduling cost.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from core.clock import Clock
from core.clock import timeframe_ms as timeframe_to_ms
from core.errors import BadSymbol, DuplicateOrder, ExchangeError, InvalidOrder, OrderNotFound
from core.models import (
    BPS,
    Balance,
    Candle,
    Fill,
    Market,
    MarketStatus,
    Order,
    OrderBook,
    OrderIntent,
    OrderStatus,
    Quote,
    QuoteBoard,
)
from infra.exchange.sim_account import SimAccount
from infra.exchange.sim_book import SimQuoteBoard, SymbolBook, row_to_candle
from infra.exchange.sim_config import SimConfig
from infra.exchange.sim_matching import Matcher
from infra.exchange.sim_orders import SimOrder
from infra.exchange.sim_prices import synthetic_book
from infra.exchange.sim_rules import admit
from infra.exchange.sim_state import dump_state, parse_state


class UnsupportedTimeframe(ExchangeError):
    """The sim keeps candles of one timeframe only; another one was asked for."""


class SimExchange:
    """A deterministic matching engine with maker/taker fees, slippage, partial fills, latency."""

    def __init__(
        self,
        *,
        markets: Mapping[str, Market],
        config: SimConfig,
        rng: random.Random,
        clock: Clock,
        timeframe_ms: int,
        name: str = "sim",
        history_size: int = 1000,
    ) -> None:
        if timeframe_ms <= 0:
            raise ValueError(f"timeframe_ms must be positive, got {timeframe_ms}")
        if history_size <= 0:
            raise ValueError(f"history_size must be positive, got {history_size}")
        self.name = name
        self._rng = rng
        self._clock = clock
        self._tf_ms = timeframe_ms
        self._books: dict[str, SymbolBook] = {}
        self._half_spread = config.synthetic_spread_bps / BPS / 2
        self._fees: dict[str, tuple[Decimal, Decimal]] = {}
        for symbol, market in markets.items():
            if symbol != market.symbol:
                raise ValueError(
                    f"markets key {symbol!r} differs from its symbol {market.symbol!r}"
                )
            maker = config.maker_fee if config.maker_fee is not None else market.maker_fee
            taker = config.taker_fee if config.taker_fee is not None else market.taker_fee
            if maker >= 1 or taker >= 1:
                raise ValueError(f"{symbol}: fee rates must be below 1 (got {maker}, {taker})")
            self._books[symbol] = SymbolBook(
                market, history_size, half_spread=self._half_spread, timeframe_ms=timeframe_ms
            )
            self._fees[symbol] = (maker, taker)
        self._boards: dict[tuple[str, ...], SimQuoteBoard] = {}
        self._cap = config.participation_cap
        self._account = SimAccount(config.starting_balances)
        self._matcher = Matcher(
            config=config, fees=self._fees, account=self._account, rng=rng, clock=clock
        )
        self._markets: dict[str, Market] | None = None
        self._orders: dict[str, SimOrder] = {}  # every order ever accepted, by client order id
        self._seq = 0

    @property
    def timeframe_ms(self) -> int:
        return self._tf_ms

    # ---- market data in -------------------------------------------------------------------

    def on_candle(
        self,
        symbol: str,
        ts: int,
        o: float,
        h: float,
        l: float,  # noqa: E741 (the spec'd name; callers pass it positionally)
        c: float,
        v: float,
    ) -> list[Fill]:
        """Feed one CLOSED candle (ts = its open time); returns the fills it caused.

        A backtest calls this for every candle of every pair (a million times for a year of
        15 pairs), so the everyday path is a lookup, one chained check and an append; the
        quote, last price and spread are derived from the history when asked for."""
        try:
            book = self._books[symbol]
        except KeyError:
            raise self._refusal(symbol, ts, (o, h, l, c, v)) from None
        # One comparison per `and` (not chained): Python specialises those for floats. NaN
        # fails every one of them, so it is refused too.
        if ts <= book.last_ts or not (
            l > 0.0 and l <= o and o <= h and l <= c and c <= h and v >= 0.0
        ):
            raise self._refusal(symbol, ts, (o, h, l, c, v))
        book.last_ts = ts
        book.history.append((ts, o, h, l, c, v))
        if book.orders:
            return self._matcher.match(book, ts, o, h, l, c, v)
        return []

    def _refusal(self, symbol: str, ts: int, ohlcv: tuple[float, ...]) -> Exception:
        """Why on_candle refused a candle: an unknown symbol, an old one, or a bad one."""
        book = self._books.get(symbol)
        if book is None:
            return BadSymbol(f"{self.name}: unknown symbol {symbol!r}")
        if ts <= book.last_ts:
            return ValueError(
                f"{symbol}: candle at {ts} is not newer than the last one ({book.last_ts}); "
                "feed each closed candle once, oldest first"
            )
        o, h, l, c, v = ohlcv  # noqa: E741
        return ValueError(
            f"{symbol}: bad candle at {ts}: need 0 < low <= open, close <= high and "
            f"volume >= 0, got o={o} h={h} l={l} c={c} v={v}"
        )

    def candle_listener(self) -> Any:
        """What a feed should call for each closed candle: `on_candle`."""
        return self.on_candle

    def set_quote(self, quote: Quote) -> None:
        """Push a real quote (PAPER mode); the newer of it and the candle-derived one is used."""
        book = self._book(quote.symbol)
        if not 0 < quote.bid <= quote.ask:
            raise ValueError(f"{quote.symbol}: quote needs 0 < bid <= ask, got {quote}")
        book.pushed = quote

    def set_market_status(self, symbol: str, status: MarketStatus) -> None:
        book = self._book(symbol)
        book.market = replace(book.market, status=MarketStatus(status))
        self._markets = None

    def set_balance(self, asset: str, free: Decimal) -> None:
        """Set an asset's free amount (tests, the fake server's admin hooks); `used` is kept."""
        self._account.set_free(asset, free)

    # ---- orders ---------------------------------------------------------------------------

    def _book(self, symbol: str) -> SymbolBook:
        try:
            return self._books[symbol]
        except KeyError:
            raise BadSymbol(f"{self.name}: unknown symbol {symbol!r}") from None

    async def create_order(self, intent: OrderIntent) -> Order:
        book = self._book(intent.symbol)
        coid = intent.client_order_id
        if not coid:
            raise InvalidOrder(f"{intent.symbol}: the client order id is empty")
        if coid in self._orders:
            raise DuplicateOrder(f"{intent.symbol}: client order id {coid!r} was already used")
        account = self._account
        adm = admit(intent, book.market, book.quote(), self._fees[intent.symbol], account.free)
        account.shift(adm.asset, -adm.reserve, adm.reserve)
        self._seq += 1
        now = self._clock.now_ms()
        order = SimOrder(
            seq=self._seq,
            client_order_id=coid,
            symbol=intent.symbol,
            side=intent.side,
            order_type=intent.order_type,
            amount=intent.amount,
            price=adm.price,
            status=OrderStatus.OPEN,
            created_ms=now,
            updated_ms=now,
            strategy=intent.strategy,
            post_only=intent.post_only,
            reduce_only=intent.reduce_only,
            reason=intent.reason,
            reserved=adm.reserve,
            taker_at_placement=adm.taker,
        )
        self._orders[coid] = order
        book.orders.append(order)
        return order.to_order()

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        order = self._lookup(client_order_id, symbol)
        if order.status.is_terminal:
            raise OrderNotFound(
                f"{symbol}: order {client_order_id!r} is already {order.status}; nothing to cancel"
            )
        self._matcher.finish(self._books[symbol], order, OrderStatus.CANCELED, "canceled")
        return order.to_order()

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        return self._lookup(client_order_id, symbol).to_order()

    def _lookup(self, client_order_id: str, symbol: str) -> SimOrder:
        self._book(symbol)
        order = self._orders.get(client_order_id)
        if order is None or order.symbol != symbol:
            raise OrderNotFound(f"{symbol}: no order with client order id {client_order_id!r}")
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        books = [self._book(symbol)] if symbol is not None else self._books.values()
        live = [o for b in books if b.orders for o in b.orders]
        if not live:
            return []  # the usual answer; engines ask every cycle
        return [o.to_order() for o in sorted(live, key=_order_seq)]

    async def fetch_my_trades(
        self, symbol: str | None = None, since_ms: int | None = None
    ) -> list[Fill]:
        if symbol is not None:
            self._book(symbol)
        fills = self._account.fills
        start = 0 if since_ms is None else _first_since(fills, since_ms)
        if symbol is None:
            return fills[start:]
        return [f for f in fills[start:] if f.symbol == symbol]

    # ---- account and market data out -------------------------------------------------------

    async def fetch_balances(self) -> dict[str, Balance]:
        return self._account.balances()

    async def fetch_quotes(self, symbols: Sequence[str]) -> QuoteBoard:
        # Engines ask for the same symbols every cycle: the board over them is reused (it
        # reads the books live, so it is as fresh as a new one).
        key = tuple(symbols)
        board = self._boards.get(key)
        if board is None:
            board = SimQuoteBoard({s: self._book(s) for s in key})
            if len(self._boards) >= 8:
                self._boards.clear()
            self._boards[key] = board
        return board

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[Candle]:
        book = self._book(symbol)
        try:
            tf = timeframe_to_ms(timeframe)
        except ValueError as e:
            raise UnsupportedTimeframe(str(e)) from e
        if tf != self._tf_ms:
            raise UnsupportedTimeframe(
                f"{self.name} keeps only {self._tf_ms} ms candles; {timeframe!r} for {symbol} is "
                "not available (resample them yourself or feed the sim that timeframe)"
            )
        if limit is not None and limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        rows = list(book.history)
        if since_ms is not None:
            rows = [r for r in rows if r[0] >= since_ms]
            if limit is not None:
                rows = rows[:limit]
        elif limit is not None:
            rows = rows[-limit:]
        return [row_to_candle(r) for r in rows]

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        """A synthetic book: `limit` levels one increment apart from the quote; each side holds
        in total what one order may take from the last candle (participation_cap x volume)."""
        book = self._book(symbol)
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        quote = book.quote()
        if quote is None:
            return OrderBook(symbol=symbol, bids=(), asks=(), ts=0)
        volume = book.history[-1][5] if book.history else 0.0
        return synthetic_book(quote, book.market, volume * float(self._cap) / limit, limit)

    async def fetch_fees(self) -> dict[str, tuple[Decimal, Decimal]]:
        return dict(self._fees)

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        # The same dict until a status changes: engines re-read markets every minute.
        if self._markets is None:
            self._markets = {s: b.market for s, b in self._books.items()}
        return self._markets

    async def close(self) -> None:
        return None

    # ---- persistence ----------------------------------------------------------------------

    def snapshot_state(self) -> dict[str, Any]:
        """The whole mutable state as JSON-able data (Decimals as strings)."""
        return dump_state(
            name=self.name,
            timeframe_ms=self._tf_ms,
            next_seq=self._seq,
            free=self._account.free,
            used=self._account.used,
            orders=self._orders.values(),
            fills=self._account.fills,
            books=self._books,
            rng=self._rng.getstate(),
        )

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Replace the whole state with a snapshot; nothing changes if it does not validate.

        The injected rng gets the snapshot's generator state, so fills continue exactly as they
        would have in the process that took the snapshot.
        """
        markets = {s: b.market for s, b in self._books.items()}
        st = parse_state(state, timeframe_ms=self._tf_ms, markets=markets)
        self._account.restore(st.free, st.used, st.fills)
        self._orders, self._seq = st.orders, st.next_seq
        live = sorted((o for o in st.orders.values() if o.status.is_live), key=lambda o: o.seq)
        for symbol, book in self._books.items():
            book.restore(st.symbols.get(symbol), [o for o in live if o.symbol == symbol])
        self._markets = None  # statuses may differ in the snapshot
        self._rng.setstate(st.rng)


def _first_since(fills: list[Fill], since_ms: int) -> int:
    """Index of the first fill at or after `since_ms` (fills sorted by ts). Engines ask for
    the fills since the newest they have seen, every cycle: walking back from the end stops
    at once (a bisect would call its key a dozen times), and the walk is never longer than the
    answer."""
    i = len(fills)
    while i and fills[i - 1].ts >= since_ms:
        i -= 1
    return i


def _order_seq(order: SimOrder) -> int:
    return order.seq
