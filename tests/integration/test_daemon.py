"""The daemon as operators run it: a real `vigil run --replay` subprocess."""

from __future__ import annotations

import json
import signal
import sqlite3

import pytest

from runner import exit_codes
from tests.integration.conftest import Workspace, wait_for

pytestmark = pytest.mark.integration

FAST = ("--speed", "1000000000")


def replay(ws: Workspace, *extra: str, timeout: float = 180) -> None:
    res = ws.vigil("run", "--replay", str(ws.candles), *FAST, *extra, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]


def test_replay_writes_a_verifiable_audit_log_that_matches_state(ws: Workspace) -> None:
    replay(ws)
    recs = ws.records()
    kinds = {r["kind"] for r in recs}
    assert {
        "config_loaded",
        "cycle",
        "proposal",
        "verdict",
        "order_intent",
        "order_ack",
        "fill",
        "shutdown",
    } <= kinds
    # Every record is stamped with the same config hash, and the chain verifies.
    assert len({r["config_hash"] for r in recs}) == 1
    ok = ws.vigil("audit", "verify", "--replay")
    assert ok.returncode == 0, ok.stderr
    assert "audit log OK" in ok.stdout
    # Each order intent reached the log before its acknowledgement.
    seq_intent = {
        r["data"]["client_order_id"]: r["seq"] for r in recs if r["kind"] == "order_intent"
    }
    for r in recs:
        if r["kind"] == "order_ack" and r["data"]["client_order_id"] in seq_intent:
            assert seq_intent[r["data"]["client_order_id"]] < r["seq"]
    rebuilt = ws.vigil("audit", "replay", "--replay")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "match state.db" in rebuilt.stdout
    tail = ws.vigil("audit", "tail", "-n", "5", "--kind", "fill", "--replay")
    assert tail.returncode == 0 and "fill" in tail.stdout
    status = ws.vigil("status", "--json", "--replay")
    assert status.returncode == exit_codes.NOT_RUNNING
    facts = json.loads(status.stdout)
    assert facts["running"] is False and facts["source"] == "disk"
    assert facts["paths"]["state_db"] == str(ws.state_db)


@pytest.mark.parametrize("how", ["edit", "delete", "swap", "truncate"])
def test_any_tampering_makes_verify_fail(ws: Workspace, how: str) -> None:
    replay(ws, "--max-cycles", "400")
    files = sorted(ws.audit_dir.glob("audit-*.jsonl"))
    path = files[-1]
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) > 10
    if how == "edit":
        rec = json.loads(lines[5])
        rec["ts"] += 1
        lines[5] = json.dumps(rec) + "\n"
    elif how == "delete":
        del lines[5]
    elif how == "swap":
        lines[5], lines[6] = lines[6], lines[5]
    else:
        lines = lines[:-3]
    path.write_text("".join(lines))
    res = ws.vigil("audit", "verify", "--replay")
    assert res.returncode == exit_codes.FAILURE
    assert path.name in res.stderr


def test_sigterm_exits_zero_with_state_flushed(ws: Workspace) -> None:
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "3000")
    try:
        assert wait_for(lambda: any(r["kind"] == "cycle" for r in _safe(ws)), 60)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    recs = ws.records()
    assert recs[-1]["kind"] == "shutdown"
    with sqlite3.connect(ws.state_db) as db:
        last = db.execute("SELECT value FROM kv WHERE key='last_cycle_ms'").fetchone()
    assert last is not None and int(json.loads(last[0])) > 0
    assert ws.vigil("audit", "verify", "--replay").returncode == 0


def test_second_instance_is_refused(ws: Workspace) -> None:
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "300")
    try:
        assert wait_for(lambda: (ws.data / "vigil.pid").exists(), 30)
        second = ws.vigil("run", "--replay", str(ws.candles), *FAST)
        assert second.returncode == exit_codes.ALREADY_RUNNING
        assert "already running" in second.stderr
        assert str(proc.pid) in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)


def test_bad_config_exits_2_naming_the_field(ws: Workspace) -> None:
    policy = ws.config / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("max_open_positions: 5", "max_open_positions: lots")
    )
    res = ws.vigil("run", "--replay", str(ws.candles), *FAST)
    assert res.returncode == exit_codes.CONFIG
    assert "risk.max_open_positions" in res.stderr
    assert "lots" in res.stderr
    check = ws.vigil("config", "check")
    assert check.returncode == exit_codes.CONFIG


def test_corrupted_state_db_is_quarantined_and_trading_refused(ws: Workspace) -> None:
    replay(ws, "--max-cycles", "50")
    raw = bytearray(ws.state_db.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 4096] = b"\x00garbage" * 512
    ws.state_db.write_bytes(bytes(raw))
    before = ws.state_db.read_bytes()
    res = ws.vigil("run", "--replay", str(ws.candles), *FAST)
    assert res.returncode == exit_codes.STATE_CORRUPTED, res.stderr[-2000:]
    assert "quarantine" in res.stderr
    copies = list((ws.data / "quarantine").rglob("state.db"))
    assert copies and copies[0].read_bytes() == before
    assert ws.state_db.read_bytes() == before  # never silently recreated


def test_kill_switch_file_halts_and_latches_until_resume(ws: Workspace) -> None:
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "3000")
    try:
        assert wait_for(lambda: any(r["kind"] == "cycle" for r in _safe(ws)), 60)
        (ws.data / "KILL_SWITCH").write_text("drill: operator test\n")
        assert wait_for(lambda: any(r["kind"] == "kill_switch" for r in _safe(ws)), 10)
        assert wait_for(
            lambda: any(
                r["kind"] == "cycle" and r["data"]["no_trade_reason"] == "KILL_SWITCH"
                for r in _safe(ws)
            ),
            20,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    kills = [r for r in ws.records() if r["kind"] == "kill_switch"]
    assert kills[0]["data"]["reason"] == "drill: operator test"
    after_kill = [r for r in ws.records() if r["seq"] > kills[0]["seq"]]
    assert not [r for r in after_kill if r["kind"] == "order_intent"]
    # Latched: a restart with the file removed still refuses to trade until `vigil resume`.
    (ws.data / "KILL_SWITCH").unlink()
    replay(ws, "--max-cycles", "20")
    cycles = [r for r in ws.records() if r["kind"] == "cycle"][-5:]
    assert all(c["data"]["no_trade_reason"] == "KILL_SWITCH" for c in cycles)
    assert ws.vigil("resume", "--replay").returncode == exit_codes.NOT_RUNNING  # latch cleared
    replay(ws, "--max-cycles", "20")
    cycles = [r for r in ws.records() if r["kind"] == "cycle"][-5:]
    assert all(c["data"]["no_trade_reason"] != "KILL_SWITCH" for c in cycles)


def _safe(ws: Workspace) -> list[dict[str, object]]:
    try:
        return ws.records()
    except (json.JSONDecodeError, FileNotFoundError):
        return []
