"""Helpers for tests and tools: run the fake exchange, drive its control API, point ccxt at it.

Every helper is bounded by a timeout, so a test that uses them cannot hang.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlencode

import aiohttp

from backtest.download import make_ccxt_exchange
from tools.fake_exchange.server import FakeExchange

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
REPO = Path(__file__).resolve().parents[2]

P = ParamSpec("P")
T = TypeVar("T")


def bounded(
    seconds: float = 30.0,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorator for async tests: fail with TimeoutError instead of hanging."""

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            async with asyncio.timeout(seconds):
                return await fn(*args, **kwargs)

        return run

    return wrap


@asynccontextmanager
async def running_fake(**kwargs: Any) -> AsyncIterator[FakeExchange]:
    """A started FakeExchange(**kwargs) on a free loopback port, stopped on exit."""
    fake = FakeExchange(**kwargs)
    await asyncio.wait_for(fake.start(), START_TIMEOUT_S)
    try:
        yield fake
    finally:
        await asyncio.wait_for(fake.stop(), STOP_TIMEOUT_S)


def make_ccxt(
    url: str,
    *,
    api_key: str | None = None,
    api_secret: str | None = None,
    timeout_ms: int = 5000,
    enable_rate_limit: bool = False,
) -> Any:
    """An unmodified ccxt.async_support.binance whose REST URLs point at `url`.

    Spot only: load_markets asks for exchangeInfo and nothing else (no margin pairs, no
    currencies), and fetch_open_orders() without a symbol is allowed. ccxt's own throttle is
    off by default so tests can provoke 429s; close it with `await exchange.close()`.
    """
    exchange = make_ccxt_exchange("binance", base_url=url)
    exchange.enableRateLimit = enable_rate_limit
    exchange.timeout = timeout_ms
    if api_key is not None:
        exchange.apiKey = api_key
    if api_secret is not None:
        exchange.secret = api_secret
    opts = exchange.options
    fetch_markets = opts.get("fetchMarkets")
    opts["fetchMarkets"] = (
        {**fetch_markets, "types": ["spot"]} if isinstance(fetch_markets, dict) else ["spot"]
    )
    opts["fetchMargins"] = False
    opts["fetchCurrencies"] = False
    opts["fetchOpenOrders"] = {**opts.get("fetchOpenOrders", {}), "warnWithoutSymbol": False}
    return exchange


def ccxt_for(fake: FakeExchange, **kwargs: Any) -> Any:
    """make_ccxt with the fake's URL and credentials."""
    return make_ccxt(fake.url, api_key=fake.api_key, api_secret=fake.api_secret, **kwargs)


async def signed_request(
    url: str,
    method: str,
    path: str,
    params: Mapping[str, Any],
    *,
    api_key: str,
    api_secret: str,
    timestamp_ms: int | None = None,
    timeout_s: float = 10.0,
) -> tuple[int, dict[str, str], Any]:
    """A raw SIGNED Binance request (parameters in the query): (status, headers, JSON body).

    For tests of shapes and errors that ccxt would hide or refuse to send.
    """
    import hashlib
    import hmac
    import time

    query = {k: str(v) for k, v in params.items()}
    query.setdefault(
        "timestamp", str(timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000)
    )
    text = urlencode(query)
    sig = hmac.new(api_secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(
            method,
            f"{url}{path}?{text}&signature={sig}",
            headers={"X-MBX-APIKEY": api_key},
        ) as resp,
    ):
        body = await resp.json(content_type=None)
        return resp.status, dict(resp.headers), body


class ControlError(RuntimeError):
    """The control API refused a request; the message is its answer."""


class ControlClient:
    """The control API over HTTP, for a fake running in another process."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.request(method, f"{self._url}/_control/{path}", json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise ControlError(f"{method} /_control/{path}: {resp.status} {data}")
            return data

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "state")
        return result

    async def advance(self, candles: int = 1) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "advance", {"candles": candles})
        return result

    async def add_fault(self, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "faults", spec)
        return result

    async def add_faults(self, specs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "faults", {"faults": list(specs)})
        return result

    async def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self._call("GET", "faults"))["faults"]
        return result

    async def clear_faults(self) -> None:
        await self._call("DELETE", "faults")

    async def reset(self) -> None:
        await self._call("POST", "reset")

    async def set_status(self, symbol: str, status: str) -> None:
        await self._call("POST", "status", {"symbol": symbol, "status": status})

    async def set_balance(self, asset: str, free: str) -> None:
        await self._call("POST", "balance", {"asset": asset, "free": str(free)})

    async def set_clock_skew(self, ms: int) -> None:
        await self._call("POST", "clock", {"skew_ms": int(ms)})

    async def set_book_scale(self, symbol: str, scale: str) -> None:
        await self._call("POST", "book", {"symbol": symbol, "scale": str(scale)})

    async def streams(self) -> dict[str, Any]:
        """The WebSocket streams: connections, subscriptions, messages sent, faults."""
        return dict(await self._call("GET", "stream"))

    async def stream_fault(self, action: str, **fields: Any) -> dict[str, Any]:
        """disconnect, stall (seconds), duplicate (batches), out_of_order, gap (candles),
        price (symbol, price) or clear: docs/fake_exchange.md#websocket-streams."""
        return dict(await self._call("POST", "stream", {"action": action, **fields}))


@dataclass
class FakeProcess:
    """A fake exchange running as `python -m tools.fake_exchange` in a child process."""

    proc: asyncio.subprocess.Process
    url: str
    api_key: str
    api_secret: str

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode if self.proc.returncode is not None else -1


async def spawn_fake(
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> FakeProcess:
    """Start the standalone fake (`--port 0` unless args name one) and wait for its URL."""
    argv = [sys.executable, "-m", "tools.fake_exchange", *args]
    if "--port" not in args:
        argv += ["--port", "0"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    found: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < 3:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"the fake exchange exited early ({await proc.wait()})")
                key, _, value = line.strip().partition("=")
                if key in ("FAKE_EXCHANGE_URL", "FAKE_API_KEY", "FAKE_API_SECRET"):
                    found[key] = value
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return FakeProcess(
        proc, found["FAKE_EXCHANGE_URL"], found["FAKE_API_KEY"], found["FAKE_API_SECRET"]
    )
