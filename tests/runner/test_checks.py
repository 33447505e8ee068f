from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from core.clock import SimClock
from core.errors import ConfigError
from infra.alerts import Notifier
from infra.audit import AuditLog
from runner.alerting import AlertingSink, ConditionRules
from runner.checks import check_audit_tail, check_integrity, check_state, key_issued_ms
from runner.recorder import MemorySink

DAY = 86_400_000


def make_log(directory: Path, n: int) -> Path:
    clock = SimClock(1_700_000_000_000)
    with AuditLog(directory, config_hash="abc", clock=clock) as audit:
        for i in range(n):
            audit.append("cycle", {"i": i})
            clock.advance(1000)
    return sorted(directory.glob("audit-*.jsonl"))[-1]


def test_audit_tail_check_finds_an_edited_and_a_removed_record(tmp_path: Path) -> None:
    path = make_log(tmp_path / "a", 20)
    assert check_audit_tail(tmp_path / "a")[0]
    lines = path.read_text().splitlines()
    rec = json.loads(lines[10])
    rec["data"]["i"] = 999
    edited = [*lines[:10], json.dumps(rec), *lines[11:]]
    path.write_text("\n".join(edited) + "\n")
    ok, text = check_audit_tail(tmp_path / "a")
    assert not ok and text == f"seq {rec['seq']}: hash mismatch"
    path.write_text("\n".join(lines[:10] + lines[11:]) + "\n")
    ok, text = check_audit_tail(tmp_path / "a")
    assert not ok and "does not follow" in text
    path.write_text("\n".join(lines) + '\n{"seq": 99, "partial')  # being written: ignored
    assert check_audit_tail(tmp_path / "a")[0]


def test_state_check_reads_only_and_names_damage(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(str(i) * 200,) for i in range(500)])
    con.commit()
    con.close()
    assert check_state(db) == (True, "ok")
    with open(db, "r+b") as f:
        f.seek(4096 + 100)
        f.write(b"\xff" * 3000)
    ok, text = check_state(db)
    assert not ok and text
    assert not check_integrity(tmp_path / "none.db", tmp_path / "audit").ok


def test_key_issue_date_parses_or_says_how() -> None:
    assert key_issued_ms({}) is None
    assert key_issued_ms({"VIGIL_API_KEY_ISSUED": "2026-10-01"}) == 1_790_812_800_000
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        key_issued_ms({"VIGIL_API_KEY_ISSUED": "01/10/2026"})


def test_key_age_alerts_before_and_after_the_deadline() -> None:
    sent: list[tuple[str, str, str]] = []

    async def send(title: str, body: str, level: str) -> bool:
        sent.append((title, body, level))
        return True

    issued = 1_790_812_800_000
    rules = ConditionRules(key_issued_ms=issued, key_max_age_ms=90 * DAY, key_warn_ms=14 * DAY)

    async def go() -> None:
        clock = SimClock(issued)
        notifier = Notifier(urls=(), clock=clock, send=send, remind_seconds=86_400 * 30)
        notifier.start()
        sink = AlertingSink(MemorySink(), notifier, rules)
        for day in (10, 75, 76, 91):
            clock.advance_to(issued + day * DAY)
            sink.append("cycle", {"cycle_ts": clock.now_ms(), "eligible": ["X"]})
            notifier.tick()
        await notifier.stop()

    asyncio.run(go())
    assert sent[0][0] == "vigil API key due for rotation"
    assert "76 days old" in sent[0][1] and "within 14 days" in sent[0][1]
    assert sent[0][2] == "warning"
    assert sent[1][0].startswith("ESCALATED") and sent[1][2] == "critical"
