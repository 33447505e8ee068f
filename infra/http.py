"""The operator's HTTP surface: GET /metrics, /health, /ready and /status on loopback.

`health_report` is a pure function of the engine's bookkeeping and a time handed in, so it is
tested without a server; `HttpServer` only serves what the callables it was given return.
Binding anything but a loopback address needs the operator's explicit `http.allow_remote`.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from aiohttp import web

from core.models import BreakerState, CycleDecision, TradingState
from infra.clock_sync import ClockStatus
from infra.metrics import Metrics
from infra.settings_sections import is_loopback

log = logging.getLogger("vigil.http")

COMPONENTS = ("market_data", "strategies", "execution", "exchange", "store")
DOWN_FACTOR = 3  # stale beyond stale_after_s is degraded; beyond this many times it is down


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


_RANK = {Status.OK: 0, Status.DEGRADED: 1, Status.DOWN: 2}


def _worse(a: Status, b: Status) -> Status:
    return a if _RANK[a] >= _RANK[b] else b


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    status: Status
    seconds_since_update: float | None  # None: never updated
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "seconds_since_update": self.seconds_since_update,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: Status
    detail: str
    components: Mapping[str, ComponentHealth]
    trading_state: str
    kill_switch: bool
    mode: str
    config_hash: str
    checked_ms: int
    exits_only: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    clock: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # coins on the venue the state does not know: symbol -> amount (reconcile.unknown_holdings)
    unknown_holdings: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unknown_holdings": dict(self.unknown_holdings),
            "status": self.status.value,
            "detail": self.detail,
            "components": {n: c.to_dict() for n, c in self.components.items()},
            "trading_state": self.trading_state,
            "kill_switch": self.kill_switch,
            "exits_only": dict(self.exits_only),
            "clock": dict(self.clock),
            "mode": self.mode,
            "config_hash": self.config_hash,
            "checked_ms": self.checked_ms,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# --------------------------------------------------------------------------- health


class HealthView(Protocol):
    """runner.engine_parts.Health: the last good update (ms) per component."""

    market_data_ms: int
    exchange_ms: int
    execution_ms: int
    strategies_ms: int
    store_ms: int
    exchange_error: str
    started: bool


class StateView(Protocol):
    @property
    def breakers(self) -> Mapping[str, BreakerState]: ...

    @property
    def kill_switch(self) -> bool: ...

    @property
    def kill_reason(self) -> str: ...


class HealthSource(Protocol):
    """What `health_report` reads from `runner.engine.Engine`."""

    @property
    def health(self) -> HealthView: ...

    @property
    def state(self) -> StateView: ...

    @property
    def last_decision(self) -> CycleDecision | None: ...

    @property
    def exits_only(self) -> Mapping[str, str]: ...

    def kill_active(self) -> bool: ...


def _clock(c: ClockStatus | None, now_ms: int) -> dict[str, Any]:
    c = c or ClockStatus()  # None: not checked (a replay, or no time source)
    return {
        "offset_ms": None if c.offset_ms is None else round(c.offset_ms, 1),
        "ok": c.ok,
        "detail": c.detail,
        "seconds_since_check": _age_s(c.checked_ms, now_ms) if c.checked_ms > 0 else None,
    }


def _age_s(last_ms: int, now_ms: int) -> float:
    return round(max(0, now_ms - last_ms) / 1000.0, 3)


def _freshness(last_ms: int, now_ms: int, stale_after_s: float) -> ComponentHealth:
    if last_ms <= 0:
        return ComponentHealth(Status.DOWN, None, "never updated")
    age = _age_s(last_ms, now_ms)
    if age <= stale_after_s:
        return ComponentHealth(Status.OK, age, f"updated {age:.0f}s ago")
    limit = stale_after_s * DOWN_FACTOR
    if age <= limit:
        return ComponentHealth(
            Status.DEGRADED, age, f"stale: updated {age:.0f}s ago (limit {stale_after_s:g}s)"
        )
    return ComponentHealth(
        Status.DOWN, age, f"stale: updated {age:.0f}s ago (down after {limit:g}s)"
    )


def _execution(last_ms: int, error: str, now_ms: int, stale_after_s: float) -> ComponentHealth:
    age = _age_s(last_ms, now_ms) if last_ms > 0 else None
    if error:
        return ComponentHealth(
            Status.DEGRADED, age, f"exchange error in the last cycle ({error}); orders may fail"
        )
    # No orders for hours is normal for a patient strategy: old is "idle", not stale.
    if age is None:
        return ComponentHealth(Status.OK, None, "idle: no order sent or cancelled yet")
    if age > stale_after_s:
        return ComponentHealth(Status.OK, age, f"idle: last order activity {age:.0f}s ago")
    return ComponentHealth(Status.OK, age, f"last order activity {age:.0f}s ago")


def _exchange(last_ms: int, error: str, now_ms: int, stale_after_s: float) -> ComponentHealth:
    base = _freshness(last_ms, now_ms, stale_after_s)
    if not error:
        return base
    status = _worse(base.status, Status.DEGRADED)
    return ComponentHealth(status, base.seconds_since_update, f"{error}; {base.detail}")


def stream_health(stats: Any) -> ComponentHealth:
    """The WebSocket streams (infra/streams.py StreamStats): ok while streaming or starting,
    degraded when candles come over REST instead (fallback, refused) or symbols are silent."""
    detail = f"{stats.state}: {stats.detail}".rstrip(": ")
    detail += f"; {stats.rate:.0f} msg/s, {stats.reconnects} reconnects"
    if stats.stale_count:
        detail += f"; {stats.stale_count} stale: {', '.join(stats.stale[:5])}"
    bad = (
        stats.state in ("rest_fallback", "refused")
        or (stats.state == "streaming" and stats.stale_count > 0)
        or (stats.state == "connecting" and stats.reconnects > 0)
    )
    return ComponentHealth(Status.DEGRADED if bad else Status.OK, None, detail)


def health_report(
    engine: HealthSource,
    *,
    now_ms: int,
    mode: str,
    config_hash: str,
    stale_after_s: float,
    streams: Any = None,
    clock: ClockStatus | None = None,
) -> HealthReport:
    """Per-component status from the engine's last good updates, and the overall status:
    down if any component is down, degraded if any is degraded, else ok. A deliberate halt
    (kill switch, halting breaker) is "degraded": the process is fine, it is not trading.
    `clock` is the clock-drift check's last result (None: the clock is not checked)."""
    if stale_after_s <= 0:
        raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
    h = engine.health
    components = {
        "market_data": _freshness(h.market_data_ms, now_ms, stale_after_s),
        "strategies": _freshness(h.strategies_ms, now_ms, stale_after_s),
        "execution": _execution(h.execution_ms, h.exchange_error, now_ms, stale_after_s),
        "exchange": _exchange(h.exchange_ms, h.exchange_error, now_ms, stale_after_s),
        "store": _freshness(h.store_ms, now_ms, stale_after_s),
    }
    if streams is not None:
        components["market_stream"] = stream_health(streams)
    status = Status.OK
    notes: list[str] = []
    if not h.started:
        notes.append("engine not started")
    for name, c in components.items():
        status = _worse(status, c.status)
        if c.status is not Status.OK:
            notes.append(f"{name} {c.status.value}: {c.detail}")

    if not h.started:
        # Alive and retrying (exchange unreachable at start, warm-up running): degraded, not
        # down; a supervisor restarting it would not help.
        status = Status.DEGRADED
        if h.exchange_error:
            notes.insert(0, f"starting: exchange unreachable ({h.exchange_error}), retrying")
    d = engine.last_decision
    kill = engine.kill_active()
    trading = d.trading_state.value if d is not None else "UNKNOWN"
    tripped = sorted(n for n, b in engine.state.breakers.items() if b.tripped)
    guards = dict(engine.exits_only)
    unknown: Mapping[str, str] = getattr(h, "unknown_holdings", {})
    if clock is not None and not clock.ok:
        notes.append(f"clock: {clock.detail}")
        status = _worse(status, Status.DEGRADED)
    if kill:
        trading = TradingState.HALTED.value
        reason = engine.state.kill_reason
        notes.append(f"kill switch engaged{': ' + reason if reason else ''}")
        status = _worse(status, Status.DEGRADED)
    elif trading == TradingState.HALTED:
        notes.append(f"trading halted by breakers: {', '.join(tripped) or 'unknown'}")
        status = _worse(status, Status.DEGRADED)
    elif guards:
        # A runner guard (failing cycles, clock drift) holds trading at exits only.
        notes.append("exits only: " + "; ".join(f"{k}: {v}" for k, v in sorted(guards.items())))
        status = _worse(status, Status.DEGRADED)
    elif trading == TradingState.REDUCING and (tripped or not unknown):
        # Exits still work: worth saying, not worth failing a health check.
        notes.append(f"exits only, breakers tripped: {', '.join(tripped) or 'unknown'}")
    if unknown:
        policy = getattr(h, "unknown_policy", "")
        held = ", ".join(f"{s} {a}" for s, a in unknown.items())
        if policy == "halt_entries":
            notes.append(f"new entries halted: coins on the venue unknown to the state: {held}")
            status = _worse(status, Status.DEGRADED)
        else:
            notes.append(f"coins on the venue unknown to the state ({policy}): {held}")
    return HealthReport(
        status=status,
        detail="; ".join(notes) or "all components ok",
        components=MappingProxyType(components),
        trading_state=trading,
        kill_switch=kill,
        mode=mode,
        config_hash=config_hash,
        checked_ms=now_ms,
        exits_only=MappingProxyType(guards),
        clock=MappingProxyType(_clock(clock, now_ms)),
        unknown_holdings=MappingProxyType(dict(unknown)),
    )


