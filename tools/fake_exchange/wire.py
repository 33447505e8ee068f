"""Binance's wire format: error answers, parameter rules, request weights, SIGNED checks and
the response shapes (field for field as in ../shared/data/exchange_api/binance_spot_shapes/:
numbers as strings with the symbol's precision, times as int epoch ms)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from core.models import ZERO, Fill, Liquidity, Order, OrderType, Quote, Side
from tools.fake_exchange.candles import Row
from tools.fake_exchange.markets import ORDER_STATUS, SymbolSpec, ffmt, fmt, market_status_name

Params = Mapping[str, str]

COID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
NUMBER_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
# Kline intervals the fake can build from its own timeframe (1M is not offered).
# fmt: off
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d",
             "3d", "1w")
# fmt: on
ORDER_LIMIT_DAY = 200_000

# Request weights (Binance spot docs, 2024). Endpoints whose weight depends on the parameters
# are in request_weight(); everything unlisted costs 1.
WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/api/v3/allOrders"): 20,
}


class ApiError(Exception):
    """A Binance error answer: HTTP status plus {"code", "msg"}."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


def missing(name: str) -> ApiError:
    return ApiError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def illegal(name: str, legal: str) -> ApiError:
    return ApiError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def not_required(name: str) -> ApiError:
    return ApiError(400, -1106, f"Parameter '{name}' sent when not required.")


def filter_failure(name: str) -> ApiError:
    return ApiError(400, -1013, f"Filter failure: {name}")


INVALID_SYMBOL = ApiError(400, -1121, "Invalid symbol.")
INVALID_INTERVAL = ApiError(400, -1120, "Invalid interval.")
UNKNOWN_ORDER = ApiError(400, -2011, "Unknown order sent.")
NO_SUCH_ORDER = ApiError(400, -2013, "Order does not exist.")
INSUFFICIENT = ApiError(400, -2010, "Account has insufficient balance for requested action.")
WOULD_TAKE = ApiError(400, -2010, "Order would immediately match and take.")
DUPLICATE = ApiError(400, -2010, "Duplicate order sent.")
MARKET_CLOSED = ApiError(400, -1013, "Market is closed.")


def parse_decimal(name: str, text: str | None) -> Decimal | None:
    if text is None or text == "":
        return None
    if not NUMBER_RE.match(text):
        raise illegal(name, NUMBER_RE.pattern)
    return Decimal(text)


def parse_int(name: str, text: str | None, default: int | None = None) -> int | None:
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise illegal(name, "^[0-9]{1,20}$")
    return int(text)


def parse_symbols(text: str) -> list[str]:
    """The `symbols=["BTCUSDT","ETHUSDT"]` parameter."""
    try:
        ids = json.loads(text)
    except ValueError:
        ids = None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise illegal("symbols", '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$')
    return ids


def request_weight(method: str, path: str, query: Mapping[str, str]) -> int:
    if path == "/api/v3/depth":
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if path == "/api/v3/ticker/24hr":
        if "symbol" in query:
            return 2
        if "symbols" in query:
            n = query["symbols"].count(",") + 1
            return 2 if n <= 20 else 40 if n <= 100 else 80
        return 80
    if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
        return 2 if "symbol" in query else 4
    if path == "/api/v3/openOrders" and method == "GET":
        return 6 if "symbol" in query else 80
    return WEIGHTS.get((method, path), 1)


def _without_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if not p.startswith("signature="))


