"""The real daemon against the fake Binance exchange while it misbehaves: an order answer
lost after the order was placed, a 429 storm, an outage, and no exchange at all."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from tests.integration.live_helpers import (
    account_problems,
    closed_port,
    cycles,
    down_reason,
    fill_problems,
    intent_problems,
    make_workspace,
    quiesce_and_stop,
    read_db,
    running,
    wait_until,
    watched_fake,
)

pytestmark = pytest.mark.integration

# A fault burst trips the API-error breaker; with the default 60 s window it would stay
# tripped for a minute after the fault ends. A short window shows recovery within the test.
FAULT_ENV = {"VIGIL_BREAKERS__API_ERROR_WINDOW_SECONDS": "4"}


async def test_dropped_answer_after_accept_leaves_exactly_one_order(tmp_path: Path) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE", **FAULT_ENV)
        async with running(ws) as daemon:
            await wait_until(lambda: len(fake.accepted) >= 2, 60, daemon, what="trading")
            before = len(fake.accepted)
            lookups = (await fake.state())["requests"]["by_endpoint"].get("GET /api/v3/order", 0)
            # The next order is placed and saved, then the connection is closed unanswered.
            fake.add_fault(kind="drop_after_accept", count=1)
            await wait_until(lambda: len(fake.accepted) > before, 30, daemon, what="an order")
            dropped = fake.accepted[before].client_order_id

            def acked() -> bool:
                return any(
                    r["kind"] == "order_ack" and r["data"]["client_order_id"] == dropped
                    for r in ws.records()
                )

            await wait_until(acked, 20, daemon, what="the dropped order's ack")
            await asyncio.sleep(2)  # a couple more cycles: nothing may be re-sent
            assert await quiesce_and_stop(fake, daemon, ws) == 0
        state = await fake.state()

    records = ws.records()
    db = read_db(ws.state_db)
    assert [o["clientOrderId"] for o in state["orders"]].count(dropped) == 1
    assert [a.client_order_id for a in fake.accepted].count(dropped) == 1
    assert db.orders[dropped]["status"] in ("OPEN", "PARTIAL", "FILLED", "CANCELED")
    acks = [
        r["data"]
        for r in records
        if r["kind"] == "order_ack" and r["data"]["client_order_id"] == dropped
    ]
    assert acks and acks[0]["status"] not in ("REJECTED", "FAILED", "NEW"), acks
    assert intent_problems(fake, state, records) == []
    # The adapter asked for the order by its client order id instead of sending it again.
    assert state["requests"]["by_endpoint"].get("GET /api/v3/order", 0) > lookups
    assert re.search(rf"{dropped}: order found by client order id: not resending", daemon.stderr())
    assert fill_problems(state, db, records) == []
    assert account_problems(state, db) == []


async def test_429_storm_backs_off_without_a_ban_and_trades_again(tmp_path: Path) -> None:
    async with asyncio.timeout(100), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE", **FAULT_ENV)
        async with running(ws) as daemon:
            await wait_until(lambda: len(fake.accepted) >= 1, 60, daemon, what="trading")
            calm = (await fake.state())["requests"]["total"]
            await asyncio.sleep(3)
            normal_rate = ((await fake.state())["requests"]["total"] - calm) / 3

            fake.add_fault(kind="rate_limit", retry_after_s=1)
            storm_start = await fake.state()
            t0 = time.monotonic()
            await asyncio.sleep(5)
            storm_end = await fake.state()
            fake.clear_faults()
            storm_s = time.monotonic() - t0
            after = len(ws.records())
            placed = len(fake.accepted)

            def healthy_cycles() -> int:
                recs = cycles(ws.records()[after:])
                return sum(1 for c in recs if c["no_trade_reason"] in (None, "NO_SIGNAL"))

            await wait_until(lambda: healthy_cycles() >= 3, 40, daemon, what="healthy cycles")
            await wait_until(lambda: len(fake.accepted) > placed, 40, daemon, what="an order")
            assert await quiesce_and_stop(fake, daemon, ws) == 0
        state = await fake.state()

    statuses = state["requests"]["by_status"]
    assert "418" not in statuses, statuses
    storm_429 = storm_end["requests"]["by_status"].get("429", 0) - storm_start["requests"][
        "by_status"
    ].get("429", 0)
    storm_requests = storm_end["requests"]["total"] - storm_start["requests"]["total"]
    assert storm_429 >= 1
    # Backing off: during the storm it asked far less often than when all was well.
    assert storm_requests < normal_rate * storm_s / 2, (storm_requests, normal_rate, storm_s)
    assert re.search(r"RateLimited; pausing requests for \d+s", daemon.stderr())
    records = ws.records()
    db = read_db(ws.state_db)
    assert account_problems(state, db) == []
    assert fill_problems(state, db, records) == []
    assert intent_problems(fake, state, records) == []


async def test_outage_is_no_trade_and_degraded_then_recovers(tmp_path: Path) -> None:
    async with asyncio.timeout(150), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE", **FAULT_ENV)
        async with running(ws) as daemon:
            await wait_until(lambda: len(cycles(ws.records())) >= 3, 60, daemon, what="cycles")
            status, body = await daemon.health()
            assert status == 200, body  # which component is unhealthy, if one is
            # A cycle record is written just before the cycle sends its orders: start the
            # outage half a second later, between cycles.
            seen = len(cycles(ws.records()))
            await wait_until(lambda: len(cycles(ws.records())) > seen, 10, daemon)
            await asyncio.sleep(0.5)
            start = len(ws.records())
            fake.add_fault(kind="server_error", status=503)

            def down_cycles() -> list[str]:
                return [
                    c["no_trade_reason"]
                    for c in cycles(ws.records()[start:])
                    if down_reason(c["no_trade_reason"])
                ]

            # Each read is retried with backoff inside its cycle, so during an outage a cycle
            # lasts about ten seconds before it gives up; hold the outage for two of them.
            await wait_until(lambda: len(down_cycles()) >= 2, 60, daemon, what="down cycles")

            async def degraded() -> dict[str, object] | None:
                status, body = await daemon.health()
                return body if status == 503 else None

            during = await wait_until(degraded, 10, daemon, what="/health 503")
            fake.clear_faults()
            after = len(ws.records())

            async def ok() -> bool:
                status, _ = await daemon.health()
                return status == 200

            await wait_until(ok, 40, daemon, what="/health 200 again")

            def clean() -> int:
                recs = cycles(ws.records()[after:])
                return sum(1 for c in recs[-3:] if not down_reason(c["no_trade_reason"]))

            await wait_until(lambda: clean() >= 3, 20, daemon, what="cycles without the reason")
            assert await daemon.terminate() == 0

    assert during["status"] == "degraded"
    components = during["components"]
    assert isinstance(components, dict)
    assert components["exchange"]["status"] != "ok", components
    reasons = down_cycles()
    assert all(r.startswith(("EXCHANGE_DOWN", "MISSING_DATA")) for r in reasons)
    assert any("EXCHANGE_DOWN" in r for r in reasons), reasons


async def test_no_exchange_at_all_one_line_per_attempt_degraded_and_clean_stop(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ws = make_workspace(tmp_path, url, mode="PAPER", VIGIL_EXCHANGE__TIMEOUT_MS="1000")
    async with asyncio.timeout(60), running(ws) as daemon:
        line = re.compile(r"exchange binance unreachable \(\w+: .*\); trading nothing, retrying")
        await wait_until(
            lambda: len(line.findall(daemon.stderr())) >= 2, 40, daemon, what="two attempts"
        )
        status, health = await daemon.health()
        assert status == 503 and health["status"] == "degraded", health
        assert "unreachable" in health["detail"]
        ready, _ = await daemon.get("/ready")
        assert ready == 503
        assert await daemon.terminate(timeout=10) == 0
    err = daemon.stderr()
    attempts = [ln for ln in err.splitlines() if "unreachable" in ln]
    assert len(attempts) >= 2
    assert all(line.search(ln) for ln in attempts), attempts
    assert "Traceback" not in err
    records = ws.records()
    assert records[-1]["kind"] == "shutdown" and records[-1]["data"]["started"] is False
    assert not [r for r in records if r["kind"] in ("cycle", "order_intent")]
