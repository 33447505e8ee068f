from __future__ import annotations

import asyncio
from typing import Any

from core.clock import SimClock
from infra.alerts import Notifier
from runner.alerting import AlertingSink, ConditionRules
from runner.recorder import MemorySink


class Sent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def __call__(self, title: str, body: str, level: str) -> bool:
        self.calls.append((title, body, level))
        return True

    @property
    def titles(self) -> list[str]:
        return [t for t, _, _ in self.calls]


def cycle(ts: int, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "cycle_ts": ts,
        "eligible": ["BTC/USDT"],
        "excluded": {},
        "no_trade_reason": None,
        "breakers_tripped": [],
        "kill_switch": False,
    }
    data.update(over)
    return data


def test_kill_and_breaker_records_become_alerts_and_reach_the_audit_too() -> None:
    sent = Sent()

    async def go() -> None:
        notifier = Notifier(urls=(), clock=SimClock(0), send=sent)
        notifier.start()
        audit = MemorySink()
        sink = AlertingSink(audit, notifier)
        sink.append("kill_switch", {"reason": "drill", "source": "file"}, sync=True)
        sink.append("breaker_trip", {"breaker": "stale_data", "reason": "data 900s old"})
        sink.append("proposal", {"symbol": "BTC/USDT"})  # decisions are not alerts
        sink.append("reconcile", {"what": "cash", "local": "1", "exchange": "2"})  # routine
        sink.append("reconcile", {"what": "position", "symbol": "BTC/USDT"})
        sink.append("resume", {"source": "file"})
        await notifier.stop()
        assert [k for k, _ in audit.records] == [
            "kill_switch",
            "breaker_trip",
            "proposal",
            "reconcile",
            "reconcile",
            "resume",
        ]

    asyncio.run(go())
    assert sent.titles == [
        "vigil HALTED: kill switch",
        "vigil breaker tripped: stale_data",
        "vigil reconciliation: position",
        "RESOLVED: vigil HALTED: kill switch",
    ]
    assert sent.calls[0][2] == "critical" and "reason=drill" in sent.calls[0][1]


def test_a_latched_breaker_reminds_until_it_clears_then_resolves() -> None:
    sent = Sent()
    clock = SimClock(0)

    async def go() -> None:
        notifier = Notifier(
            urls=(), clock=clock, send=sent, escalate_after_seconds=120, remind_seconds=300
        )
        notifier.start()
        sink = AlertingSink(MemorySink(), notifier)
        sink.append("breaker_trip", {"breaker": "daily_loss", "reason": "-3.1%"})
        for _ in range(20):  # 20 minutes of cycles with the breaker latched
            clock.advance(60_000)
            sink.append("cycle", cycle(clock.now_ms(), breakers_tripped=["daily_loss"]))
            notifier.tick()
        sink.append("cycle", cycle(clock.now_ms()))  # cleared: the cycle no longer lists it
        await notifier.stop()

    asyncio.run(go())
    assert sent.titles == [
        "vigil breaker tripped: daily_loss",
        "ESCALATED: vigil breaker tripped: daily_loss",  # 2 min
        "STILL ACTIVE: vigil breaker tripped: daily_loss",  # 7 min
        "STILL ACTIVE: vigil breaker tripped: daily_loss",  # 12 min
        "STILL ACTIVE: vigil breaker tripped: daily_loss",  # 17 min
        "RESOLVED: vigil breaker tripped: daily_loss",
    ]
    assert sent.calls[0][2] == "critical"  # a loss stop is loud from the start


def test_conditions_latched_before_start_alert_from_the_first_cycle() -> None:
    sent = Sent()

    async def go() -> None:
        notifier = Notifier(urls=(), clock=SimClock(0), send=sent)
        notifier.start()
        sink = AlertingSink(MemorySink(), notifier)
        sink.append("cycle", cycle(1, kill_switch=True, breakers_tripped=["max_drawdown"]))
        sink.append("cycle", cycle(2, kill_switch=True, breakers_tripped=["max_drawdown"]))
        sink.append("cycle", cycle(3))
        await notifier.stop()

    asyncio.run(go())
    assert sent.titles == [
        "vigil breaker tripped: max_drawdown",
        "vigil HALTED: kill switch",
        "RESOLVED: vigil breaker tripped: max_drawdown",
        "RESOLVED: vigil HALTED: kill switch",
    ]


def test_empty_universe_and_exchange_down_alert_after_their_thresholds() -> None:
    sent = Sent()
    rules = ConditionRules(empty_universe_cycles=3, exchange_down_ms=120_000)

    async def go() -> None:
        notifier = Notifier(urls=(), clock=SimClock(0), send=sent)
        notifier.start()
        sink = AlertingSink(MemorySink(), notifier, rules)
        for i in range(3):
            sink.append("cycle", cycle(i * 1000, eligible=[], excluded={"SPREAD": 3}))
        sink.append("cycle", cycle(4000))
        for ts in (0, 60_000, 119_000):
            sink.append("cycle", cycle(10_000_000 + ts, no_trade_reason="EXCHANGE_DOWN"))
        assert len(sent.titles) + notifier.stats().queued == 2  # not yet: 119 s
        sink.append("cycle", cycle(10_120_000, no_trade_reason="MISSING_DATA:quotes"))
        sink.append("cycle", cycle(10_130_000))
        sink.cycle_over_budget(5000)
        await notifier.stop()

    asyncio.run(go())
    assert sent.titles == [
        "vigil universe empty",
        "RESOLVED: vigil universe empty",
        "vigil exchange unreachable",
        "RESOLVED: vigil exchange unreachable",
        "vigil cycles over budget",
    ]
    assert "excluded by reason: SPREAD=3" in sent.calls[0][1]
    assert "for 120 s" in sent.calls[2][1]


def test_flatten_results_alert_loud_only_when_something_is_left() -> None:
    sent = Sent()

    async def go() -> None:
        notifier = Notifier(urls=(), clock=SimClock(0), send=sent)
        notifier.start()
        sink = AlertingSink(MemorySink(), notifier)
        sink.append("flatten_result", {"id": "a", "ok": True, "outcomes": ["BTC/USDT: flat"]})
        sink.append("flatten_result", {"id": "b", "ok": False, "outcomes": ["ETH/USDT: left"]})
        await notifier.stop()

    asyncio.run(go())
    assert [(t, level) for t, _, level in sent.calls] == [
        ("vigil flatten done", "info"),
        ("vigil flatten INCOMPLETE", "warning"),
    ]


def test_guard_records_alert_and_repeated_cycle_errors_share_one_key() -> None:
    sent = Sent()

    async def go() -> None:
        notifier = Notifier(urls=(), clock=SimClock(0), send=sent)
        notifier.start()
        sink = AlertingSink(MemorySink(), notifier)
        for n in range(3):
            sink.append("cycle_error", {"error": "ValueError", "in_a_row": n + 1}, sync=True)
        sink.append("exits_only", {"cause": "cycle_errors", "detail": "3 in a row"}, sync=True)
        sink.append("symbol_banned", {"symbol": "SOL/USDT", "reason": "3 rejected"})
        sink.append("exits_only_clear", {"cause": "cycle_errors"}, sync=True)
        await notifier.stop()

    asyncio.run(go())
    assert sent.titles.count("vigil cycle failed") == 1  # deduplicated within the window
    assert "vigil EXITS ONLY" in sent.titles and "vigil symbol banned" in sent.titles
    assert next(lv for t, _, lv in sent.calls if t == "vigil EXITS ONLY") == "critical"
    assert "RESOLVED: vigil EXITS ONLY" in sent.titles
