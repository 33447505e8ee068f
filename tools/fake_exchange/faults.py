"""Fault injection and Binance's request-weight limits for the fake exchange.

`FaultSpec` is what a test asks for (JSON through `POST /_control/faults`, or keyword arguments
through `FakeExchange.add_fault`); `FaultBook` keeps the active faults and hands them out to
matching requests; `RateLimiter` is the per-minute weight budget with 429 and 418 escalation;
`RequestGate` is the middleware that applies both to every exchange request. Durations come from
an injected monotonic function; wall time (for ban messages) from the injected Clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.clock import Clock
from tools.fake_exchange.wire import (
    INSUFFICIENT,
    NO_SUCH_ORDER,
    UNKNOWN_ORDER,
    ApiError,
    filter_failure,
    request_weight,
)

FaultKind = Literal[
    "rate_limit",
    "ban",
    "server_error",
    "latency",
    "timeout",
    "drop_after_accept",
    "partial_fills",
    "insufficient_balance",
    "filter_failure",
    "unknown_order",
    "symbol_status",
    "error",
]

# Kinds that act once when added instead of on matching requests.
IMMEDIATE_KINDS = frozenset({"ban", "symbol_status", "partial_fills"})

ORDER_PATH = "/api/v3/order"
# Where a fault applies when the spec names no path/method: order faults hit order entry.
_DEFAULT_TARGET: dict[str, tuple[str, str]] = {
    "drop_after_accept": (ORDER_PATH, "POST"),
    "insufficient_balance": (ORDER_PATH, "POST"),
    "filter_failure": (ORDER_PATH, "POST"),
    "unknown_order": (ORDER_PATH, "GET,DELETE"),
}


class FaultSpec(BaseModel):
    """One fault. Unset `path`/`method` mean the kind's default target (see docs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind = Field(description="What goes wrong.")
    path: str = Field(default="", description="fnmatch pattern on the request path.")
    method: str = Field(default="", description="HTTP method(s), comma-separated, or '*'.")
    count: int | None = Field(
        default=None, ge=1, description="Matching requests it applies to; None: until cleared."
    )
    share: float = Field(
        default=1.0, gt=0, le=1, description="Chance that a matching request is hit (seeded)."
    )
    status: int | None = Field(
        default=None, description="HTTP status: server_error 500/502/503/504, error 4xx."
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After of a rate_limit 429.")
    seconds: int = Field(default=120, ge=1, description="Length of a ban.")
    ms: int = Field(default=0, ge=0, description="Added latency in milliseconds.")
    hold_ms: int | None = Field(
        default=None,
        ge=0,
        description="timeout: how long the request is held before the "
        "connection is dropped (default 30000); drop_after_accept: how long after the order was "
        "placed (default 0).",
    )
    mode: Literal["close", "504"] = Field(
        default="close", description="drop_after_accept: close the connection or answer 504."
    )
    participation: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="partial_fills: share of a candle's volume one order may take.",
    )
    candles: int | None = Field(
        default=None, ge=1, description="partial_fills: for how many candles; None: until cleared."
    )
    filter: Literal["PRICE_FILTER", "LOT_SIZE", "NOTIONAL", "MIN_NOTIONAL"] = Field(
        default="LOT_SIZE", description="filter_failure: the filter named in the error."
    )
    symbol: str = Field(
        default="",
        description="symbol_status: the symbol (BTC/USDT or BTCUSDT). Other kinds: only "
        "requests naming this symbol are hit (empty: any).",
    )
    market_status: Literal["TRADING", "BREAK", "HALT"] = Field(
        default="BREAK", description="symbol_status: the new status."
    )
    code: int = Field(default=-1000, description="error: the Binance error code.")
    msg: str = Field(
        default="An unknown error occurred while processing the request.",
        description="error: the Binance error message.",
    )

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        if self.kind == "server_error" and self.status not in (None, 500, 502, 503, 504):
            raise ValueError("server_error status must be 500, 502, 503 or 504")
        if self.kind == "error" and not (self.status is None or 400 <= self.status < 500):
            raise ValueError("error status must be a 4xx code")
        if self.kind == "partial_fills" and self.participation is None:
            raise ValueError("partial_fills needs participation (0 < p <= 1), e.g. 0.01")
        if self.kind == "symbol_status" and not self.symbol:
            raise ValueError("symbol_status needs symbol, e.g. BTC/USDT")
        if self.kind == "latency" and self.ms <= 0:
            raise ValueError("latency needs ms > 0")
        return self

    def target(self) -> tuple[str, frozenset[str]]:
        path, method = _DEFAULT_TARGET.get(self.kind, ("*", "*"))
        path = self.path or path
        methods = frozenset(m.strip().upper() for m in (self.method or method).split(","))
        return path, methods