def readiness(engine: HealthSource) -> tuple[bool, str]:
    """Ready once the engine has started and completed one cycle; a halt does not make it
    unready (it is deliberate and visible in /health)."""
    if not engine.health.started:
        return False, "starting: state, markets and warm-up not loaded yet"
    if engine.last_decision is None:
        return False, "started: waiting for the first cycle"
    return True, "ready"


# --------------------------------------------------------------------------- server


def port_taken(host: str, port: int) -> bool:
    """True when something already listens on host:port, so binding it would fail (port 0
    never is: the kernel picks a free one). A probe; the real bind stays the authority."""
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False  # an unresolvable host fails at the real bind, with its own message
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


class ServerState(StrEnum):
    NEW = "NEW"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _json_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.json_response(
            {"error": "not found", "routes": ["/metrics", "/health", "/ready", "/status"]},
            status=404,
        )


class HttpServer:
    """Serves /metrics, /health and /ready with aiohttp. `start()` returns the bound port."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int,
        metrics: Metrics,
        health: Callable[[], HealthReport],
        ready: Callable[[], tuple[bool, str]],
        status: Callable[[], Mapping[str, Any]] | None = None,
        allow_remote: bool = False,
    ) -> None:
        if not is_loopback(host) and not allow_remote:
            raise ValueError(
                f"http.host={host!r} is not a loopback address: /metrics and /health would be "
                "reachable from the network. Bind 127.0.0.1 and put a proxy in front, or set "
                "http.allow_remote: true to expose them deliberately."
            )
        if not 0 <= port <= 65535:
            raise ValueError(f"http.port={port} is out of range; use 0..65535 (0 picks a free one)")
        self.host = host
        self._port = port
        self._metrics = metrics
        self._health = health
        self._ready = ready
        self._status = status
        self.state = ServerState.NEW
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[_json_not_found])
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/ready", self._get_ready)
        if self._status is not None:
            app.router.add_get("/status", self._get_status)
        return app

    async def start(self) -> int:
        if self.state is not ServerState.NEW:
            raise RuntimeError(f"HttpServer.start() in state {self.state}; build a new server")
        # Scrapes every 15 s would flood the log; failures are logged by the handlers.
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.state = ServerState.RUNNING
        log.info("http: serving /metrics /health /ready on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self.state is not ServerState.RUNNING:
            self.state = ServerState.STOPPED
            return
        self.state = ServerState.STOPPED
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _get_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics.render()
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    async def _get_health(self, request: web.Request) -> web.Response:
        try:
            report = self._health()
        except Exception as exc:
            log.exception("health check failed")
            return web.json_response(
                {
                    "status": Status.DOWN.value,
                    "detail": f"health check failed: {type(exc).__name__}",
                },
                status=503,
            )
        return web.json_response(
            report.to_dict(), status=200 if report.status is Status.OK else 503
        )

    async def _get_status(self, request: web.Request) -> web.Response:
        """The daemon's own facts for `vigil status` (mode, hash, pid, positions, ...)."""
        assert self._status is not None
        try:
            facts = dict(self._status())
        except Exception as exc:
            log.exception("status failed")
            return web.json_response({"error": f"status failed: {type(exc).__name__}"}, status=500)
        return web.json_response(facts, headers={"Cache-Control": "no-store"})

    async def _get_ready(self, request: web.Request) -> web.Response:
        try:
            ok, reason = self._ready()
        except Exception as exc:
            log.exception("readiness check failed")
            ok, reason = False, f"readiness check failed: {type(exc).__name__}"
        return web.Response(text="ready\n" if ok else f"{reason}\n", status=200 if ok else 503)
