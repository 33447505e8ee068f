"""The HTTP surface: health_report as a pure function, and the real aiohttp server on
127.0.0.1 (port 0) fetched with a real client."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from types import MappingProxyType

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.clock import SimClock
from core.config import PipelineConfig
from core.cycle import required_features
from core.features import FeatureBank
from core.models import BreakerState, TradingState
from core.ports import CandleSink
from core.reasons import Breaker
from infra.clock_sync import ClockStatus
from infra.exchange.sim import SimExchange
from infra.exchange.sim_config import SimConfig
from infra.http import (
    COMPONENTS,
    HealthReport,
    HttpServer,
    ServerState,
    Status,
    health_report,
    readiness,
)
from infra.metrics import Metrics
from infra.settings_sections import is_loopback
from runner.engine import Engine
from runner.recorder import MemorySink, Recorder
from runner.store import MemoryStore
from strategy.registry import resolve
from tests.core.helpers import T0, market
from tests.infra.test_metrics import BTC, NOW, StubEngine, decide, make_engine, parse, val

STALE_S = 120.0
HASH = "0123abcd4567ef89"


def healthy_engine(now_ms: int = NOW) -> StubEngine:
    """Every component updated by the cycle that just ran at `now_ms`."""
    eng = make_engine()
    decide(eng, now_ms)
    h = eng.health
    h.started = True
    h.market_data_ms = h.strategies_ms = h.exchange_ms = h.store_ms = now_ms
    return eng


def report(eng: StubEngine, now_ms: int = NOW) -> HealthReport:
    return health_report(eng, now_ms=now_ms, mode="PAPER", config_hash=HASH, stale_after_s=STALE_S)


# --------------------------------------------------------------------------- health_report


def test_all_fresh_is_ok_and_idle_execution_is_fine() -> None:
    r = report(healthy_engine())
    assert r.status is Status.OK
    assert set(r.components) == set(COMPONENTS)
    assert all(c.status is Status.OK for c in r.components.values())
    assert r.components["execution"].detail.startswith("idle")
    assert r.components["execution"].seconds_since_update is None
    assert (r.trading_state, r.kill_switch, r.mode, r.config_hash) == (
        "ACTIVE",
        False,
        "PAPER",
        HASH,
    )
    assert r.detail == "all components ok"


def test_old_order_activity_is_idle_not_stale() -> None:
    eng = healthy_engine()
    eng.health.execution_ms = NOW - 86_400_000
    c = report(eng).components["execution"]
    assert (c.status, c.seconds_since_update) == (Status.OK, 86_400.0)
    assert c.detail.startswith("idle")


def test_market_data_ladder_ok_degraded_down() -> None:
    eng = healthy_engine()
    eng.health.market_data_ms = NOW - 100_000
    assert report(eng).components["market_data"].status is Status.OK
    eng.health.market_data_ms = NOW - 300_000  # 2.5x the limit
    r = report(eng)
    assert r.components["market_data"].status is Status.DEGRADED
    assert r.components["market_data"].seconds_since_update == 300.0
    assert r.status is Status.DEGRADED
    assert "market_data degraded" in r.detail
    eng.health.market_data_ms = NOW - 400_000  # beyond 3x
    assert report(eng).status is Status.DOWN
    eng.health.market_data_ms = 0
    c = report(eng).components["market_data"]
    assert (c.status, c.seconds_since_update, c.detail) == (Status.DOWN, None, "never updated")


def test_exchange_error_degrades_exchange_and_execution() -> None:
    eng = healthy_engine()
    eng.health.exchange_error = "RateLimited"
    r = report(eng)
    assert r.status is Status.DEGRADED
    assert r.components["exchange"].status is Status.DEGRADED
    assert "RateLimited" in r.components["exchange"].detail
    assert r.components["execution"].status is Status.DEGRADED
    assert r.components["market_data"].status is Status.OK


def test_store_and_strategies_going_stale_are_down() -> None:
    eng = healthy_engine()
    eng.health.store_ms = NOW - 3_600_000
    r = report(eng)
    assert r.components["store"].status is Status.DOWN
    assert r.status is Status.DOWN


def test_kill_switch_and_halt_are_degraded_never_down() -> None:
    eng = healthy_engine()
    eng.kill_file = True
    eng.state = replace(eng.state, kill_reason="operator touched KILL_SWITCH")
    r = report(eng)
    assert (r.status, r.kill_switch, r.trading_state) == (Status.DEGRADED, True, "HALTED")
    assert "kill switch engaged: operator touched KILL_SWITCH" in r.detail

    eng = healthy_engine()
    b = BreakerState(Breaker.API_ERRORS.value, tripped=True, tripped_ms=NOW, reason="burst")
    eng.state = replace(eng.state, breakers=MappingProxyType({b.name: b}))
    assert eng.last_decision is not None
    eng.last_decision = replace(eng.last_decision, trading_state=TradingState.HALTED)
    r = report(eng)
    assert (r.status, r.trading_state) == (Status.DEGRADED, "HALTED")
    assert "api_errors" in r.detail

    eng.last_decision = replace(eng.last_decision, trading_state=TradingState.REDUCING)
    r = report(eng)
    assert (r.status, r.trading_state) == (Status.OK, "REDUCING")
    assert "exits only" in r.detail


def test_report_json_has_the_documented_shape() -> None:
    import json

    doc = json.loads(report(healthy_engine()).to_json())
    assert set(doc) >= {"status", "components", "trading_state", "kill_switch", "mode"}
    assert doc["config_hash"] == HASH
    assert set(doc["components"]["store"]) == {"status", "seconds_since_update", "detail"}
    with pytest.raises(ValueError, match="stale_after_s"):
        health_report(healthy_engine(), now_ms=NOW, mode="x", config_hash="y", stale_after_s=0)


def test_clock_section_is_the_clock_checks_own_result() -> None:
    r = report(healthy_engine())  # no clock check (a replay): not measured, not judged
    assert dict(r.clock) == {
        "offset_ms": None,
        "ok": True,
        "detail": "not measured",
        "seconds_since_check": None,
    }
    off = ClockStatus(-1523.44, False, "host clock is 1523 ms ahead of binance", NOW - 30_000)
    r = health_report(
        healthy_engine(),
        now_ms=NOW,
        mode="PAPER",
        config_hash=HASH,
        stale_after_s=STALE_S,
        clock=off,
    )
    assert r.status is Status.DEGRADED and "clock: host clock is 1523 ms ahead" in r.detail
    assert dict(r.clock) == {
        "offset_ms": -1523.4,
        "ok": False,
        "detail": off.detail,
        "seconds_since_check": 30.0,
    }


def test_readiness_waits_for_start_and_one_cycle() -> None:
    eng = make_engine()
    assert readiness(eng) == (False, "starting: state, markets and warm-up not loaded yet")
    eng.health.started = True
    ok, why = readiness(eng)
    assert not ok and "first cycle" in why
    decide(eng)
    assert readiness(eng) == (True, "ready")


# --------------------------------------------------------------------------- the server


Served = tuple[str, Metrics, StubEngine, aiohttp.ClientSession]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    metrics = Metrics()
    eng = healthy_engine()
    clock = {"now": NOW}
    server = HttpServer(
        port=0,
        metrics=metrics,
        health=lambda: report(eng, clock["now"]),
        ready=lambda: readiness(eng),
    )
    port = await server.start()
    assert port > 0 and server.state is ServerState.RUNNING
    async with aiohttp.ClientSession() as session:
        yield f"http://127.0.0.1:{port}", metrics, eng, session
    await server.stop()
    assert server.state is ServerState.STOPPED


async def test_metrics_endpoint_serves_parseable_exposition(served: Served) -> None:
    base, metrics, eng, session = served
    for i in range(3):
        metrics.cycle(decide(eng, NOW + i * 60_000), eng, 0.02)
    metrics.event("fill", side="sell")
    async with session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"vigil_cycles", "vigil_equity", "vigil_breaker_tripped", "vigil_info"} <= names
    s = parse(text)
    assert val(s, "vigil_cycles_total") == 3
    assert val(s, "vigil_fills_total", side="sell") == 1
    assert val(s, "vigil_equity") == 10_000
    assert val(s, "vigil_breaker_tripped", breaker="max_drawdown") == 0


async def test_health_status_codes(served: Served) -> None:
    base, _, eng, session = served
    async with session.get(f"{base}/health") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["status"] == "ok"
    assert doc["components"]["market_data"]["status"] == "ok"
    assert (doc["mode"], doc["config_hash"], doc["kill_switch"]) == ("PAPER", HASH, False)

    eng.health.exchange_error = "ExchangeDown"
    async with session.get(f"{base}/health") as resp:
        assert resp.status == 503
        doc = await resp.json()
    assert doc["status"] == "degraded"
    assert "ExchangeDown" in doc["components"]["exchange"]["detail"]

    eng.health.exchange_error = ""
    eng.health.market_data_ms = NOW - 200_000  # stale, under 3x
    async with session.get(f"{base}/health") as resp:
        assert resp.status == 503
        assert (await resp.json())["components"]["market_data"]["status"] == "degraded"

    eng.health.market_data_ms = 0
    async with session.get(f"{base}/health") as resp:
        assert resp.status == 503
        doc = await resp.json()
    assert doc["status"] == "down"
    assert doc["components"]["market_data"]["seconds_since_update"] is None


async def test_ready_and_not_found(served: Served) -> None:
    base, _, eng, session = served
    async with session.get(f"{base}/ready") as resp:
        assert (resp.status, await resp.text()) == (200, "ready\n")
    eng.last_decision = None
    async with session.get(f"{base}/ready") as resp:
        assert resp.status == 503
        assert "first cycle" in await resp.text()
    async with session.get(f"{base}/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "not found"


async def test_a_failing_health_callable_reports_down() -> None:
    def broken() -> HealthReport:
        raise RuntimeError("engine exploded")

    server = HttpServer(port=0, metrics=Metrics(), health=broken, ready=lambda: (True, "ready"))
    port = await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/health") as resp,
        ):
            assert resp.status == 503
            doc = await resp.json()
        assert doc == {"status": "down", "detail": "health check failed: RuntimeError"}
    finally:
        await server.stop()


async def test_lifecycle_start_once_and_stop_closes_the_port() -> None:
    server = HttpServer(port=0, metrics=Metrics(), health=_never, ready=lambda: (True, "ready"))
    port = await server.start()
    with pytest.raises(RuntimeError, match="state RUNNING"):
        await server.start()
    await server.stop()
    await server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="state STOPPED"):
        await server.start()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/ready")


def _never() -> HealthReport:
    raise AssertionError("not called")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "metrics.example.com", ""])
def test_non_loopback_hosts_are_refused_without_allow_remote(host: str) -> None:
    with pytest.raises(ValueError, match=r"http\.allow_remote"):
        HttpServer(host=host, port=0, metrics=Metrics(), health=_never, ready=_ready)
    # the operator's explicit choice is honoured (constructing does not bind)
    server = HttpServer(
        host=host, port=0, metrics=Metrics(), health=_never, ready=_ready, allow_remote=True
    )
    assert server.state is ServerState.NEW


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert is_loopback(host)
    HttpServer(host=host, port=0, metrics=Metrics(), health=_never, ready=_ready)


def test_bad_port_is_refused() -> None:
    with pytest.raises(ValueError, match=r"http\.port"):
        HttpServer(port=70_000, metrics=Metrics(), health=_never, ready=_ready)


_ready: Callable[[], tuple[bool, str]] = lambda: (True, "ready")  # noqa: E731


# --------------------------------------------------------------------------- the real engine


class ListFeed:
    """Hands the engine the candles that closed by `now_ms`, one symbol, flat prices."""

    def __init__(self, symbol: str, start_ms: int, timeframe_ms: int) -> None:
        self.timeframe_ms = timeframe_ms
        self._symbol = symbol
        self._next = start_ms

    async def warmup(self, start_ms: int, bars: int, sink: CandleSink) -> int:
        return 0

    async def poll(self, now_ms: int, sink: CandleSink) -> int:
        n = 0
        while self._next + self.timeframe_ms <= now_ms:
            sink(self._symbol, self._next, 100.0, 100.0, 100.0, 100.0, 5.0)
            self._next += self.timeframe_ms
            n += 1
        return n


async def test_a_real_engine_reports_to_metrics_and_health() -> None:
    config = PipelineConfig()
    tf = config.timeframe_ms
    start = T0
    clock = SimClock(start)
    exchange = SimExchange(
        markets={BTC: market(BTC)},
        config=SimConfig(),
        rng=random.Random(7),
        clock=clock,
        timeframe_ms=tf,
    )
    metrics = Metrics()
    strategies = resolve(config)
    engine = Engine(
        config=config,
        strategies=strategies,
        exchange=exchange,
        feed=ListFeed(BTC, start, tf),
        bank=FeatureBank(required_features(config, strategies)),
        store=MemoryStore(),
        recorder=Recorder(MemorySink()),
        candle_listeners=(exchange.on_candle,),
        telemetry=metrics,
    )
    await engine.start(start, warmup_bars=0)
    for i in range(1, 4):
        clock.advance_to(start + i * tf + 1_000)
        await engine.step(clock.now_ms())
    s = parse(metrics.render()[0].decode())
    assert val(s, "vigil_cycles_total") == 3
    assert val(s, "vigil_cycle_seconds_count") == 3
    assert val(s, "vigil_stage_latency_seconds_count", stage="gate") == 3
    assert val(s, "vigil_equity") == 10_000
    assert val(s, "vigil_data_age_seconds") == 1.0  # the last candle closed 1 s before
    assert val(s, "vigil_kill_switch") == 0
    assert val(s, "vigil_last_cycle_timestamp_seconds") == clock.now_ms() / 1000

    r = health_report(
        engine, now_ms=clock.now_ms(), mode="DRY_RUN", config_hash=HASH, stale_after_s=600
    )
    assert r.status is Status.OK, r.detail
    assert r.trading_state == TradingState.ACTIVE.value
    assert readiness(engine) == (True, "ready")


async def test_status_route_serves_the_callables_facts() -> None:
    server = HttpServer(
        port=0,
        metrics=Metrics(),
        health=_never,
        ready=lambda: (True, "ready"),
        status=lambda: {"pid": 42, "mode": "PAPER"},
    )
    port = await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/status") as resp,
        ):
            assert resp.status == 200
            assert await resp.json() == {"pid": 42, "mode": "PAPER"}
    finally:
        await server.stop()


async def test_port_taken_sees_a_listening_port_only() -> None:
    from infra.http import port_taken

    server = HttpServer(port=0, metrics=Metrics(), health=_never, ready=lambda: (True, "ready"))
    port = await server.start()
    try:
        assert port_taken("127.0.0.1", port)
    finally:
        await server.stop()
    assert not port_taken("127.0.0.1", port)
    assert not port_taken("127.0.0.1", 0)
