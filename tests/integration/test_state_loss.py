"""State is never silently started afresh (issue 12, section 1), tried from outside: the real
`vigil` CLI and daemon (`run --replay`) in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from runner import exit_codes
from tests.integration.conftest import Workspace
from tests.integration.live_helpers import cycles, make_workspace, running, wait_until, watched_fake

pytestmark = pytest.mark.integration

FAST = ("--speed", "1000000000")


def replay(ws: Workspace, *extra: str) -> None:
    res = ws.vigil("run", "--replay", str(ws.candles), *FAST, *extra, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]


def table_rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall())
            for t in ("positions", "fills", "daily_pnl", "orders", "kv")
        }
    finally:
        con.close()


def lose_state(ws: Workspace, how: str) -> Path:
    """Move state.db aside (kept for comparison); `how` leaves it missing or 0 bytes."""
    kept = ws.data.parent / "kept-state.db"
    ws.state_db.rename(kept)
    for sib in ws.data.glob("state.db-*"):
        sib.unlink()
    if how == "empty":
        ws.state_db.write_bytes(b"")
    return kept


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_lost_state_db_refuses_to_start_then_rebuild_restores_it(ws: Workspace, how: str) -> None:
    replay(ws, "--max-cycles", "600")
    kept = lose_state(ws, how)
    before = ws.records()

    res = ws.vigil("run", "--replay", str(ws.candles), *FAST)
    assert res.returncode == exit_codes.STATE_CORRUPTED, res.stderr[-2000:]
    assert "vigil has run here before" in res.stderr
    assert "vigil state rebuild" in res.stderr and "--fresh-state" in res.stderr
    assert "Traceback" not in res.stderr
    assert ws.records() == before  # refused before writing anything
    assert (not ws.state_db.exists()) or ws.state_db.stat().st_size == 0

    dry = ws.vigil("state", "rebuild", "--replay", "--offline", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "position" in dry.stdout and "realized PnL" in dry.stdout
    assert "nothing written" in dry.stdout
    assert (not ws.state_db.exists()) or ws.state_db.stat().st_size == 0

    rebuilt = ws.vigil("state", "rebuild", "--replay", "--offline")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "venue check: SKIPPED" in rebuilt.stdout
    assert "state rebuilt into" in rebuilt.stdout
    # The rebuilt database holds what the lost one held, row for row (positions with cost
    # basis, fills, daily PnL, orders; kv: cash, kill latch, regime, equity marks, last cycle).
    want, got = table_rows(kept), table_rows(ws.state_db)
    for table in ("fills", "daily_pnl", "orders", "kv"):
        assert got[table] == want[table], table
    # Trailing-stop peaks are not in the audit log: the rebuilt peak is the entry price.
    strip_peak = [row[:5] + row[6:] for row in want["positions"]]
    assert [row[:5] + row[6:] for row in got["positions"]] == strip_peak
    rebuilt_recs = [r for r in ws.records() if r["kind"] == "state_rebuilt"]
    assert len(rebuilt_recs) == 1
    assert ws.vigil("audit", "verify", "--replay").returncode == 0
    assert "match state.db" in ws.vigil("audit", "replay", "--replay").stdout

    # The replay continues where the lost state left off instead of starting over.
    last = max(r["data"]["cycle_ts"] for r in ws.records() if r["kind"] == "cycle")
    replay(ws, "--max-cycles", "5")
    new = [r["data"]["cycle_ts"] for r in ws.records() if r["kind"] == "cycle"]
    assert min(new[-5:]) > last


def test_fresh_state_is_explicit_and_audited(ws: Workspace) -> None:
    replay(ws, "--max-cycles", "100")
    lose_state(ws, "missing")
    res = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", "3", "--fresh-state")
    assert res.returncode == 0, res.stderr[-2000:]
    fresh = [r for r in ws.records() if r["kind"] == "state_fresh"]
    assert len(fresh) == 1 and any("audit log" in f for f in fresh[0]["data"]["found"])
    # With state present the flag is refused: it never discards a database.
    again = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--fresh-state")
    assert again.returncode == exit_codes.CONFIG
    assert "holds state" in again.stderr
    # A rebuild now starts from the fresh start, not from the beginning of the log.
    ws.state_db.unlink()
    dry = ws.vigil("state", "rebuild", "--replay", "--offline", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "(0 fills)" in dry.stdout


def test_first_start_needs_no_flag_and_rebuild_refuses_existing_state(ws: Workspace) -> None:
    replay(ws, "--max-cycles", "3")  # nothing here before: an ordinary start
    res = ws.vigil("state", "rebuild", "--replay", "--offline")
    assert res.returncode == exit_codes.FAILURE
    assert "already holds state" in res.stderr


def test_status_and_replay_never_write_the_database(ws: Workspace) -> None:
    ws.data.mkdir(parents=True)
    ws.state_db.write_bytes(b"")
    st = ws.vigil("status", "--replay", "--json")
    assert st.returncode == exit_codes.NOT_RUNNING, st.stderr
    assert "missing or empty" in json.loads(st.stdout)["state"]
    assert ws.state_db.read_bytes() == b""  # no schema written into it
    ws.audit_dir.mkdir()
    rp = ws.vigil("audit", "replay", "--replay")
    assert rp.returncode == exit_codes.STORAGE, rp.stderr
    assert ws.state_db.read_bytes() == b""


def test_status_on_a_sound_db_leaves_its_bytes_alone(ws: Workspace) -> None:
    replay(ws, "--max-cycles", "50")
    before = ws.state_db.read_bytes()
    assert ws.vigil("status", "--replay").returncode == exit_codes.NOT_RUNNING
    assert ws.vigil("audit", "replay", "--replay").returncode == 0
    assert ws.state_db.read_bytes() == before


def test_damaged_file_is_quarantined_once(ws: Workspace) -> None:
    replay(ws, "--max-cycles", "50")
    raw = bytearray(ws.state_db.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = b"\x00garbage" * 512
    ws.state_db.write_bytes(bytes(raw))
    for cmd in (
        ("status", "--replay"),
        ("audit", "replay", "--replay"),
        ("run", "--replay", str(ws.candles), *FAST),
    ):
        res = ws.vigil(*cmd)
        assert res.returncode == exit_codes.STATE_CORRUPTED, (cmd, res.stderr[-2000:])
    copies = list((ws.data / "quarantine").iterdir())
    assert len(copies) == 1, copies


async def test_a_second_daemon_on_the_same_state_db_is_refused(tmp_path: Path) -> None:
    # A replay keeps every file in <data_dir>/replay whatever paths.* say, so the shared
    # state_db / audit_dir case is a PAPER daemon against the fake exchange.
    shared = tmp_path / "shared-state.db"
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, VIGIL_PATHS__STATE_DB=str(shared))
        async with running(ws) as daemon:
            await wait_until(lambda: bool(cycles(ws.records())), 30, daemon, what="a cycle")
            other = tmp_path / "other-data"
            second = make_workspace(
                tmp_path,
                fake.url,
                VIGIL_PATHS__STATE_DB=str(shared),
                VIGIL_PATHS__DATA_DIR=str(other),
            )
            rc, _out, err = await second.vigil("run", timeout=60)
            assert rc == exit_codes.ALREADY_RUNNING, err[-2000:]
            assert str(daemon.pid) in err
            # Same audit directory, another data_dir and state_db: refused too.
            third = make_workspace(
                tmp_path,
                fake.url,
                VIGIL_PATHS__DATA_DIR=str(other),
                VIGIL_PATHS__AUDIT_DIR=str(ws.audit_dir),
            )
            rc, _out, err = await third.vigil("run", timeout=60)
            assert rc == exit_codes.ALREADY_RUNNING, err[-2000:]
            assert await daemon.terminate() == 0
    assert not (other / "state.db").exists()


def test_kill_while_state_is_lost_does_not_recreate_it_and_the_rebuild_keeps_the_latch(
    ws: Workspace,
) -> None:
    replay(ws, "--max-cycles", "50")
    lose_state(ws, "missing")
    res = ws.vigil("kill", "--replay", "--reason", "state lost drill")
    assert res.returncode == exit_codes.NOT_RUNNING, res.stderr
    assert "state.db" in res.stderr and "is lost" in res.stderr
    assert not ws.state_db.exists()  # the daemon still refuses: nothing pretends to be state
    assert ws.vigil("run", "--replay", str(ws.candles), *FAST).returncode == (
        exit_codes.STATE_CORRUPTED
    )
    rebuilt = ws.vigil("state", "rebuild", "--replay", "--offline")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "kill latch: ENGAGED (state lost drill)" in rebuilt.stdout
    st = ws.vigil("status", "--replay", "--json")
    assert json.loads(st.stdout)["kill_switch"] is True
