from __future__ import annotations

import asyncio

from core.clock import SimClock
from infra.alerts import Notifier
from runner.alerting import AlertingSink
from runner.recorder import MemorySink


def test_kill_and_breaker_records_become_alerts_and_reach_the_audit_too() -> None:
    sent: list[tuple[str, str, str]] = []

    async def send(title: str, body: str, level: str) -> bool:
        sent.append((title, body, level))
        return True

    async def go() -> None:
        notifier = Notifier(urls=(), clock=SimClock(0), send=send)
        notifier.start()
        audit = MemorySink()
        sink = AlertingSink(audit, notifier)
        sink.append("kill_switch", {"reason": "drill", "source": "file"}, sync=True)
        sink.append("breaker_trip", {"breaker": "stale_data", "reason": "data 900s old"})
        sink.append("proposal", {"symbol": "BTC/USDT"})  # decisions are not alerts
        sink.append("reconcile", {"what": "cash", "local": "1", "exchange": "2"})  # routine
        sink.append("reconcile", {"what": "position", "symbol": "BTC/USDT"})
        await notifier.stop()
        assert [k for k, _ in audit.records] == [
            "kill_switch",
            "breaker_trip",
            "proposal",
            "reconcile",
            "reconcile",
        ]

    asyncio.run(go())
    titles = [t for t, _, _ in sent]
    assert titles == [
        "vigil HALTED: kill switch",
        "vigil breaker tripped",
        "vigil reconciliation: position",
    ]
    assert sent[0][2] == "critical" and "reason=drill" in sent[0][1]


def test_guard_records_alert_and_repeated_cycle_errors_share_one_key() -> None:
    sent: list[tuple[str, str, str]] = []

    async def send(title: str, body: str, level: str) -> bool:
        sent.append((title, body, level))
        return True

    async def go() -> None:
        notifier = Notifier(urls=(), clock=SimClock(0), send=send, dedupe_seconds=300)
        notifier.start()
        sink = AlertingSink(MemorySink(), notifier)
        for n in range(3):
            sink.append("cycle_error", {"error": "ValueError", "in_a_row": n + 1}, sync=True)
        sink.append("exits_only", {"cause": "cycle_errors", "detail": "3 in a row"}, sync=True)
        sink.append("symbol_banned", {"symbol": "SOL/USDT", "reason": "3 rejected"})
        await notifier.stop()

    asyncio.run(go())
    titles = [t for t, _, _ in sent]
    assert titles.count("vigil cycle failed") == 1  # deduplicated within the window
    assert "vigil EXITS ONLY" in titles and "vigil symbol banned" in titles
    assert next(lv for t, _, lv in sent if t == "vigil EXITS ONLY") == "critical"