def check_signed(
    *,
    api_key_header: str | None,
    raw_query: str,
    raw_body: str,
    params: Mapping[str, str],
    api_key: str,
    api_secret: str,
    now_ms: int,
) -> None:
    """Binance's SIGNED checks: key, mandatory params, recvWindow, HMAC-SHA256, timestamp.

    The signature covers the query string as sent followed directly by the body (Binance's
    "totalParams"), without the signature parameter itself.
    """
    if not api_key_header:
        raise ApiError(401, -2014, "API-key format invalid.")
    if not hmac.compare_digest(api_key_header.encode(), api_key.encode()):
        raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    ts = parse_int("timestamp", params.get("timestamp"))
    if ts is None:
        raise missing("timestamp")
    recv = parse_int("recvWindow", params.get("recvWindow"), 5000) or 0
    if recv > 60_000:
        raise ApiError(400, -1131, "recvWindow must be less than 60000")
    signature = params.get("signature")
    if not signature:
        raise missing("signature")
    payload = _without_signature(raw_query) + _without_signature(raw_body)
    expected = hmac.new(api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise ApiError(400, -1022, "Signature for this request is not valid.")
    if ts >= now_ms + 1000:
        raise ApiError(
            400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if now_ms - ts > recv:
        raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


def order_kind(p: Params, seq: int) -> tuple[str, Side, str, str]:
    """type, side, newOrderRespType and client order id of a new order, checked."""
    side, otype, tif = p.get("side"), p.get("type"), p.get("timeInForce")
    if not side:
        raise missing("side")
    if side not in ("BUY", "SELL"):
        raise ApiError(400, -1117, "Invalid side.")
    if not otype:
        raise missing("type")
    if otype not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
        raise ApiError(400, -1116, "Invalid orderType.")
    if otype == "LIMIT" and not tif:
        raise missing("timeInForce")
    if otype == "LIMIT" and tif != "GTC":
        raise ApiError(400, -1115, "Invalid timeInForce.")  # the sim has no IOC/FOK
    if otype != "LIMIT" and tif:
        raise not_required("timeInForce")
    resp_type = p.get("newOrderRespType") or "FULL"
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise illegal("newOrderRespType", "ACK|RESULT|FULL")
    coid = p.get("newClientOrderId") or f"fake-{seq}"
    if not COID_RE.match(coid):
        raise illegal("newClientOrderId", COID_RE.pattern)
    return otype, Side.BUY if side == "BUY" else Side.SELL, resp_type, coid


def check_amounts(
    otype: str, qty: Decimal | None, price: Decimal | None, quote_qty: Decimal | None
) -> None:
    if otype != "MARKET":
        if quote_qty is not None:
            raise not_required("quoteOrderQty")
        if qty is None:
            raise missing("quantity")
        if price is None:
            raise missing("price")
        return
    if price is not None:
        raise not_required("price")
    if qty is None and quote_qty is None:
        msg = "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
        raise ApiError(400, -1102, msg)
    if qty is not None and quote_qty is not None:
        raise ApiError(
            400, -1106, "Parameter 'quoteOrderQty' sent when not required (quantity was sent)."
        )


def crosses(side: Side, price: Decimal | None, quote: Quote | None) -> bool:
    if price is None or quote is None:
        return False
    return price >= quote.ask if side is Side.BUY else price <= quote.bid


# ---- response shapes ---------------------------------------------------------------------


def exchange_info_json(
    specs: Sequence[SymbolSpec],
    *,
    server_ms: int,
    weight_limit: int,
    order_limit_10s: int,
    notional_filter: str,
) -> dict[str, Any]:
    limits = [
        ("REQUEST_WEIGHT", "MINUTE", 1, weight_limit),
        ("ORDERS", "SECOND", 10, order_limit_10s),
        ("ORDERS", "DAY", 1, ORDER_LIMIT_DAY),
    ]
    return {
        "timezone": "UTC",
        "serverTime": server_ms,
        "rateLimits": [
            {"rateLimitType": t, "interval": i, "intervalNum": n, "limit": lim}
            for t, i, n, lim in limits
        ],
        "exchangeFilters": [],
        "symbols": [_symbol_json(s, notional_filter) for s in specs],
    }


def _symbol_json(spec: SymbolSpec, notional_filter: str) -> dict[str, Any]:
    m = spec.market
    bp, qp = spec.base_precision, spec.quote_precision
    notional: dict[str, Any] = {"filterType": notional_filter, "minNotional": fmt(m.min_notional)}
    if notional_filter == "NOTIONAL":
        notional |= {
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        }
    else:
        notional |= {"applyToMarket": True, "avgPriceMins": 5}
    return {
        "symbol": spec.id,
        "status": market_status_name(m.status),
        "baseAsset": m.base,
        "baseAssetPrecision": bp,
        "quoteAsset": m.quote,
        "quotePrecision": qp,
        "quoteAssetPrecision": qp,
        "baseCommissionPrecision": bp,
        "quoteCommissionPrecision": qp,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "opoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "pegInstructionsAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(spec.min_price, qp),
                "maxPrice": fmt(spec.max_price, qp),
                "tickSize": fmt(m.price_increment, qp),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(m.min_size, bp),
                "maxQty": fmt(spec.max_qty, bp),
                "stepSize": fmt(m.amount_increment, bp),
            },
            notional,
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": ["SPOT"],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


def order_type_name(order: Order) -> str:
    if order.order_type is OrderType.MARKET:
        return "MARKET"
    return "LIMIT_MAKER" if order.post_only else "LIMIT"


def _order_core(order: Order, spec: SymbolSpec, order_id: int, coid_key: str) -> dict[str, Any]:
    bp, qp = spec.base_precision, spec.quote_precision
    return {
        "symbol": spec.id,
        "orderId": order_id,
        "orderListId": -1,
        coid_key: order.client_order_id,
        "price": fmt(order.price or ZERO, qp),
        "origQty": fmt(order.amount, bp),
        "executedQty": fmt(order.filled, bp),
        "cummulativeQuoteQty": fmt(order.avg_fill_price * order.filled, qp),
        "status": ORDER_STATUS[order.status],
        "timeInForce": "GTC",
        "type": order_type_name(order),
        "side": order.side.value.upper(),
    }


def order_json(order: Order, spec: SymbolSpec, order_id: int, quote_qty: Decimal) -> dict[str, Any]:
    """The shape of GET order, openOrders and allOrders."""
    return _order_core(order, spec, order_id, "clientOrderId") | {
        "stopPrice": fmt(ZERO),
        "icebergQty": fmt(ZERO),
        "time": order.created_ms,
        "updateTime": order.updated_ms,
        "isWorking": True,
        "workingTime": order.created_ms,
        "origQuoteOrderQty": fmt(quote_qty, spec.quote_precision),
        "selfTradePreventionMode": "NONE",
    }


def new_order_json(
    order: Order, spec: SymbolSpec, order_id: int, quote_qty: Decimal, resp_type: str
) -> dict[str, Any]:
    """POST order by newOrderRespType. The sim fills only on candles, so `fills` is empty."""
    head = {
        "symbol": spec.id,
        "orderId": order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": order.created_ms,
    }
    if resp_type == "ACK":
        return head
    out = head | _order_core(order, spec, order_id, "clientOrderId")
    out |= {
        "origQuoteOrderQty": fmt(quote_qty, spec.quote_precision),
        "workingTime": order.created_ms,
        "selfTradePreventionMode": "NONE",
    }
    if resp_type == "FULL":
        out["fills"] = []
    return out


def cancel_json(
    order: Order, spec: SymbolSpec, order_id: int, quote_qty: Decimal, cancel_id: str, now_ms: int
) -> dict[str, Any]:
    out = _order_core(order, spec, order_id, "origClientOrderId")
    return out | {
        "clientOrderId": cancel_id,
        "transactTime": now_ms,
        "origQuoteOrderQty": fmt(quote_qty, spec.quote_precision),
        "selfTradePreventionMode": "NONE",
    }


def trade_json(fill: Fill, spec: SymbolSpec, trade_id: int, order_id: int) -> dict[str, Any]:
    bp, qp = spec.base_precision, spec.quote_precision
    return {
        "symbol": spec.id,
        "id": trade_id,
        "orderId": order_id,
        "orderListId": -1,
        "price": fmt(fill.price, qp),
        "qty": fmt(fill.amount, bp),
        "quoteQty": fmt(fill.price * fill.amount, qp),
        "commission": fmt(fill.fee, qp),
        "commissionAsset": spec.market.quote,  # the sim charges every fee in the quote asset
        "time": fill.ts,
        "isBuyer": fill.side is Side.BUY,
        "isMaker": fill.liquidity is Liquidity.MAKER,
        "isBestMatch": True,
    }


def kline_json(row: Row, interval_ms: int) -> list[Any]:
    ts, o, h, lo, c, v = row
    qv = v * (h + lo + c) / 3  # the files have no quote volume: volume x typical price
    return [ts, ffmt(o), ffmt(h), ffmt(lo), ffmt(c), ffmt(v), ts + interval_ms - 1, ffmt(qv),
            max(1, int(v)), ffmt(v / 2), ffmt(qv / 2), "0"]  # fmt: skip
