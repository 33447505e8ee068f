"""CcxtExchange: the Exchange port on ccxt's async API, for any ccxt exchange id.

Everything ccxt returns is parsed into domain types at this edge (ccxt_wire), every ccxt error
becomes one of core.errors (ccxt_errors), every request first passes our own rate limiter
(ratelimit: slow at 80% of a budget, pause at 90%, Retry-After and 418 bans honoured), reads are
retried with full-jitter backoff (retry), and an order whose submit outcome is unknown is
looked up by its client order id before anything is re-sent (retry.submit_idempotent).
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

from core.clock import Clock
from core.errors import (
    BadResponse,
    ExchangeError,
    ExchangeUnavailable,
    IpBanned,
    OrderNotFound,
    RateLimited,
)
from core.models import (
    Balance,
    Candle,
    Fill,
    Market,
    Order,
    OrderBook,
    OrderIntent,
    Quote,
    QuoteBoard,
)
from infra.exchange.ccxt_errors import translating
from infra.exchange.ccxt_factory import make_ccxt
from infra.exchange.ccxt_wire import (
    BalanceWire,
    OhlcvWire,
    OrderBookWire,
    OrderWire,
    TickerWire,
    TradeWire,
    parse_markets,
)
from infra.ratelimit import Budget, RateLimiter
from infra.retry import RetryPolicy, call_with_retries, submit_idempotent

log = logging.getLogger("vigil.exchange")
T = TypeVar("T")

# Request weights (Binance spot's own numbers; other venues are budgeted the same way, which
# is conservative for them). The "weight" budget is synced from X-MBX-USED-WEIGHT-1M.
WEIGHTS = {
    "markets": 20,
    "tickers": 80,
    "ticker": 2,
    "ohlcv": 2,
    "book": 5,
    "balance": 20,
    "order": 1,
    "cancel": 1,
    "fetch_order": 4,
    "open_orders": 6,
    "open_orders_all": 80,
    "my_trades": 20,
    "time": 1,
}
DEFAULT_BUDGETS = {
    "weight": Budget(capacity=1200, per_seconds=60),
    "orders": Budget(capacity=50, per_seconds=10),
}
# The query parameter each venue expects when an order is named by our client order id.
DOWN_HOLD_MS = 5_000
CLIENT_ID_LOOKUP = {"binance": "origClientOrderId", "mexc": "origClientOrderId"}


class CcxtExchange:
    def __init__(
        self,
        *,
        exchange_id: str,
        clock: Clock,
        rng: random.Random,
        api_key: str | None = None,
        api_secret: str | None = None,
        api_password: str | None = None,
        sandbox: bool = False,
        base_url: str | None = None,
        timeout_ms: int = 10_000,
        markets_refresh_s: int = 300,
        budgets: Mapping[str, Budget] | None = None,
        retry: RetryPolicy | None = None,
        quote_currency: str = "USDT",
        client: Any = None,
        notes: Callable[[str, dict[str, Any]], Any] | None = None,
        on_error: Callable[[ExchangeError], None] | None = None,
    ) -> None:
        self.name = exchange_id
        self._clock = clock
        self._rng = rng
        self._ex = client or make_ccxt(
            exchange_id,
            api_key=api_key,
            api_secret=api_secret,
            api_password=api_password,
            sandbox=sandbox,
            base_url=base_url,
            timeout_ms=timeout_ms,
        )
        self._secrets = tuple(s for s in (api_key, api_secret, api_password) if s)
        self._limiter = RateLimiter(
            clock=clock, budgets=budgets or DEFAULT_BUDGETS, sleep=clock.sleep
        )
        # Reads retry briefly: the next cycle retries anyway, and a long retry inside one
        # cycle holds up everything else in it.
        self._retry = retry or RetryPolicy(max_attempts=3, base_s=0.5, cap_s=4.0)
        self._orders_retry = RetryPolicy()
        self._notes = notes
        self._observe_error = on_error  # every failed request, retries included (metrics)
        self._down_until_ms = 0
        self._refresh_ms = markets_refresh_s * 1000
        self._markets: dict[str, Market] = {}
        self._markets_ms = -1
        self._quote = quote_currency
        self._order_ids: dict[str, str] = {}  # client order id -> venue order id
        self._unnamed: set[str] = set()  # venue order ids known to carry no client order id
        self._symbols: set[str] = set()  # symbols we have orders or holdings on
        self._guard = translating(
            headers=lambda: getattr(self._ex, "last_response_headers", None),
            now_ms=clock.now_ms,
            redact=self._secrets,
            on_error=self._on_error,
        )

    # ---- plumbing ---------------------------------------------------------------------------

    def _on_error(self, exc: ExchangeError) -> None:
        if self._observe_error is not None:
            self._observe_error(exc)
        if isinstance(exc, RateLimited):
            pause = self._limiter.penalize(exc.retry_after_s, ban=isinstance(exc, IpBanned))
            log.warning("%s: %s; pausing requests for %.0fs", self.name, type(exc).__name__, pause)

    async def _call(
        self,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        order: bool = False,
        retry: bool = True,
        weight: float | None = None,
    ) -> T:
        weights: dict[str, float] = {"weight": WEIGHTS.get(what, 1) if weight is None else weight}
        if order:
            weights["orders"] = 1

        async def once() -> T:
            await self._limiter.acquire(weights)
            async with self._guard:
                try:
                    return await fn()
                finally:
                    self._limiter.observe_headers(getattr(self._ex, "last_response_headers", None))

        if not retry:
            # Order entry and the lookups of an idempotent submit pace themselves.
            return await once()
        if self._clock.now_ms() < self._down_until_ms:
            # Unreachable a moment ago: fail the rest of this cycle's reads at once rather
            # than spend a round of retries on each; the next cycle asks again.
            raise ExchangeUnavailable(
                f"{self.name}: unreachable moments ago; skipping this read, the next cycle "
                "tries again"
            )
        try:
            result = await call_with_retries(
                once, policy=self._retry, rng=self._rng, sleep=self._clock.sleep
            )
        except ExchangeUnavailable:
            self._down_until_ms = self._clock.now_ms() + DOWN_HOLD_MS
            raise
        self._down_until_ms = 0
        return result

    def _note(self, client_order_id: str, msg: str) -> None:
        """What the idempotent submit decided (resend or not, found by lookup): logged and,
        when the daemon passes `notes`, written to the audit log."""
        log.warning("%s %s: %s", self.name, client_order_id, msg)
        if self._notes is not None:
            self._notes("order_submit", {"client_order_id": client_order_id, "note": msg})

    def limiter_state(self) -> Any:
        return self._limiter.state()

    # ---- markets and market data ------------------------------------------------------------

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        now = self._clock.now_ms()
        if self._markets and not reload and now - self._markets_ms < self._refresh_ms:
            return self._markets
        raw = await self._call("markets", lambda: self._ex.load_markets(reload=True))
        markets, problems = parse_markets(raw, self._ex.precisionMode)
        for p in problems[:20]:
            log.warning("%s: market skipped: %s", self.name, p)
        spot = {s: m for s, m in markets.items() if "/" in s and ":" not in s}
        if not spot:
            raise BadResponse(f"{self.name}: no spot markets could be parsed")
        self._markets, self._markets_ms = spot, now
        return spot

    async def fetch_quotes(self, symbols: Sequence[str]) -> Mapping[str, Quote]:
        wanted = [s for s in symbols if s in self._markets] if self._markets else list(symbols)
        if not wanted:
            return QuoteBoard({})
        now = self._clock.now_ms()
        if self._ex.has.get("fetchTickers"):
            # Binance prices a multi-symbol ticker request by how many symbols it names.
            weight = 2 if len(wanted) <= 20 else 40 if len(wanted) <= 100 else 80
            raw = await self._call("tickers", lambda: self._ex.fetch_tickers(wanted), weight=weight)
        else:
            raw = {}
            for s in wanted:
                raw[s] = await self._call("ticker", functools.partial(self._ex.fetch_ticker, s))
        out: dict[str, Quote] = {}
        for sym in wanted:
            t = raw.get(sym)
            if t is None:
                continue
            try:
                out[sym] = TickerWire.parse(t).to_domain(received_ms=now)
            except BadResponse as exc:  # one bad ticker must not blind the whole cycle
                log.warning("%s: ticker for %s skipped: %s", self.name, sym, exc)
        return QuoteBoard(out)

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[Candle]:
        rows = await self._call(
            "ohlcv", lambda: self._ex.fetch_ohlcv(symbol, timeframe, since_ms, limit)
        )
        out = []
        for row in rows:
            try:
                out.append(OhlcvWire.parse(row).to_domain())
            except (BadResponse, ValueError) as exc:
                log.warning("%s: bad candle for %s skipped: %s", self.name, symbol, exc)
        return out

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        raw = await self._call("book", lambda: self._ex.fetch_order_book(symbol, limit))
        return OrderBookWire.parse(raw).to_domain(symbol=symbol, received_ms=self._clock.now_ms())

    async def fetch_time(self) -> int:
        """The exchange's server time (epoch ms), for the clock-drift check. Not retried:
        a late answer would only measure the retry. ExchangeError where the venue has none."""
        if not self._ex.has.get("fetchTime"):
            raise ExchangeError(f"{self.name}: no server-time endpoint")
        return int(await self._call("time", lambda: self._ex.fetch_time(), retry=False))

    async def fetch_fees(self) -> dict[str, tuple[Decimal, Decimal]]:
        markets = await self.load_markets()
        return {s: (m.maker_fee, m.taker_fee) for s, m in markets.items()}

    # ---- account ----------------------------------------------------------------------------

    async def fetch_balances(self) -> dict[str, Balance]:
        raw = await self._call("balance", lambda: self._ex.fetch_balance())
        balances = BalanceWire.parse(raw).to_domain()
        for asset, bal in balances.items():
            sym = f"{asset}/{self._quote}"
            if bal.total > 0 and sym in self._markets:
                self._symbols.add(sym)
        return balances

    async def create_order(self, intent: OrderIntent) -> Order:
        ex = self._ex
        params: dict[str, Any] = {"clientOrderId": intent.client_order_id}
        if intent.post_only:
            params["postOnly"] = True
        price = float(intent.price) if intent.price is not None else None
        self._symbols.add(intent.symbol)

        async def send() -> Order:
            raw = await self._call(
                "order",
                lambda: ex.create_order(
                    intent.symbol,
                    intent.order_type.value,
                    intent.side.value,
                    str(intent.amount),
                    None if price is None else str(intent.price),
                    params,
                ),
                order=True,
                retry=False,
            )
            return self._order(raw, intent.strategy, intent.client_order_id)

        async def lookup() -> Order:
            # No retries inside: submit_idempotent paces its own lookups, and retries nested
            # in them held a cycle for half a minute per order during an outage.
            return await self._fetch_order(intent.client_order_id, intent.symbol, retry=False)

        return await submit_idempotent(
            send,
            lookup,
            policy=self._orders_retry,
            rng=self._rng,
            sleep=self._clock.sleep,
            note=lambda msg: self._note(intent.client_order_id, msg),
        )

    def _order(
        self, raw: Mapping[str, Any], strategy: str = "", coid: str = "", *, named: bool = False
    ) -> Order:
        """`named`: the answer is about the order we named by `coid`, whatever id it shows."""
        o = OrderWire.parse(raw).to_domain(strategy=strategy, received_ms=self._clock.now_ms())
        if coid and (named or not o.client_order_id):
            o = replace(o, client_order_id=coid)
        if o.exchange_order_id and o.client_order_id:
            self._order_ids[o.client_order_id] = o.exchange_order_id
        return o

    def _by_client_id(self, coid: str) -> tuple[str | None, dict[str, Any]]:
        key = CLIENT_ID_LOOKUP.get(self.name, "clientOrderId")
        return self._order_ids.get(coid), {key: coid}

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        oid, params = self._by_client_id(client_order_id)
        raw = await self._call("cancel", lambda: self._ex.cancel_order(oid, symbol, params))
        try:
            # Binance answers a cancel with the cancel request's own id in clientOrderId (ours
            # is in origClientOrderId, which ccxt drops): the order canceled is the one named.
            return self._order(raw, coid=client_order_id, named=True)
        except BadResponse:
            # Some venues answer a cancel with a bare acknowledgement: read the order back.
            return await self.fetch_order(client_order_id, symbol)

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        return await self._fetch_order(client_order_id, symbol, retry=True)

    async def _fetch_order(self, client_order_id: str, symbol: str, *, retry: bool) -> Order:
        oid, params = self._by_client_id(client_order_id)
        self._symbols.add(symbol)
        if oid is None and self.name not in CLIENT_ID_LOOKUP:
            return await self._search_order(client_order_id, symbol, retry=retry)
        raw = await self._call(
            "fetch_order", lambda: self._ex.fetch_order(oid, symbol, params), retry=retry
        )
        return self._order(raw, coid=client_order_id)

    async def _search_order(self, client_order_id: str, symbol: str, *, retry: bool) -> Order:
        """Venues that cannot fetch by client order id: look through open and recent orders."""
        for method, cap in (
            ("fetch_open_orders", "fetchOpenOrders"),
            ("fetch_closed_orders", "fetchClosedOrders"),
            ("fetch_orders", "fetchOrders"),
        ):
            if not self._ex.has.get(cap):
                continue
            rows = await self._call(
                "open_orders", functools.partial(getattr(self._ex, method), symbol), retry=retry
            )
            for raw in rows:
                if raw.get("clientOrderId") == client_order_id:
                    return self._order(raw, coid=client_order_id)
        raise OrderNotFound(f"{self.name}: no order {client_order_id} on {symbol}")

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        what = "open_orders" if symbol else "open_orders_all"
        rows = await self._call(what, lambda: self._ex.fetch_open_orders(symbol))
        out = []
        for raw in rows:
            try:
                o = self._order(raw)
            except BadResponse as exc:
                log.warning("%s: open order skipped: %s", self.name, exc)
                continue
            self._symbols.add(o.symbol)
            out.append(o)
        return out

    async def fetch_my_trades(
        self, symbol: str | None = None, since_ms: int | None = None
    ) -> list[Fill]:
        symbols = [symbol] if symbol else sorted(self._symbols)
        by_oid = {v: k for k, v in self._order_ids.items()}
        fills: list[Fill] = []
        for sym in symbols:
            rows = await self._call(
                "my_trades", functools.partial(self._ex.fetch_my_trades, sym, since_ms)
            )
            for raw in rows:
                try:
                    tw = TradeWire.parse(raw)
                    coid = by_oid.get(tw.order or "")
                    if coid is None and tw.order:
                        coid = await self._client_id_of(tw.order, sym)
                        if coid:
                            by_oid[tw.order] = coid
                    fills.append(tw.to_fill(client_order_id=coid).fill)
                except BadResponse as exc:
                    log.warning("%s: trade skipped: %s", self.name, exc)
        fills.sort(key=lambda f: (f.ts, f.fill_id))
        return fills

    async def _client_id_of(self, order_id: str, symbol: str) -> str | None:
        """The client order id behind a venue order id. A trade names only the venue's id,
        and after a restart this process has not seen the orders placed before it: without
        asking, their fills would look foreign and never be booked. Asked once per order."""
        if order_id in self._unnamed:
            return None
        try:
            raw = await self._call("fetch_order", lambda: self._ex.fetch_order(order_id, symbol))
            coid = self._order(raw).client_order_id
        except (OrderNotFound, BadResponse):
            coid = ""
        if not coid:
            self._unnamed.add(order_id)
        return coid or None

    async def close(self) -> None:
        try:
            await self._ex.close()
        except Exception:  # closing must never mask the real shutdown path
            log.debug("closing the ccxt client failed", exc_info=True)