@dataclass(slots=True)
class ActiveFault:
    id: int
    spec: FaultSpec
    path: str
    methods: frozenset[str]
    remaining: int | None
    hits: int = 0

    def matches(self, method: str, path: str, symbol: str = "") -> bool:
        want = self.spec.symbol.replace("/", "").upper()
        if want and self.spec.kind != "symbol_status" and symbol.upper() != want:
            return False
        return ("*" in self.methods or method in self.methods) and fnmatchcase(path, self.path)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hits": self.hits,
            "remaining": self.remaining,
            **self.spec.model_dump(exclude_defaults=True),
        }


class FaultBook:
    """The active request faults, in the order they were added."""

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng
        self._faults: list[ActiveFault] = []
        self._next_id = 0
        self.participation: float | None = None
        self.participation_candles: int | None = None

    def add(self, spec: FaultSpec) -> ActiveFault:
        self._next_id += 1
        path, methods = spec.target()
        fault = ActiveFault(self._next_id, spec, path, methods, spec.count)
        if spec.kind == "partial_fills":
            self.participation = spec.participation
            self.participation_candles = spec.candles
        elif spec.kind not in IMMEDIATE_KINDS:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()
        self.participation = None
        self.participation_candles = None

    def take(
        self, kinds: Iterable[str], method: str, path: str, symbol: str = ""
    ) -> ActiveFault | None:
        """The first active fault of `kinds` matching the request (and its `symbol`, the
        Binance id, for faults limited to one), counted as used."""
        wanted = frozenset(kinds)
        for fault in self._faults:
            if (
                fault.spec.kind in wanted
                and fault.matches(method, path, symbol)
                and self._roll(fault)
            ):
                self._use(fault)
                return fault
        return None

    def by_symbol(self) -> bool:
        """Whether some active fault is limited to one symbol (the request must be read)."""
        return any(f.spec.symbol and f.spec.kind != "symbol_status" for f in self._faults)

    def latency_ms(self, method: str, path: str, symbol: str = "") -> int:
        total = 0
        for fault in tuple(self._faults):
            if (
                fault.spec.kind == "latency"
                and fault.matches(method, path, symbol)
                and self._roll(fault)
            ):
                self._use(fault)
                total += fault.spec.ms
        return total

    def step_participation(self) -> float | None:
        """The participation cap for the next candle step, if a partial_fills fault is on."""
        p = self.participation
        if p is not None and self.participation_candles is not None:
            self.participation_candles -= 1
            if self.participation_candles <= 0:
                self.participation = None
                self.participation_candles = None
        return p

    def describe(self) -> list[dict[str, Any]]:
        out = [f.describe() for f in self._faults]
        if self.participation is not None:
            out.append(
                {
                    "kind": "partial_fills",
                    "participation": self.participation,
                    "candles": self.participation_candles,
                }
            )
        return out

    def _roll(self, fault: ActiveFault) -> bool:
        return fault.spec.share >= 1.0 or self._rng.random() < fault.spec.share

    def _use(self, fault: ActiveFault) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)


def parse_faults(body: Any) -> list[FaultSpec]:
    """A fault object or {"faults": [...]} from the control API; ValueError names the problem."""
    items = body.get("faults") if isinstance(body, Mapping) and "faults" in body else [body]
    if not isinstance(items, list) or not items:
        raise ValueError('send a fault object or {"faults": [fault, ...]}')
    return [FaultSpec.model_validate(item) for item in items]


