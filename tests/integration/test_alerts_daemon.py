"""Alerts from the real daemon reach a local HTTP endpoint through apprise's json:// route:
the kill switch alerts, escalates to the second route after 2 (replay-)minutes and resolves on
`vigil resume`; `vigil alert test` reports each route."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Workspace
from tools.alert_receiver import AlertReceiver

TOKEN = "s3cret-webhook-token-0123456789"


async def until(pred: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def records(ws: Workspace) -> list[dict[str, object]]:
    try:
        return ws.records()
    except (json.JSONDecodeError, FileNotFoundError):
        return []


async def test_kill_switch_alerts_escalates_and_resolves_through_json_route(
    ws: Workspace, tmp_path: Path
) -> None:
    receiver = await AlertReceiver().start()
    env = {
        "VIGIL_ALERT_URLS": receiver.url("primary", TOKEN),
        "VIGIL_ALERT_URLS_ESCALATE": receiver.url("escalate", TOKEN),
    }
    # Replay at 300x: two simulated minutes pass in 0.4 s of wall time.
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "300", env=env)
    try:
        await until(lambda: any(r["kind"] == "cycle" for r in records(ws)), 60, "a cycle")
        (ws.data / "KILL_SWITCH").write_text("drill: alert route\n")
        await until(
            lambda: "vigil HALTED: kill switch" in receiver.titles("primary"), 20, "the alert"
        )
        await until(
            lambda: "ESCALATED: vigil HALTED: kill switch" in receiver.titles("escalate"),
            20,
            "the escalation",
        )
        resumed = await asyncio.to_thread(ws.vigil, "resume", "--replay", "--reason", "drill over")
        assert resumed.returncode == 0, resumed.stderr
        await until(
            lambda: "RESOLVED: vigil HALTED: kill switch" in receiver.titles("escalate"),
            20,
            "the resolved message",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
        await receiver.stop()
    primary = receiver.titles("primary")
    assert primary[:3] == [
        "vigil HALTED: kill switch",
        "ESCALATED: vigil HALTED: kill switch",
        "RESOLVED: vigil HALTED: kill switch",
    ], primary
    first = next(r for r in receiver.received if r.route == "primary")
    assert first.type == "failure" and "drill: alert route" in first.message
    escalation = next(r for r in receiver.received if r.route == "escalate")
    assert escalation.type == "failure"  # critical stays critical, now on both routes
    assert TOKEN not in err


async def test_alert_test_reports_every_route(ws: Workspace) -> None:
    receiver = await AlertReceiver(fail_routes=frozenset({"broken"})).start()
    env = {
        "VIGIL_ALERT_URLS": f"{receiver.url('primary', TOKEN)},{receiver.url('broken', TOKEN)}",
        "VIGIL_ALERT_URLS_ESCALATE": receiver.url("escalate", TOKEN),
    }
    try:
        done = await asyncio.to_thread(ws.vigil, "alert", "test", env=env)
    finally:
        await receiver.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "primary #1 json://: delivered",
        "primary #2 json://: FAILED (the service reported failure)",
        "escalate #1 json://: delivered",
        "2 delivered, 1 failed",
    ]
    assert sorted(receiver.titles("primary") + receiver.titles("escalate")) == [
        "vigil test alert",
        "vigil test alert",
    ]
    assert TOKEN not in done.stdout + done.stderr
