"""The fake exchange's request pipeline: aiohttp middleware that applies the request-weight
limits (`rate_limit.RateLimiter`) and the injected faults (`faults.FaultBook`) to every
exchange request, and counts them. Wall time (for ban messages) comes from the injected Clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from aiohttp import web

from core.clock import Clock
from tools.fake_exchange.faults import ORDER_PATH, FaultBook, FaultSpec
from tools.fake_exchange.rate_limit import RateLimiter
from tools.fake_exchange.wire import (
    INSUFFICIENT,
    NO_SUCH_ORDER,
    UNKNOWN_ORDER,
    ApiError,
    filter_failure,
    request_weight,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _symbol_of(request: web.Request) -> str:
    """The Binance symbol id a request names, in its query or its form body (aiohttp keeps
    the body, so the handler still reads it)."""
    if request.query.get("symbol"):
        return request.query["symbol"]
    if request.body_exists:
        for k, v in parse_qsl(await request.text()):
            if k == "symbol":
                return v
    return ""


class RequestGate:
    """aiohttp middleware in front of the Binance routes: weight and bans first, then the
    faults, then the handler; it counts every request by endpoint and status. /_control/ routes
    pass straight through (no weight, no faults, not counted)."""

    def __init__(
        self, *, limiter: RateLimiter, faults: FaultBook, clock: Clock, stopping: asyncio.Event
    ) -> None:
        self.limiter = limiter
        self.faults = faults
        self.clock = clock
        self._stopping = stopping
        self.requests: Counter[tuple[str, str]] = Counter()

    @web.middleware
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_control/"):
            try:
                return await handler(request)
            except (ValueError, KeyError, TypeError) as e:
                return web.json_response({"error": str(e)}, status=400)
        status = "dropped"
        try:
            resp = await self._exchange(request, handler)
            if resp is not None:
                status = str(resp.status)
                return resp
            return web.Response(status=504)  # never reaches the client: its connection is gone
        except web.HTTPException as e:
            status = str(e.status)
            raise
        finally:
            self.requests[(f"{request.method} {request.path}", status)] += 1

    async def _exchange(self, request: web.Request, handler: Handler) -> web.StreamResponse | None:
        method, path = request.method, request.path
        admission = self.limiter.admit(request_weight(method, path, request.query))
        if admission.status == 418:
            until = self.clock.now_ms() + int(self.limiter.banned_for_s() * 1000)
            return self._error(
                418,
                -1003,
                f"Way too many requests; IP(127.0.0.1) banned until "
                f"{until}. Please use the websocket for live updates to avoid "
                "bans.",
                admission.retry_after_s,
            )
        if admission.status == 429:
            return self._too_much_weight(admission.retry_after_s)
        faults = self.faults
        symbol = await _symbol_of(request) if faults.by_symbol() else ""
        latency = faults.latency_ms(method, path, symbol)
        if latency:
            await self._pause(latency)
        if f := faults.take(("rate_limit",), method, path, symbol):
            self.limiter.limit_for(f.spec.retry_after_s)
            return self._too_much_weight(f.spec.retry_after_s)
        if f := faults.take(("server_error",), method, path, symbol):
            code = f.spec.status or 503
            text = f"<html><body><h1>{code} Server Error</h1></body></html>"
            return self._with_weight(web.Response(status=code, text=text, content_type="text/html"))
        if f := faults.take(("timeout",), method, path, symbol):
            await self._pause(30_000 if f.spec.hold_ms is None else f.spec.hold_ms)
            self._drop(request)
            return None
        if f := faults.take(
            ("insufficient_balance", "filter_failure", "unknown_order", "error"),
            method,
            path,
            symbol,
        ):
            return self._api_error(self._fault_error(f.spec, method))
        counts: dict[str, str] = {}
        if method == "POST" and path == ORDER_PATH:
            n10, n1d, over = self.limiter.note_order()
            counts = {"X-MBX-ORDER-COUNT-10S": str(n10), "X-MBX-ORDER-COUNT-1D": str(n1d)}
            if over:
                limit = self.limiter.order_limit_10s
                err = ApiError(
                    429,
                    -1015,
                    f"Too many new orders; current limit is {limit} orders per 10 SECOND.",
                )
                return self._api_error(err, counts)
        try:
            resp = await handler(request)
        except ApiError as e:
            return self._api_error(e, counts)
        if resp.status < 400 and (f := faults.take(("drop_after_accept",), method, path, symbol)):
            if f.spec.hold_ms:
                await self._pause(f.spec.hold_ms)
            if f.spec.mode == "504":
                text = "<html><body><h1>504 Gateway Time-out</h1></body></html>"
                return self._with_weight(
                    web.Response(status=504, text=text, content_type="text/html")
                )
            self._drop(request)
            return None
        resp.headers.update(counts)
        return self._with_weight(resp)

    def _fault_error(self, spec: FaultSpec, method: str) -> ApiError:
        if spec.kind == "insufficient_balance":
            return INSUFFICIENT
        if spec.kind == "filter_failure":
            return filter_failure(spec.filter)
        if spec.kind == "unknown_order":
            return NO_SUCH_ORDER if method == "GET" else UNKNOWN_ORDER
        return ApiError(spec.status or 400, spec.code, spec.msg)

    def _too_much_weight(self, retry_after_s: int) -> web.Response:
        return self._error(
            429,
            -1003,
            "Too much request weight used; current limit is "
            f"{self.limiter.weight_limit} request weight per 1 MINUTE. Please use "
            "WebSocket Streams for live updates to avoid polling the API.",
            retry_after_s,
        )

    def _error(self, status: int, code: int, msg: str, retry_after_s: int) -> web.Response:
        resp = self._api_error(ApiError(status, code, msg))
        resp.headers["Retry-After"] = str(retry_after_s)
        return resp

    def _api_error(self, e: ApiError, headers: Mapping[str, str] | None = None) -> web.Response:
        resp = web.json_response(e.body(), status=e.status)
        resp.headers.update(headers or {})
        self._with_weight(resp)
        return resp

    def _with_weight(self, resp: web.StreamResponse) -> web.StreamResponse:
        used = str(self.limiter.used())
        resp.headers["X-MBX-USED-WEIGHT-1M"] = used
        resp.headers["X-MBX-USED-WEIGHT"] = used
        return resp

    def _drop(self, request: web.Request) -> None:
        """Close the connection without an answer: the client sees it drop."""
        if request.transport is not None:
            request.transport.close()

    async def _pause(self, ms: int) -> None:
        """Sleep, but wake at once when the server stops, so no test waits on a held request."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), ms / 1000)