# ---- request weight ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    status: int  # 200 (go on), 429 or 418
    retry_after_s: int = 0


@dataclass(slots=True)
class RateLimiter:
    """Binance's REQUEST_WEIGHT per rolling minute, with its escalation.

    Over the limit: 429 until enough weight has aged out (Retry-After says when). A request that
    arrives while a 429's Retry-After has not passed is refused too, and once `grace_s` has gone
    by since the first 429 it counts as a violation (requests already in flight when the 429 was
    sent are not the client's fault); `ban_after` violations in a row earn an IP ban: 418 to
    everything for `ban_s` seconds. Rejected requests add no weight, so a client that honours
    Retry-After recovers.
    """

    weight_limit: int = 1200
    ban_after: int = 5
    ban_s: float = 120.0
    order_limit_10s: int = 100
    monotonic: Callable[[], float] = time.monotonic
    window_s: float = 60.0
    grace_s: float = 1.0
    _weights: deque[tuple[float, int]] = field(default_factory=deque)
    _used: int = 0
    _limited_until: float = 0.0
    _limited_since: float = 0.0
    _violations: int = 0
    _banned_until: float = 0.0
    _orders_10s: deque[float] = field(default_factory=deque)
    _orders_1d: deque[float] = field(default_factory=deque)

    def used(self) -> int:
        self._expire(self.monotonic())
        return self._used

    def banned_for_s(self) -> float:
        return max(0.0, self._banned_until - self.monotonic())

    def admit(self, weight: int) -> Admission:
        now = self.monotonic()
        self._expire(now)
        if now < self._banned_until:
            return Admission(418, _ceil(self._banned_until - now))
        if now < self._limited_until:
            if now - self._limited_since >= self.grace_s:
                self._violations += 1
                if self._violations >= self.ban_after:
                    self.ban(self.ban_s)
                    return Admission(418, _ceil(self.ban_s))
            return Admission(429, _ceil(self._limited_until - now))
        self._violations = 0
        if self._used + weight > self.weight_limit:
            self._limited_since = now
            self._limited_until = self._room_at(weight, now)
            return Admission(429, _ceil(self._limited_until - now))
        self._weights.append((now, weight))
        self._used += weight
        return Admission(200)

    def limit_for(self, seconds: float) -> None:
        """An injected 429: later requests before Retry-After has passed are violations."""
        now = self.monotonic()
        if now >= self._limited_until:
            self._limited_since = now
        self._limited_until = max(self._limited_until, now + seconds)

    def ban(self, seconds: float) -> None:
        self._banned_until = self.monotonic() + seconds
        self._violations = 0

    def note_order(self) -> tuple[int, int, bool]:
        """Count a new-order request: (count in 10 s, count in 1 day, over the 10 s limit)."""
        now = self.monotonic()
        for q, span in ((self._orders_10s, 10.0), (self._orders_1d, 86_400.0)):
            while q and q[0] <= now - span:
                q.popleft()
            q.append(now)
        n10 = len(self._orders_10s)
        return n10, len(self._orders_1d), n10 > self.order_limit_10s

    def reset(self) -> None:
        self._weights.clear()
        self._used = 0
        self._limited_until = self._limited_since = self._banned_until = 0.0
        self._violations = 0
        self._orders_10s.clear()
        self._orders_1d.clear()

    def _expire(self, now: float) -> None:
        while self._weights and self._weights[0][0] <= now - self.window_s:
            self._used -= self._weights.popleft()[1]

    def _room_at(self, weight: int, now: float) -> float:
        """When enough weight will have aged out for `weight` more to fit."""
        need = self._used + weight - self.weight_limit
        for ts, w in self._weights:
            need -= w
            if need <= 0:
                return ts + self.window_s
        return now + self.window_s  # a single request heavier than the limit


def _ceil(seconds: float) -> int:
    return max(1, int(-(-seconds // 1)))


# ---- the request pipeline --------------------------------------------------------------------

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
