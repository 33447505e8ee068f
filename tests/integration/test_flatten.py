"""`vigil flatten` and `vigil kill --flatten` against the fake exchange: positions flat on the
fake's own books (dust below the venue minimum aside), through the running daemon or on its own,
every step in the audit log."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.live_helpers import (
    SYMBOLS,
    LiveWorkspace,
    WatchedFake,
    base_asset,
    fake_totals,
    make_workspace,
    read_db,
    running,
    wait_until,
    watched_fake,
)

pytestmark = pytest.mark.integration
FAST = ("--passive-seconds", "1", "--marketable-seconds", "8")
# The workspace's exits are tight so positions come and go within seconds; a flatten needs a
# position that is still there when it runs (on a loaded machine, `vigil kill` alone takes a
# few seconds to start), so these tests keep their positions until they flatten them.
HOLD = {
    "VIGIL_EXITS__STOP_LOSS_PCT": "-50",
    "VIGIL_EXITS__TAKE_PROFIT_PCT": "100",
    "VIGIL_EXITS__TRAILING_STOP_PCT": "50",
    "VIGIL_EXITS__MAX_HOLDING_MINUTES": "600",
}


async def held(fake: WatchedFake) -> dict[str, Decimal]:
    totals = fake_totals(await fake.state())
    return {s: totals.get(base_asset(s), Decimal(0)) for s in SYMBOLS}


def kinds(ws: LiveWorkspace) -> list[str]:
    return [r["kind"] for r in ws.records()]


async def test_kill_flatten_through_the_running_daemon(tmp_path: Path) -> None:
    async with asyncio.timeout(150), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE", **HOLD)
        async with running(ws) as daemon:

            async def holding() -> bool:
                return any(q > 0 for q in (await held(fake)).values())

            await wait_until(holding, 90, daemon, what="a position on the fake")
            rc, out, err = await ws.vigil("kill", "--reason", "drill: get flat", "--flatten", *FAST)
            assert rc == 0, out + err
            assert await daemon.terminate() == 0
        holdings = await held(fake)
        state = await fake.state()
    assert "flatten" in out and "done" in out, out
    assert "nothing to flatten" not in out, out
    problems = [line for line in out.splitlines() if ": left" in line]
    assert not problems, out
    left = {s: q for s, q in holdings.items() if q > 0}
    for line in out.splitlines():
        for sym in left:
            if line.startswith(f"{sym}:"):
                assert "dust" in line, out
    assert state["open_orders"] == 0
    k = kinds(ws)
    assert k.index("kill_switch") < k.index("flatten_request") < k.index("flatten_result")
    steps = [r["data"] for r in ws.records() if r["kind"] == "flatten_step"]
    assert steps and all(s["step"] in ("passive", "marketable") for s in steps), out
    db = read_db(ws.state_db)
    for sym, qty in db.positions.items():
        assert qty == holdings[sym], (sym, qty, holdings)
    rc, out, err = await ws.vigil("audit", "verify")
    assert rc == 0, out + err


async def test_flatten_without_a_daemon_does_it_on_its_own(tmp_path: Path) -> None:
    async with asyncio.timeout(150), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE", **HOLD)
        async with running(ws) as daemon:

            async def holding() -> bool:
                return any(q > 0 for q in (await held(fake)).values())

            await wait_until(holding, 90, daemon, what="a position on the fake")
            await daemon.kill()  # kill -9: the positions stay, nobody runs
        before = await held(fake)
        rc, out, err = await ws.vigil("flatten", "--reason", "standalone drill", *FAST)
        holdings = await held(fake)
    assert rc == 0, out + err
    assert "not running" in out and "done" in out, out
    assert any(q > 0 for q in before.values())
    for sym, qty in holdings.items():
        if qty > 0:
            assert any(x.startswith(f"{sym}: dust") for x in out.splitlines()), out
    assert "flatten_result" in kinds(ws)
    result = json.loads((ws.data / "FLATTEN.result").read_text())
    assert result["ok"] is True


async def test_paper_flatten_sells_the_paper_wallet_on_new_candles(tmp_path: Path) -> None:
    async with asyncio.timeout(150), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="PAPER")
        async with running(ws) as daemon:

            def holding() -> bool:
                try:
                    return bool(read_db(ws.state_db).positions)
                except sqlite3.Error:  # not created yet
                    return False

            await wait_until(holding, 90, daemon, what="a paper position")
            rc, out, err = await ws.vigil(
                "flatten",
                "--reason",
                "paper drill",
                "--passive-seconds",
                "1",
                "--marketable-seconds",
                "15",
            )
            assert await daemon.terminate() == 0
    assert rc == 0, out + err
    assert "done" in out, out
    db = read_db(ws.state_db)
    left = [line for line in out.splitlines() if line.split(":")[0] in db.positions]
    assert all(": dust" in line for line in left), out


async def test_paper_auto_unwind_sells_the_paper_wallet_on_a_clean_stop(tmp_path: Path) -> None:
    async with asyncio.timeout(150), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(
            tmp_path, fake.url, mode="PAPER", VIGIL_FLATTEN__PAPER_UNWIND_ON_STOP="true"
        )
        async with running(ws) as daemon:

            def holding() -> bool:
                try:
                    return bool(read_db(ws.state_db).positions)
                except sqlite3.Error:  # not created yet
                    return False

            await wait_until(holding, 90, daemon, what="a paper position")
            assert await daemon.terminate(timeout=40) == 0
    results = [r["data"] for r in ws.records() if r["kind"] == "flatten_result"]
    assert len(results) == 1 and results[0]["ok"] is True, results
    kinds_ = kinds(ws)
    assert kinds_.index("flatten_result") < kinds_.index("shutdown")
    db = read_db(ws.state_db)
    assert all(any(f"{s}: dust" in o for o in results[0]["outcomes"]) for s in db.positions), (
        db.positions,
        results,
    )


async def test_auto_trim_sells_a_position_back_down_to_its_cap(tmp_path: Path) -> None:
    async with asyncio.timeout(200), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE")
        async with running(ws) as daemon:

            async def holding() -> bool:
                return any(q > 0 for q in (await held(fake)).values())

            await wait_until(holding, 90, daemon, what="a position on the fake")
            await daemon.kill()  # the positions stay
        # Restarted with a cap far below what is held and a 10% tolerance: trimmed at once.
        ws.env["VIGIL_RISK__MAX_ASSET_EXPOSURE_PCT"] = "0.2"
        ws.env["VIGIL_FLATTEN__TRIM_TOLERANCE_PCT"] = "10"
        # halted, so nothing buys after the trim (the trim's sells pass: they only reduce)
        ws.kill_file.write_text("drill: hold still\n")
        async with running(ws, name="trimmed") as daemon:
            await wait_until(
                lambda: any(r["kind"] == "flatten_result" for r in ws.records()),
                60,
                daemon,
                what="an auto-trim",
            )
            holdings = await held(fake)
            assert await daemon.terminate() == 0
    results = [r["data"] for r in ws.records() if r["kind"] == "flatten_result"]
    requests = [r["data"] for r in ws.records() if r["kind"] == "flatten_request"]
    assert requests[0]["reason"].startswith("auto-trim"), requests
    assert results[0]["ok"] is True, results
    trimmed = [o for o in results[0]["outcomes"] if ": trimmed" in o]
    assert trimmed, results
    assert all(
        any(k in o for k in (": trimmed", ": dust", ": no_position"))
        for o in results[0]["outcomes"]
    )
    for line in trimmed:  # what the trim kept is what the fake holds
        sym, kept = line.split(":")[0], Decimal(line.rsplit("kept ", 1)[1])
        assert holdings[sym] <= kept, (sym, holdings[sym], kept)
