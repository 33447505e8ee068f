"""FakeExchange: a Binance-compatible spot REST server on 127.0.0.1 around the sim engine.

It owns a market clock (a SimClock the tests or a background task advance one candle at a time),
the candle feed, the SimExchange that matches orders, the order index (Binance's numeric order ids
and quote quantities), the weight limiter and the fault book. Binance routes are in binance_api,
the control API (/_control/...) in control_api. See docs/fake_exchange.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from core.candles import CandleSeries
from core.clock import Clock, SimClock, timeframe_ms
from core.models import Market, MarketStatus, Order
from infra.clock import LiveClock
from infra.exchange.sim import SimExchange
from infra.exchange.sim_config import SimConfig
from tools.fake_exchange.binance_api import BinanceApi
from tools.fake_exchange.candles import CandleFeed, synthetic_series
from tools.fake_exchange.control_api import ControlApi
from tools.fake_exchange.faults import FaultBook, FaultSpec
from tools.fake_exchange.markets import (
    EXCHANGE_INFO_FILE,
    SYMBOL_STATUS,
    SymbolSpec,
    build_specs,
    fmt,
    market_status_name,
    reference_price,
)
from tools.fake_exchange.rate_limit import RateLimiter
from tools.fake_exchange.request_gate import RequestGate
from tools.fake_exchange.wire import order_json
from tools.fake_exchange.ws import StreamHub

log = logging.getLogger(__name__)

STATE_VERSION = 1
SYNTHETIC_START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC, aligned to every timeframe
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class FakeStateError(ValueError):
    """The state file could not be used; it was copied aside (the path is in the message)."""


@dataclass(frozen=True, slots=True)
class OrderRef:
    order_id: int
    symbol: str
    quote_qty: Decimal  # origQuoteOrderQty of market orders sized in the quote asset


class FakeExchange:
    def __init__(
        self,
        *,
        symbols: Sequence[str],
        balances: Mapping[str, Decimal],
        api_key: str,
        api_secret: str,
        candles: Mapping[str, CandleSeries] | None = None,
        seed: int = 7,
        timeframe: str = "1m",
        clock: Clock | None = None,
        markets: Mapping[str, Market] | None = None,
        sim_config: SimConfig | None = None,
        state_path: str | Path | None = None,
        auto_advance_ms: int = 0,
        warmup_candles: int = 200,
        synthetic_bars: int = 20_000,
        align_to_now: bool = True,
        weight_limit: int = 1200,
        ban_after: int = 5,
        ban_s: float = 120.0,
        order_limit_10s: int = 100,
        notional_filter: Literal["NOTIONAL", "MIN_NOTIONAL"] = "NOTIONAL",
        exchange_info_path: Path | None = EXCHANGE_INFO_FILE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must be a non-empty list without repeats, got {symbols}")
        if not api_key or not api_secret:
            raise ValueError("api_key and api_secret must not be empty")
        extra = sorted(set(candles or {}) - set(symbols))
        if extra:
            raise ValueError(f"candles given for {extra}, which are not in symbols {symbols}")
        if auto_advance_ms < 0 or warmup_candles < 1 or synthetic_bars < 1:
            raise ValueError("auto_advance_ms must be >= 0, warmup_candles and synthetic_bars >= 1")
        if notional_filter not in ("NOTIONAL", "MIN_NOTIONAL"):
            raise ValueError("notional_filter must be NOTIONAL or MIN_NOTIONAL")
        self.timeframe = timeframe
        self.clock_skew_ms = 0  # server clock - host clock (set_clock_skew)
        self.book_scale: dict[str, Decimal] = {}  # symbol -> depth size factor (set_book_scale)
        self.timeframe_ms = timeframe_ms(timeframe)
        self.clock: Clock = clock or LiveClock()
        self.notional_filter = notional_filter
        self._key, self._secret = api_key, api_secret
        self._seed = seed
        self._auto_ms = auto_advance_ms
        series = dict(candles or {})
        empty = sorted(s for s, c in series.items() if not len(c))
        if empty:
            raise ValueError(f"the candles given for {empty} are empty; pass at least one candle")
        synth = [s for s in symbols if s not in series]
        if synth:
            start = min((int(s.ts[0]) for s in series.values()), default=None)
            start = SYNTHETIC_START_MS if start is None else start - start % self.timeframe_ms
            prices = {s: reference_price(s) for s in synth}
            series |= synthetic_series(
                synth, prices, timeframe=timeframe, bars=synthetic_bars, seed=seed, start_ms=start
            )
        first_close = {s: float(series[s].close[0]) for s in symbols}
        self.specs: dict[str, SymbolSpec] = build_specs(
            symbols, markets=markets, exchange_info_path=exchange_info_path, prices=first_close
        )
        self.by_id = {spec.id: s for s, spec in self.specs.items()}
        self.limiter = RateLimiter(
            weight_limit=weight_limit,
            ban_after=ban_after,
            ban_s=ban_s,
            order_limit_10s=order_limit_10s,
            monotonic=monotonic,
        )
        self.faults = FaultBook(rng=random.Random(seed + 1))
        base = sim_config or SimConfig()
        self._sim_config = base.model_copy(
            update={"seed": seed, "starting_balances": {a: Decimal(x) for a, x in balances.items()}}
        )
        self._state_path = Path(state_path) if state_path is not None else None
        saved = self._read_state()
        if saved is not None:
            shift = int(saved["shift_ms"])
        elif align_to_now:
            now = self.clock.now_ms()
            first = min(int(s.ts[0]) for s in series.values())
            shift = now - now % self.timeframe_ms - warmup_candles * self.timeframe_ms - first
        else:
            shift = 0
        self._shift = shift
        self.feed = CandleFeed(series, timeframe_ms=self.timeframe_ms, shift_ms=shift)
        self._start_ms = self.feed.first_open_ms() + warmup_candles * self.timeframe_ms
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._stopping = asyncio.Event()
        self.gate = RequestGate(
            limiter=self.limiter, faults=self.faults, clock=self.clock, stopping=self._stopping
        )
        self.streams = StreamHub(self)
        self._auto_task: asyncio.Task[None] | None = None
        self._build(saved)

    # ---- state --------------------------------------------------------------------------------

    def _build(self, saved: Mapping[str, Any] | None) -> None:
        """A fresh sim at the start of the timeline, or the saved one."""
        market_ms = int(saved["market_ms"]) if saved is not None else self._start_ms
        self.market_clock = SimClock(market_ms)
        self.sim = SimExchange(
            markets={s: spec.market for s, spec in self.specs.items()},
            config=self._sim_config,
            rng=random.Random(self._seed),
            clock=self.market_clock,
            timeframe_ms=self.timeframe_ms,
            name="fake-binance",
            history_size=4,  # klines come from the feed; the sim needs only the last candle
        )
        self._status = {s: spec.market.status for s, spec in self.specs.items()}
        self.orders: dict[str, OrderRef] = {}
        self.coid_by_id: dict[int, str] = {}
        if saved is None:
            self.feed.seek(self.feed.first_open_ms())
            self._feed(None)
            return
        try:
            self.sim.restore_state(saved["sim"])
            quote_qty = saved.get("quote_qty", {})
            for d in saved["sim"]["orders"]:
                coid = str(d["client_order_id"])
                qq = Decimal(quote_qty.get(coid, "0"))
                self.orders[coid] = OrderRef(int(d["seq"]), str(d["symbol"]), qq)
                self.coid_by_id[int(d["seq"])] = coid
            for symbol, d in saved["sim"]["symbols"].items():
                self._status[symbol] = MarketStatus(d["status"])
        except (ValueError, KeyError, TypeError, ArithmeticError) as e:
            raise self._quarantine(f"cannot restore it ({e})") from e
        self.feed.seek(market_ms)

    def _read_state(self) -> dict[str, Any] | None:
        path = self._state_path
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
            int(data["shift_ms"]), int(data["market_ms"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise self._quarantine(f"it is not a fake-exchange state file ({e})") from e
        if data.get("symbols") != list(self.specs) or data.get("timeframe") != self.timeframe:
            raise ValueError(
                f"{path} was written for symbols {data.get('symbols')} at "
                f"{data.get('timeframe')}; start with the same symbols and timeframe, or move "
                "the file away to start fresh"
            )
        return data

    def _quarantine(self, why: str) -> FakeStateError:
        assert self._state_path is not None
        aside = self._state_path.with_name(f"{self._state_path.name}.corrupt-{self.clock.now_ms()}")
        shutil.copy2(self._state_path, aside)
        return FakeStateError(
            f"state file {self._state_path}: {why}; copied to {aside}. Move the original away "
            "to start fresh."
        )

    def changed(self) -> None:
        """Save after every change, so the fake survives its own restarts."""
        path = self._state_path
        if path is None:
            return
        data = {
            "version": STATE_VERSION,
            "symbols": list(self.specs),
            "timeframe": self.timeframe,
            "shift_ms": self._shift,
            "market_ms": self.market_ms,
            "quote_qty": {c: str(r.quote_qty) for c, r in self.orders.items() if r.quote_qty},
            "sim": self.sim.snapshot_state(),
        }
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def register_order(self, order: Order, quote_qty: Decimal) -> OrderRef:
        ref = OrderRef(int(order.exchange_order_id), order.symbol, quote_qty)
        self.orders[order.client_order_id] = ref
        self.coid_by_id[ref.order_id] = order.client_order_id
        self.changed()
        return ref

    def live_spec(self, spec: SymbolSpec) -> SymbolSpec:
        symbol = spec.market.symbol
        return replace(spec, market=replace(spec.market, status=self._status[symbol]))

    @property
    def market_ms(self) -> int:
        return self.market_clock.now_ms()

    @property
    def api_key(self) -> str:
        return self._key

    @property
    def api_secret(self) -> str:
        return self._secret

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the fake exchange is not running; await start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    # ---- the market clock ---------------------------------------------------------------------

    def _feed(self, participation: float | None) -> tuple[int, int]:
        scale = 1.0
        if participation is not None:
            # The sim's cap is fixed at construction; scaling the volume it sees has the same
            # effect on fills. Klines are served from the feed, so they keep the real volume.
            scale = participation / float(self._sim_config.participation_cap)
        fed = fills = 0
        for symbol, (ts, o, h, lo, c, v) in self.feed.due(self.market_ms):
            fills += len(self.sim.on_candle(symbol, ts, o, h, lo, c, v * scale))
            fed += 1
        return fed, fills

    def advance(self, candles: int = 1) -> dict[str, Any]:
        """Move the market clock by `candles` timeframes, feeding every candle that closes."""
        if candles < 1:
            raise ValueError(f"candles must be at least 1, got {candles}")
        fed = fills = 0
        for _ in range(candles):
            participation = self.faults.step_participation()
            self.market_clock.advance(self.timeframe_ms)
            f, k = self._feed(participation)
            fed, fills = fed + f, fills + k
        self.changed()
        return {
            "market_ms": self.market_ms,
            "fed": fed,
            "fills": fills,
            "exhausted": self.feed.exhausted(),
        }

    async def _auto_advance(self) -> None:
        exhausted = False
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._auto_ms / 1000)
                return
            try:
                result = self.advance(1)
            except Exception:  # a dead clock must be loud, not a silently finished task
                log.exception("fake exchange: auto-advance stopped")
                raise
            if result["exhausted"] and not exhausted:
                exhausted = True
                log.warning("fake exchange: candle data exhausted; the clock runs on without data")

    # ---- admin hooks (Python API; the control routes call the same) ----------------------------

    def server_ms(self) -> int:
        """The venue's own clock: /api/v3/time and the recvWindow check read it. It runs
        `clock_skew_ms` ahead of the host clock (behind when negative) to drill clock drift."""
        return self.clock.now_ms() + self.clock_skew_ms

    def set_clock_skew(self, ms: int) -> None:
        self.clock_skew_ms = int(ms)
        self.changed()

    def set_book_scale(self, symbol: str, scale: Decimal | str | float) -> None:
        """Multiply the sizes /api/v3/depth shows for `symbol` (0.001 makes a thin book)."""
        value = Decimal(str(scale))
        if not value > 0:
            raise ValueError(f"book scale must be positive, got {scale}")
        self.book_scale[self._symbol(symbol)] = value
        self.changed()

    def _symbol(self, name: str) -> str:
        symbol = name if name in self.specs else self.by_id.get(name)
        if symbol is None:
            raise ValueError(f"unknown symbol {name!r}; this fake trades {list(self.specs)}")
        return symbol

    def set_status(self, symbol: str, status: str) -> None:
        """Binance status TRADING, BREAK or HALT (BREAK/HALT: no new orders, no fills)."""
        if status not in SYMBOL_STATUS:
            raise ValueError(f"status must be one of {list(SYMBOL_STATUS)}, got {status!r}")
        sym = self._symbol(symbol)
        self.sim.set_market_status(sym, SYMBOL_STATUS[status])
        self._status[sym] = SYMBOL_STATUS[status]
        self.changed()

    def set_balance(self, asset: str, free: Decimal | str) -> None:
        self.sim.set_balance(asset, Decimal(free))
        self.changed()

    def add_fault(self, spec: FaultSpec | None = None, **fields: Any) -> dict[str, Any]:
        """Add a fault (a FaultSpec or its fields, e.g. kind="rate_limit", count=3)."""
        spec = spec if spec is not None else FaultSpec.model_validate(fields)
        fault = self.faults.add(spec)
        if spec.kind == "ban":
            self.limiter.ban(spec.seconds)
        elif spec.kind == "symbol_status":
            self.set_status(spec.symbol, spec.market_status)
        return fault.describe()

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        """Back to the start: fresh balances, no orders, faults, limits or request counts."""
        self.faults.clear()
        self.limiter.reset()
        self.gate.requests.clear()
        self._build(None)
        self.changed()

    async def state(self) -> dict[str, Any]:
        sim = self.sim
        orders = [await sim.fetch_order(c, r.symbol) for c, r in self.orders.items()]
        balances = await sim.fetch_balances()
        fills = await sim.fetch_my_trades()
        by_endpoint: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        for (endpoint, status), n in self.gate.requests.items():
            by_endpoint[endpoint] += n
            by_status[status] += n
        return {
            "market_ms": self.market_ms,
            "server_ms": self.server_ms(),
            "clock_skew_ms": self.clock_skew_ms,
            "book_scale": {s: str(v) for s, v in self.book_scale.items()},
            "timeframe": self.timeframe,
            "orders": [
                order_json(
                    o,
                    self.specs[o.symbol],
                    self.orders[o.client_order_id].order_id,
                    self.orders[o.client_order_id].quote_qty,
                )
                for o in orders
            ],
            "open_orders": sum(1 for o in orders if o.status.is_live),
            "balances": {
                a: {"free": fmt(b.free), "locked": fmt(b.used)} for a, b in balances.items()
            },
            "fills": [
                {
                    "id": i + 1,
                    "symbol": f.symbol,
                    "clientOrderId": f.client_order_id,
                    "orderId": self.orders[f.client_order_id].order_id,
                    "side": f.side.value,
                    "price": str(f.price),
                    "qty": str(f.amount),
                    "commission": str(f.fee),
                    "time": f.ts,
                    "liquidity": f.liquidity.value,
                }
                for i, f in enumerate(fills)
            ],
            "requests": {
                "total": sum(self.gate.requests.values()),
                "by_endpoint": dict(by_endpoint),
                "by_status": dict(by_status),
                "by_endpoint_status": {f"{e} {s}": n for (e, s), n in self.gate.requests.items()},
            },
            "faults": self.faults.describe(),
            "weight_used": self.limiter.used(),
            "banned_for_s": round(self.limiter.banned_for_s(), 3),
            "symbols": {s: market_status_name(st) for s, st in self._status.items()},
            "exhausted": self.feed.exhausted(),
        }

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on host:port (loopback only); returns the bound port."""
        if self._runner is not None:
            raise RuntimeError("the fake exchange is already running")
        if host not in LOOPBACK:
            raise ValueError(f"the fake exchange serves loopback only (127.0.0.1), not {host!r}")
        app = web.Application(middlewares=[self.gate.middleware])
        BinanceApi(self, api_key=self._key, api_secret=self._secret).add_routes(app)
        ControlApi(self).add_routes(app)
        self.streams = StreamHub(self)  # the WebSocket market streams (tools/fake_exchange/ws.py)
        self.streams.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner, self._host = runner, host
        self._port = int(runner.addresses[0][1])
        self._stopping.clear()
        if self._auto_ms:
            self._auto_task = asyncio.create_task(self._auto_advance())
        self.streams.start()
        return self._port

    async def stop(self) -> None:
        """Stop serving; held requests and the auto-advance task end at once."""
        if self._runner is None:
            return
        self._stopping.set()
        await self.streams.stop()
        if self._auto_task is not None:
            self._auto_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._auto_task
            self._auto_task = None
        runner, self._runner = self._runner, None
        await asyncio.wait_for(runner.cleanup(), timeout=10)
        self.changed()

    async def __aenter__(self) -> FakeExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
