"""The cycle boundary and the clock-drift check, on a real engine with fakes around it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.clock import SimClock
from core.errors import ConfigError, ExchangeUnavailable
from infra.clock_sync import ClockSettings, ClockSkewed
from infra.settings import VigilConfig
from runner.app import build_engine
from runner.clock_watch import ClockWatch
from runner.cycle_guard import CycleGuard
from runner.engine import Engine
from runner.exits_only import ExitsOnly
from runner.guards import fault_from_env
from runner.recorder import MemorySink, Recorder
from runner.store import MemoryStore

T0 = 1_704_067_200_000
SECRET = "sk-live-0123456789abcdef"


class NoFeed:
    timeframe_ms = 300_000


def engine(sink: MemorySink) -> Engine:
    return build_engine(
        config=VigilConfig(),
        exchange=object(),  # type: ignore[arg-type]
        feed=NoFeed(),  # type: ignore[arg-type]
        store=MemoryStore(),
        sink=sink,
    )


def kinds(sink: MemorySink) -> list[str]:
    return [k for k, _ in sink.records]


def boom() -> None:
    raise ValueError(f"bad data from venue with key {SECRET}")


def test_failures_in_a_row_go_exits_only_then_halted_and_success_resets_the_count() -> None:
    sink = MemorySink()
    eng = engine(sink)
    guard = CycleGuard(
        control=eng.guard_control(), limit=2, scrub=lambda t: t.replace(SECRET, "***")
    )

    async def fail(n: int) -> None:
        try:
            boom()
        except ValueError as exc:
            await guard.failed(T0 + n, exc)

    asyncio.run(fail(1))
    guard.succeeded()
    asyncio.run(fail(2))
    assert not eng.exits_only  # one in a row, twice: no escalation
    asyncio.run(fail(3))
    assert "cycle_errors" in eng.exits_only
    assert not eng.state.kill_switch
    asyncio.run(fail(4))
    asyncio.run(fail(5))
    assert eng.state.kill_switch
    assert eng.state.kill_reason.startswith("cycle_errors: 4 cycles failed in a row")
    assert kinds(sink).count("cycle_error") == 5
    assert kinds(sink).count("exits_only") == 1
    assert kinds(sink).count("kill_switch") == 1
    rec = next(d for k, d in sink.records if k == "cycle_error")
    assert rec["error"] == "ValueError"
    assert "Traceback" in rec["traceback"] and "boom" in rec["traceback"]
    assert SECRET not in str(sink.records)
    eng.resume(T0 + 10, "test")
    assert not eng.exits_only and not eng.state.kill_switch


def test_exits_only_records_each_cause_once_and_resume_clears_only_latched_ones() -> None:
    sink = MemorySink()
    causes = ExitsOnly(Recorder(sink).event)
    causes.set("clock_skew", "400 ms behind", T0)
    causes.set("clock_skew", "400 ms behind", T0 + 1)
    causes.set("clock_skew", "500 ms behind", T0 + 2)  # the detail follows, no second record
    causes.set("cycle_errors", "3 in a row", T0 + 3)
    assert dict(causes) == {"clock_skew": "500 ms behind", "cycle_errors": "3 in a row"}
    assert causes.joined() == "clock_skew,cycle_errors"
    causes.resume(T0 + 4)  # an operator's resume lifts the latched cause only
    assert dict(causes) == {"clock_skew": "500 ms behind"}
    causes.clear("clock_skew", T0 + 5)
    causes.clear("clock_skew", T0 + 6)
    assert not causes and causes.joined() == ""
    assert kinds(sink) == ["exits_only", "exits_only", "exits_only_clear", "exits_only_clear"]


def test_test_fault_hook_accepts_only_its_one_value() -> None:
    assert fault_from_env({}) == ""
    assert fault_from_env({"VIGIL_TEST_FAULT": "cycle"}) == "cycle"
    with pytest.raises(ConfigError, match="unknown test fault"):
        fault_from_env({"VIGIL_TEST_FAULT": "cycel"})


def watch(eng: Engine, clock: SimClock, fetch: Any, **kw: Any) -> ClockWatch:
    settings = ClockSettings(max_offset_ms=150, ntp_servers=(), check_interval_seconds=60, **kw)
    return ClockWatch(
        settings=settings, clock=clock, exits_only=eng.exits_only, fetch_time=fetch, exchange="fake"
    )


def test_live_refuses_to_start_above_the_limit_and_paper_goes_exits_only() -> None:
    clock = SimClock(T0)

    async def ahead() -> int:
        return clock.now_ms() + 400  # the exchange is 400 ms ahead: the host is behind

    eng = engine(MemorySink())
    w = watch(eng, clock, ahead)
    with pytest.raises(ClockSkewed, match="400 ms behind fake"):
        asyncio.run(w.at_start(refuse=True))
    assert w.status.offset_ms is not None and not w.status.ok
    assert w.status.checked_ms == T0

    eng = engine(MemorySink())
    asyncio.run(watch(eng, clock, ahead).at_start(refuse=False))
    assert "clock_skew" in eng.exits_only


def test_drift_while_running_trips_and_clears_exits_only() -> None:
    clock = SimClock(T0)
    skew = {"ms": 0}

    async def server() -> int:
        return clock.now_ms() + skew["ms"]

    eng = engine(MemorySink())
    w = watch(eng, clock, server)
    asyncio.run(w.at_start(refuse=True))
    assert w.status.ok and not eng.exits_only
    skew["ms"] = -500
    asyncio.run(w.check(T0 + 30_000))  # before the interval: not measured again
    assert not eng.exits_only
    asyncio.run(w.check(T0 + 60_000))
    assert "ahead of fake" in eng.exits_only["clock_skew"]
    skew["ms"] = 20
    asyncio.run(w.check(T0 + 120_000))
    assert not eng.exits_only and w.status.ok


def test_unknown_offset_is_reported_not_judged() -> None:
    clock = SimClock(T0)

    async def down() -> int:
        raise ExchangeUnavailable("connection refused")

    eng = engine(MemorySink())
    w = watch(eng, clock, down)
    assert w.status.detail == "not measured" and w.status.checked_ms == 0
    reading = asyncio.run(w.at_start(refuse=True))
    assert reading.ok and reading.offset_ms is None
    assert "offset unknown" in w.status.detail


def test_ntp_that_does_not_answer_leaves_the_exchange_reading_in_charge() -> None:
    clock = SimClock(T0)

    async def server() -> int:
        return clock.now_ms() + 20

    eng = engine(MemorySink())
    # Nothing serves NTP on loopback: the request times out, it never leaves the host.
    settings = ClockSettings(max_offset_ms=150, ntp_servers=("127.0.0.1",), ntp_timeout_seconds=0.2)
    w = ClockWatch(
        settings=settings,
        clock=clock,
        exits_only=eng.exits_only,
        fetch_time=server,
        exchange="fake",
    )
    reading = asyncio.run(w.at_start(refuse=True))
    assert reading.ok and reading.offset_ms is not None
    assert [s.offset_ms is None for s in reading.skews] == [False, True]
    assert "NTP unreachable" in reading.skews[1].detail
