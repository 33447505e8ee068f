"""The drills. Each starts the real daemon against the fake exchange in a temporary directory,
causes one failure, and checks the outcome from outside: the fake's books, the audit log, exit
codes, `vigil` commands. A drill returns its measurements or raises DrillFailed."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.drills.harness import RESTING_ENV, DrillFailed, Site, held, site, wait_until

Measures = dict[str, Any]
DOWN_PREFIXES = ("EXCHANGE_DOWN", "MISSING_DATA")


@dataclass(frozen=True, slots=True)
class Drill:
    name: str
    fast: bool  # runs in `make test` (tests/tools/test_drills.py)
    what: str
    run: Callable[[Path], Awaitable[Measures]]


def _exchange_bad(health: dict[str, Any] | None) -> bool:
    """/health names the exchange component degraded or down."""
    comp = ((health or {}).get("components") or {}).get("exchange") or {}
    return comp.get("status") not in (None, "ok")


def _down(c: dict[str, Any]) -> bool:
    return str(c.get("no_trade_reason") or "").startswith(DOWN_PREFIXES)


async def _started(s: Site, name: str = "daemon", cycles: int = 3) -> Any:
    d = await s.daemon(name).start()
    seen = len(s.cycles())
    await wait_until(lambda: len(s.cycles()) >= seen + cycles, 60, d, f"{cycles} cycles")
    return d


# --------------------------------------------------------------------------- drills


async def kill_switch(config: Path) -> Measures:
    async with site(config, env=RESTING_ENV) as s:
        d = await s.daemon().start()

        async def resting() -> bool:
            return int((await s.fake.state())["open_orders"]) >= 1

        await wait_until(resting, 60, d, "an order resting on the fake")
        t0 = time.monotonic()
        s.kill_file.write_text("drill: kill switch\n")

        async def none_open() -> bool:
            return int((await s.fake.state())["open_orders"]) == 0

        await wait_until(none_open, 5, d, "every order cancelled on the fake", every=0.01)
        cancel_s = time.monotonic() - t0
        seen = len(s.cycles())
        await wait_until(lambda: len(s.cycles()) >= seen + 3, 15, d, "three halted cycles")
        open_after = int((await s.fake.state())["open_orders"])
        rc = await d.terminate()
        records = s.records()
    kill = next((r["seq"] for r in records if r["kind"] == "kill_switch"), None)
    if kill is None:
        raise DrillFailed("no kill_switch record in the audit log")
    sent_after = [r for r in records if r["kind"] == "order_intent" and r["seq"] > kill]
    if sent_after or open_after:
        raise DrillFailed(
            f"{len(sent_after)} order(s) sent after the kill switch, {open_after} open on the fake"
        )
    if cancel_s > 2.0:
        raise DrillFailed(f"orders cancelled {cancel_s:.2f} s after the file, over 2 s")
    return {"cancel_s": round(cancel_s, 3), "sent_after": 0, "open_after": 0, "exit": rc}


async def audit_tamper(config: Path) -> Measures:
    async with site(config) as s:
        d = await _started(s, cycles=5)
        await d.terminate()
        files = sorted(s.audit_dir.glob("audit-*.jsonl"))
        lines = files[-1].read_text().splitlines()
        victim = len(lines) // 2
        record = json.loads(lines[victim])
        seq = int(record["seq"])
        # one field added to the record's data: its hash no longer matches its content
        record["data"]["drill"] = "tampered"
        lines[victim] = json.dumps(record, separators=(",", ":"))
        files[-1].write_text("\n".join(lines) + "\n")
        rc, out, err = await s.vigil("audit", "verify")
    if rc != 1:
        raise DrillFailed(f"audit verify exit {rc} on a tampered log (expected 1): {out}{err}")
    if f"seq {seq}" not in out + err:
        raise DrillFailed(f"audit verify did not name seq {seq}: {out}{err}")
    return {"tampered_seq": seq, "verify_exit": rc, "named": f"seq {seq}"}


async def state_corruption(config: Path) -> Measures:
    async with site(config) as s:
        d = await _started(s)
        await d.terminate()
        size = s.state_db.stat().st_size
        with open(s.state_db, "r+b") as f:  # garbage over the pages after the header page
            f.seek(min(4096, size // 2))
            f.write(b"\xde\xad\xbe\xef" * 1024)
        damaged = s.state_db.read_bytes()
        t0 = time.monotonic()
        d2 = await s.daemon("restart").start()
        rc = await d2.wait(60)
        refused_s = time.monotonic() - t0
        quarantined = [p for p in (s.data / "quarantine").rglob("state.db*") if p.is_file()]
        untouched = s.state_db.read_bytes() == damaged
    if rc != 4:
        raise DrillFailed(f"restart on a damaged state.db exited {rc}, expected 4")
    if not quarantined:
        raise DrillFailed("no copy of the damaged state.db in data/quarantine")
    if not untouched:
        raise DrillFailed("the damaged state.db was changed instead of kept as evidence")
    return {"exit": rc, "refused_s": round(refused_s, 2), "quarantined": len(quarantined)}


async def _fault_recovery(config: Path, *, storm_s: float, **fault: Any) -> Measures:
    """The fault on every request for `storm_s`, then cleared: how soon the daemon showed it
    (a cycle ending EXCHANGE_DOWN/MISSING_DATA, or /health's exchange component not ok; None
    if neither within the fault), and how soon after the fault a cycle ran normally again."""
    async with site(config) as s:
        d = await _started(s)
        base = len(s.cycles())
        s.fake.add_fault(**fault)
        t0 = time.monotonic()
        detect = None
        while time.monotonic() - t0 < storm_s:
            if detect is None and (
                any(_down(c) for c in s.cycles()[base:]) or _exchange_bad(await d.health())
            ):
                detect = time.monotonic() - t0
            if d.returncode is not None:
                raise DrillFailed(f"daemon exited {d.returncode} during the fault")
            await asyncio.sleep(0.05)
        s.fake.clear_faults()
        mark = len(s.cycles())
        recover = await wait_until(
            lambda: any(not _down(c) for c in s.cycles()[mark:]), 90, d, "a normal cycle"
        )
        state = await s.fake.state()
        rc = await d.terminate()
    by_status = state["requests"]["by_status"]
    return {
        "fault_s": storm_s,
        "detect_s": None if detect is None else round(detect, 2),
        "recover_s": round(recover, 2),
        "answers_5xx_429": sum(n for st, n in by_status.items() if st in ("429", "503")),
        "status_418": by_status.get("418", 0),
        "banned_for_s": state["banned_for_s"],
        "exit": rc,
    }


async def feeder_outage(config: Path) -> Measures:
    m = await _fault_recovery(config, storm_s=30, kind="server_error", status=503)
    if m["detect_s"] is None:
        raise DrillFailed(f"30 s of 503s and no cycle said the exchange was down: {m}")
    if m["exit"] != 0:
        raise DrillFailed(f"daemon exited {m['exit']} after the outage")
    return m


async def rate_limit_storm(config: Path) -> Measures:
    m = await _fault_recovery(config, storm_s=15, kind="rate_limit", retry_after_s=1)
    if m["status_418"] or m["banned_for_s"]:
        raise DrillFailed(f"the daemon got itself banned (418): {m}")
    if m["exit"] != 0:
        raise DrillFailed(f"daemon exited {m['exit']} after the storm")
    return m


async def insufficient_balance(config: Path) -> Measures:
    async with site(config) as s:
        s.fake.add_fault(kind="insufficient_balance")
        d = await s.daemon().start()

        def refused() -> int:
            return sum(
                1
                for r in s.records()
                if r["kind"] == "order_ack" and r["data"].get("status") == "REJECTED"
            )

        await wait_until(refused, 60, d, "an order refused for insufficient balance")
        s.fake.clear_faults()
        seen = len(s.cycles())
        await wait_until(lambda: len(s.cycles()) >= seen + 3, 20, d, "cycles after the refusal")
        state = await s.fake.state()
        n = refused()
        rc = await d.terminate()
        vrc, out, err = await s.vigil("audit", "verify")
    if rc != 0 or vrc != 0:
        raise DrillFailed(f"daemon exit {rc}, audit verify exit {vrc}: {out}{err}")
    return {"refused": n, "orders_on_fake": len(state["orders"]), "exit": rc}


async def crash_mid_order(config: Path) -> Measures:
    async with site(config) as s:
        d = await s.daemon().start()

        async def ordered() -> bool:
            return len((await s.fake.state())["orders"]) >= 3

        await wait_until(ordered, 90, d, "three orders on the fake")
        await d.kill()  # kill -9: no shutdown path
        d2 = await _started(s, "restart", cycles=5)
        s.fake.frozen = True  # no more fills: let the daemon book what happened, then stop
        seen = len(s.cycles())
        await wait_until(lambda: len(s.cycles()) >= seen + 2, 15, d2, "two quiet cycles")
        await d2.terminate()
        state = await s.fake.state()
        records = s.records()
    coids = [o["clientOrderId"] for o in state["orders"]]
    dupes = len(coids) - len(set(coids))
    booked = {r["data"]["fill_id"] for r in records if r["kind"] == "fill"}
    lost = [f for f in state["fills"] if str(f["id"]) not in booked]
    if dupes:
        raise DrillFailed(f"{dupes} client order id(s) reached the fake twice")
    if lost:
        raise DrillFailed(f"{len(lost)} fill(s) on the fake never booked: {lost[:3]}")
    return {"orders": len(coids), "duplicates": dupes, "fills": len(state["fills"]), "lost": 0}


async def flatten(config: Path) -> Measures:
    async with site(config) as s:
        d = await s.daemon().start()

        async def holding() -> bool:
            return any(q > 0 for q in held(await s.fake.state()).values())

        await wait_until(holding, 90, d, "a position on the fake")
        t0 = time.monotonic()
        rc, out, err = await s.vigil("kill", "--flatten", "--reason", "drill: flatten")
        took = time.monotonic() - t0
        await d.terminate()
        left = {k: v for k, v in held(await s.fake.state()).items() if v > 0}
    if rc != 0:
        raise DrillFailed(f"kill --flatten exit {rc}: {out}{err}")
    return {"flatten_s": round(took, 2), "left": {k: str(v) for k, v in left.items()} or "none"}


async def clock_drift(config: Path) -> Measures:
    async with site(config) as s:
        # the venue's clock 2 s ahead of this host's: far beyond any sane clock.max_offset_ms
        s.fake.set_clock_skew(2_000)
        t0 = time.monotonic()
        d = await s.daemon().start()
        rc = await d.wait(60)
        refused_s = time.monotonic() - t0
        state = await s.fake.state()
        refused = [r for r in s.records() if r["kind"] == "clock_refused"]
        err = d.stderr()
    # no order may reach the venue, and the refusal must come from the check, not a crash
    if rc != 7:
        raise DrillFailed(f"LIVE on a clock 2 s off exited {rc}, expected 7:\n{err[-1500:]}")
    if not refused:
        raise DrillFailed("no clock_refused record in the audit log")
    if "Traceback" in err:
        raise DrillFailed(f"a traceback on the refusal:\n{err[-1500:]}")
    if state["orders"]:
        raise DrillFailed(f"{len(state['orders'])} order(s) reached the fake before the refusal")
    detail = str(refused[0]["data"]["detail"])
    seen = re.search(r"host clock is (\d+) ms behind", detail)
    if seen is None or not 1_500 <= int(seen.group(1)) <= 2_500:
        raise DrillFailed(f"the refusal does not name the 2 s offset: {detail}")
    return {"exit": rc, "refused_s": round(refused_s, 2), "offset_ms": int(seen.group(1))}


DRILLS: dict[str, Drill] = {
    d.name: d
    for d in (
        Drill(
            "kill_switch",
            True,
            "orders resting; touch KILL_SWITCH: all cancelled within 2 s, nothing new sent",
            kill_switch,
        ),
        Drill(
            "audit_tamper",
            True,
            "edit one audit record: `vigil audit verify` exits 1 naming it",
            audit_tamper,
        ),
        Drill(
            "state_corruption",
            True,
            "overwrite state.db pages: restart exits 4, copy in quarantine, file kept",
            state_corruption,
        ),
        Drill(
            "insufficient_balance",
            True,
            "the venue refuses orders for funds: refused and recorded, daemon keeps cycling",
            insufficient_balance,
        ),
        Drill(
            "clock_drift",
            True,
            "the venue's clock 2 s ahead: LIVE refuses to start, exit 7, clock_refused recorded",
            clock_drift,
        ),
        Drill(
            "flatten",
            False,
            "positions held; `vigil kill --flatten`: flat or dust on the fake's books",
            flatten,
        ),
        Drill(
            "feeder_outage",
            False,
            "every request answers 503 for 30 s: detect and recovery times",
            feeder_outage,
        ),
        Drill(
            "rate_limit_storm",
            False,
            "every request answers 429: no ban (418), recovery time",
            rate_limit_storm,
        ),
        Drill(
            "crash_mid_order",
            False,
            "kill -9 while trading, restart: no duplicate order, no lost fill",
            crash_mid_order,
        ),
    )
}
