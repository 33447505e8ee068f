"""The Binance spot REST routes of the fake exchange.

Handlers parse and check requests with the rules in `wire`, act on the venue (`FakeExchange`: its
sim, candle feed and order index) and answer in Binance's shapes (also in `wire`). Errors are
`wire.ApiError`s; the server turns them into `{"code": -xxxx, "msg": "..."}` with Binance's HTTP
status.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from core.clock import timeframe_ms
from core.errors import DuplicateOrder, ExchangeError, InsufficientFunds, OrderNotFound
from core.models import ZERO, Fill, Order, OrderIntent, OrderType, Quote, Side
from tools.fake_exchange.markets import SymbolSpec, ffmt, floor_to, fmt, market_status_name
from tools.fake_exchange.wire import (
    DUPLICATE,
    INSUFFICIENT,
    INTERVALS,
    INVALID_INTERVAL,
    INVALID_SYMBOL,
    MARKET_CLOSED,
    NO_SUCH_ORDER,
    UNKNOWN_ORDER,
    WOULD_TAKE,
    ApiError,
    Params,
    cancel_json,
    check_amounts,
    check_signed,
    crosses,
    exchange_info_json,
    filter_failure,
    kline_json,
    missing,
    new_order_json,
    order_json,
    order_kind,
    parse_decimal,
    parse_int,
    parse_symbols,
    trade_json,
)

if TYPE_CHECKING:
    from tools.fake_exchange.server import FakeExchange


def ok(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")


# ---- routes ----------------------------------------------------------------------------------


class BinanceApi:
    def __init__(self, venue: FakeExchange, *, api_key: str, api_secret: str) -> None:
        self.v = venue
        self._key = api_key
        self._secret = api_secret
        self._cancels = 0

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        for path, handler in (
            ("ping", self.ping), ("time", self.time), ("exchangeInfo", self.exchange_info),
            ("klines", self.klines), ("ticker/24hr", self.ticker_24hr),
            ("ticker/price", self.ticker_price), ("ticker/bookTicker", self.book_ticker),
            ("depth", self.depth), ("account", self.account), ("order", self.get_order),
            ("openOrders", self.open_orders), ("myTrades", self.my_trades),
            ("allOrders", self.all_orders),
        ):  # fmt: skip
            r.add_get(f"/api/v3/{path}", handler)
        r.add_post("/api/v3/order", self.new_order)
        r.add_delete("/api/v3/order", self.cancel_order)
        r.add_delete("/api/v3/openOrders", self.cancel_open_orders)
        r.add_get("/sapi/v1/asset/tradeFee", self.trade_fee)
        r.add_get("/sapi/v1/system/status", self.system_status)

    # -- helpers --

    def _spec(self, p: Params, required: bool = True) -> SymbolSpec | None:
        sid = p.get("symbol")
        if not sid:
            if required:
                raise missing("symbol")
            return None
        symbol = self.v.by_id.get(sid)
        if symbol is None:
            raise INVALID_SYMBOL
        return self.v.specs[symbol]

    def _spec_req(self, p: Params) -> SymbolSpec:
        spec = self._spec(p)
        assert spec is not None
        return spec

    def _many(self, p: Params) -> tuple[list[SymbolSpec], bool]:
        """Specs named by `symbol` (single answer) or `symbols`, else all of them."""
        if p.get("symbol"):
            return [self._spec_req(p)], True
        if p.get("symbols"):
            ids = parse_symbols(p["symbols"])
            if any(i not in self.v.by_id for i in ids):
                raise INVALID_SYMBOL
            return [self.v.specs[self.v.by_id[i]] for i in ids], False
        return list(self.v.specs.values()), False

    async def _signed(self, request: web.Request) -> dict[str, str]:
        raw_body = await request.text() if request.body_exists else ""
        params = dict(request.query)
        for k, val in parse_qsl(raw_body, keep_blank_values=True):
            params.setdefault(k, val)
        check_signed(
            api_key_header=request.headers.get("X-MBX-APIKEY"),
            raw_query=request.rel_url.raw_query_string,
            raw_body=raw_body,
            params=params,
            api_key=self._key,
            api_secret=self._secret,
            now_ms=self.v.server_ms(),
        )
        return params

    async def _find(self, spec: SymbolSpec, p: Params, err: ApiError) -> Order:
        order_id = parse_int("orderId", p.get("orderId"))
        coid = p.get("origClientOrderId")
        if order_id is None and not coid:
            raise ApiError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order_id is not None:
            found = self.v.coid_by_id.get(order_id)
            if found is None or (coid and coid != found):
                raise err
            coid = found
        assert coid is not None
        ref = self.v.orders.get(coid)
        if ref is None or ref.symbol != spec.market.symbol:
            raise err
        return await self.v.sim.fetch_order(coid, ref.symbol)

    def _order(self, order: Order) -> dict[str, Any]:
        ref = self.v.orders[order.client_order_id]
        return order_json(order, self.v.specs[order.symbol], ref.order_id, ref.quote_qty)

    async def _cancel(self, order: Order, p: Params) -> dict[str, Any]:
        try:
            order = await self.v.sim.cancel_order(order.client_order_id, order.symbol)
        except OrderNotFound:
            raise UNKNOWN_ORDER from None
        self._cancels += 1
        ref = self.v.orders[order.client_order_id]
        cancel_id = p.get("newClientOrderId") or f"fake-cancel-{self._cancels}"
        now = self.v.market_ms
        return cancel_json(
            order, self.v.specs[order.symbol], ref.order_id, ref.quote_qty, cancel_id, now
        )

    # -- market data --

    async def ping(self, request: web.Request) -> web.Response:
        return ok({})

    async def system_status(self, request: web.Request) -> web.Response:
        return ok({"status": 0, "msg": "normal"})

    async def time(self, request: web.Request) -> web.Response:
        return ok({"serverTime": self.v.server_ms()})

    async def exchange_info(self, request: web.Request) -> web.Response:
        specs, _ = self._many(request.query)
        lim = self.v.limiter
        return ok(
            exchange_info_json(
                [self.v.live_spec(s) for s in specs],
                server_ms=self.v.clock.now_ms(),
                weight_limit=lim.weight_limit,
                order_limit_10s=lim.order_limit_10s,
                notional_filter=self.v.notional_filter,
            )
        )

    async def klines(self, request: web.Request) -> web.Response:
        q = request.query
        spec = self._spec_req(q)
        interval = q.get("interval")
        if not interval:
            raise missing("interval")
        if interval not in INTERVALS or timeframe_ms(interval) % self.v.timeframe_ms:
            raise INVALID_INTERVAL
        step = timeframe_ms(interval)
        limit = min(max(parse_int("limit", q.get("limit"), 500) or 500, 1), 1000)
        rows = self.v.feed.klines(
            spec.market.symbol,
            step,
            self.v.market_ms,
            start_ms=parse_int("startTime", q.get("startTime")),
            end_ms=parse_int("endTime", q.get("endTime")),
            limit=limit,
        )
        return ok([kline_json(r, step) for r in rows])

    async def _ticker(self, spec: SymbolSpec) -> dict[str, Any]:
        symbol = spec.market.symbol
        stats = self.v.feed.stats_24h(symbol, self.v.market_ms)
        quote = (await self.v.sim.fetch_quotes([symbol])).get(symbol)
        book = await self.v.sim.fetch_order_book(symbol, 1)
        last = float(quote.last) if quote else (stats.close if stats else 0.0)
        o = stats.open if stats else last
        return {
            "symbol": spec.id,
            "priceChange": ffmt(last - o),
            "priceChangePercent": f"{(last - o) / o * 100 if o else 0.0:.3f}",
            "weightedAvgPrice": ffmt(
                stats.quote_volume / stats.volume if stats and stats.volume else last
            ),
            "prevClosePrice": ffmt(stats.prev_close if stats else last),
            "lastPrice": ffmt(last),
            "lastQty": ffmt(stats.last_volume if stats else 0.0),
            "bidPrice": fmt(quote.bid if quote else ZERO),
            "bidQty": fmt(book.bids[0].amount if book.bids else ZERO),
            "askPrice": fmt(quote.ask if quote else ZERO),
            "askQty": fmt(book.asks[0].amount if book.asks else ZERO),
            "openPrice": ffmt(o),
            "highPrice": ffmt(stats.high if stats else last),
            "lowPrice": ffmt(stats.low if stats else last),
            "volume": ffmt(stats.volume if stats else 0.0),
            "quoteVolume": ffmt(stats.quote_volume if stats else 0.0),
            "openTime": stats.open_ms if stats else 0,
            "closeTime": self.v.market_ms - 1,
            "firstId": 0,
            "lastId": stats.count - 1 if stats else -1,
            "count": stats.count if stats else 0,
        }

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        specs, single = self._many(request.query)
        out = [await self._ticker(s) for s in specs]
        return ok(out[0] if single else out)

    async def ticker_price(self, request: web.Request) -> web.Response:
        specs, single = self._many(request.query)
        out = [
            {"symbol": t["symbol"], "price": t["lastPrice"]}
            for t in [await self._ticker(s) for s in specs]
        ]
        return ok(out[0] if single else out)

    async def book_ticker(self, request: web.Request) -> web.Response:
        specs, single = self._many(request.query)
        keys = ("symbol", "bidPrice", "bidQty", "askPrice", "askQty")
        out = [{k: t[k] for k in keys} for t in [await self._ticker(s) for s in specs]]
        return ok(out[0] if single else out)

    async def depth(self, request: web.Request) -> web.Response:
        spec = self._spec_req(request.query)
        limit = parse_int("limit", request.query.get("limit"), 100) or 100
        if not 1 <= limit <= 5000:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'limit'.")
        book = await self.v.sim.fetch_order_book(spec.market.symbol, limit)
        bp, qp = spec.base_precision, spec.quote_precision
        k = self.v.book_scale.get(spec.market.symbol, Decimal(1))
        return ok(
            {
                "lastUpdateId": self.v.feed.closed_count(spec.market.symbol, self.v.market_ms),
                "bids": [[fmt(lv.price, qp), fmt(lv.amount * k, bp)] for lv in book.bids],
                "asks": [[fmt(lv.price, qp), fmt(lv.amount * k, bp)] for lv in book.asks],
            }
        )

    # -- account --

    async def account(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        balances = await self.v.sim.fetch_balances()
        assets = set(balances)
        for spec in self.v.specs.values():
            assets |= {spec.market.base, spec.market.quote}
        rows = []
        for asset in sorted(assets):
            b = balances.get(asset)
            free, used = (b.free, b.used) if b else (ZERO, ZERO)
            if p.get("omitZeroBalances") == "true" and not free and not used:
                continue
            rows.append({"asset": asset, "free": fmt(free), "locked": fmt(used)})
        maker, taker = next(iter((await self.v.sim.fetch_fees()).values()))
        return ok(
            {
                "makerCommission": int(maker * 10_000),
                "takerCommission": int(taker * 10_000),
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": fmt(maker),
                    "taker": fmt(taker),
                    "buyer": fmt(ZERO),
                    "seller": fmt(ZERO),
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": self.v.market_ms,
                "accountType": "SPOT",
                "balances": rows,
                "permissions": ["SPOT"],
                "uid": 354937868,
            }
        )

    async def trade_fee(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        specs, _ = self._many(p)
        fees = await self.v.sim.fetch_fees()
        return ok(
            [
                {
                    "symbol": s.id,
                    "makerCommission": str(fees[s.market.symbol][0]),
                    "takerCommission": str(fees[s.market.symbol][1]),
                }
                for s in specs
            ]
        )

    # -- orders --

    async def new_order(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        spec = self._spec_req(p)
        symbol = spec.market.symbol
        otype, side, resp_type, coid = order_kind(p, len(self.v.orders) + 1)
        qty = parse_decimal("quantity", p.get("quantity"))
        price = parse_decimal("price", p.get("price"))
        quote_qty = parse_decimal("quoteOrderQty", p.get("quoteOrderQty"))
        check_amounts(otype, qty, price, quote_qty)
        if market_status_name(self.v.live_spec(spec).market.status) != "TRADING":
            raise MARKET_CLOSED
        quote = (await self.v.sim.fetch_quotes([symbol])).get(symbol)
        if quote_qty is not None:
            if quote is None:
                raise ApiError(400, -2010, "No price yet; market orders are refused.")
            ref = quote.ask if side is Side.BUY else quote.bid
            qty = floor_to(quote_qty / ref, spec.market.amount_increment)
        assert qty is not None
        self._check_filters(spec, qty, price, quote)
        if otype == "LIMIT_MAKER" and crosses(side, price, quote):
            raise WOULD_TAKE
        if coid in self.v.orders:
            raise DUPLICATE  # the sim never reuses an id, even of a finished order
        intent = OrderIntent(
            client_order_id=coid,
            symbol=symbol,
            side=side,
            order_type=OrderType.MARKET if otype == "MARKET" else OrderType.LIMIT,
            amount=qty,
            price=price,
            strategy="",
            cycle_ms=self.v.market_ms,
            post_only=otype == "LIMIT_MAKER",
        )
        try:
            order = await self.v.sim.create_order(intent)
        except InsufficientFunds:
            raise INSUFFICIENT from None
        except DuplicateOrder:
            raise DUPLICATE from None
        except ExchangeError as e:  # the sim's other refusals: NEW_ORDER_REJECTED
            raise ApiError(400, -2010, str(e)) from None
        ref_ = self.v.register_order(order, quote_qty or ZERO)
        return ok(new_order_json(order, spec, ref_.order_id, ref_.quote_qty, resp_type))

    def _check_filters(
        self, spec: SymbolSpec, qty: Decimal, price: Decimal | None, quote: Quote | None
    ) -> None:
        """PRICE_FILTER, LOT_SIZE and (MIN_)NOTIONAL, in Binance's order."""
        m = spec.market
        if price is not None and (
            price < spec.min_price or price > spec.max_price or price % m.price_increment
        ):
            raise filter_failure("PRICE_FILTER")
        if qty < m.min_size or qty > spec.max_qty or qty % m.amount_increment:
            raise filter_failure("LOT_SIZE")
        ref_price = price if price is not None else (quote.last if quote else None)
        if ref_price is not None and qty * ref_price < m.min_notional:
            raise filter_failure(self.v.notional_filter)

    async def get_order(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        return ok(self._order(await self._find(self._spec_req(p), p, NO_SUCH_ORDER)))

    async def cancel_order(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        order = await self._find(self._spec_req(p), p, UNKNOWN_ORDER)
        if order.status.is_terminal:
            raise UNKNOWN_ORDER
        out = await self._cancel(order, p)
        self.v.changed()
        return ok(out)

    async def open_orders(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        spec = self._spec(p, required=False)
        orders = await self.v.sim.fetch_open_orders(spec.market.symbol if spec else None)
        return ok([self._order(o) for o in orders])

    async def cancel_open_orders(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        spec = self._spec_req(p)
        orders = await self.v.sim.fetch_open_orders(spec.market.symbol)
        if not orders:
            raise UNKNOWN_ORDER  # as Binance answers when nothing is open
        out = [await self._cancel(o, {}) for o in orders]
        self.v.changed()
        return ok(out)

    async def all_orders(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        symbol = self._spec_req(p).market.symbol
        from_id = parse_int("orderId", p.get("orderId"), 0) or 0
        start = parse_int("startTime", p.get("startTime"))
        end = parse_int("endTime", p.get("endTime"))
        limit = min(max(parse_int("limit", p.get("limit"), 500) or 500, 1), 1000)
        out = []
        for coid, ref in self.v.orders.items():
            if ref.symbol != symbol or ref.order_id < from_id:
                continue
            order = await self.v.sim.fetch_order(coid, symbol)
            if (start is None or order.created_ms >= start) and (
                end is None or order.created_ms <= end
            ):
                out.append(self._order(order))
        out.sort(key=lambda o: int(o["orderId"]))
        return ok(out[:limit] if from_id or start is not None else out[-limit:])

    async def my_trades(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        spec = self._spec_req(p)
        order_id = parse_int("orderId", p.get("orderId"))
        from_id = parse_int("fromId", p.get("fromId"))
        start = parse_int("startTime", p.get("startTime"))
        end = parse_int("endTime", p.get("endTime"))
        limit = min(max(parse_int("limit", p.get("limit"), 500) or 500, 1), 1000)
        rows: list[tuple[int, Fill, int]] = []
        # Trade ids are positions in the sim's fill list, which only ever grows at the end.
        for i, fill in enumerate(await self.v.sim.fetch_my_trades()):
            if fill.symbol != spec.market.symbol:
                continue
            oid = self.v.orders[fill.client_order_id].order_id
            if order_id is not None and oid != order_id:
                continue
            if from_id is not None and i + 1 < from_id:
                continue
            if (start is not None and fill.ts < start) or (end is not None and fill.ts > end):
                continue
            rows.append((i + 1, fill, oid))
        rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
        return ok([trade_json(f, spec, tid, oid) for tid, f, oid in rows])
