"""Backtest/daemon parity: the same candles through `vigil run --replay` (the real daemon,
as a subprocess) and `vigil backtest` give the same decision stream and the same positions."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

import pytest

from runner.recorder import DECISION_KINDS
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration


def _decisions(records: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(r["kind"], r["data"]) for r in records if r["kind"] in DECISION_KINDS]


def test_replayed_daemon_and_backtest_make_identical_decisions(ws: Workspace) -> None:
    run = ws.vigil("run", "--replay", str(ws.candles), "--speed", "1000000000", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    daemon = _decisions(ws.records())

    audit_dir = ws.data.parent / "bt_audit"
    report = ws.data.parent / "report.json"
    bt = ws.vigil(
        "backtest",
        "--data",
        str(ws.candles),
        "--output",
        str(report),
        "--audit",
        str(audit_dir),
        "--no-progress",
        timeout=300,
    )
    assert bt.returncode == 0, bt.stderr[-3000:]
    backtest = []
    for f in sorted(audit_dir.glob("audit-*.jsonl")):
        backtest.extend(json.loads(line) for line in f.read_text().splitlines() if line)
    backtest_dec = _decisions(backtest)

    kinds = {k for k, _ in daemon}
    assert {"proposal", "verdict", "order_intent", "order_ack", "fill"} <= kinds
    assert len(daemon) == len(backtest_dec)
    for i, (a, b) in enumerate(zip(daemon, backtest_dec, strict=True)):
        assert a == b, f"decision {i} differs:\n daemon:   {a}\n backtest: {b}"

    # Final positions: the daemon's state.db against the backtest's report.
    with sqlite3.connect(ws.state_db) as db:
        rows = db.execute("SELECT symbol, quantity FROM positions").fetchall()
    held = {s: Decimal(q) for s, q in rows}
    rep = json.loads(report.read_text())
    assert held == {s: Decimal(q) for s, q in rep["final_positions"].items()}
