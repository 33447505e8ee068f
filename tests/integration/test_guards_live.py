"""Issue 11, sections 2 and 3, shown from outside: the real daemon (`vigil run`, a child
process) against the fake Binance exchange, judged by its exit code, /health, /metrics and
audit log.

- LIVE with a skewed clock refuses to start (exit 7); drift while running goes exits only;
- a thin book refuses entries in PAPER (THIN_BOOK);
- an exception in every cycle latches exits only, then HALTED, with the process still up;
- with the exchange down, the API-error and EXCHANGE_DOWN metrics move on the first failure;
- a symbol whose orders the venue keeps rejecting is banned alone; the rest keeps trading.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import tempfile
from pathlib import Path

import pytest

from runner import exit_codes
from tests.integration.live_helpers import (
    SYMBOLS,
    closed_port,
    cycles,
    make_workspace,
    running,
    wait_until,
    watched_fake,
)

pytestmark = pytest.mark.integration


def sample(text: str, name: str, **labels: str) -> float:
    """One Prometheus sample (0 when absent); labels must match exactly those given."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        got = head[len(name) :]
        if got.startswith("{"):
            pairs = ",".join(sorted(got.strip("{}").split(",")))
        elif got == "":
            pairs = ""
        else:
            continue  # another metric sharing the prefix
        if not want or pairs == want:
            total += float(value)
    return total


async def test_live_with_a_skewed_clock_refuses_to_start(tmp_path: Path) -> None:
    async with asyncio.timeout(60), watched_fake(tmp_path / "data" / "audit") as fake:
        fake.set_clock_skew(2_000)  # the venue's clock runs 2 s ahead of this host's
        ws = make_workspace(tmp_path, fake.url, mode="LIVE")
        async with running(ws) as daemon:
            assert daemon.proc is not None
            rc = await asyncio.wait_for(daemon.proc.wait(), 40)
        state = await fake.state()
    err = daemon.stderr()
    assert rc == exit_codes.CLOCK_SKEW == 7, err[-2000:]
    refusal = r"refusing to start: host clock is \d+ ms behind binance \(limit 150 ms\)"
    assert re.search(refusal, err)
    assert "Traceback" not in err
    refused = [r for r in ws.records() if r["kind"] == "clock_refused"]
    assert refused and "behind binance" in refused[0]["data"]["detail"]
    assert state["orders"] == []
    assert state["requests"]["by_endpoint"].get("GET /api/v3/time", 0) >= 1


async def test_live_starts_when_only_the_first_time_request_is_slow(tmp_path: Path) -> None:
    """The venue answers the first /time request 400 ms late (stamping its time at the end, as
    a new connection or a loaded host would): alone that sample puts the clock 200 ms off, past
    the 150 ms limit. The quicker samples after it show the clocks agree, so LIVE starts."""
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        fake.add_fault(kind="latency", path="/api/v3/time", ms=400, count=1)
        ws = make_workspace(tmp_path, fake.url, mode="LIVE")
        async with running(ws) as daemon:
            await wait_until(lambda: len(cycles(ws.records())) >= 1, 60, daemon, what="a cycle")
            _, health = await daemon.health()
            assert await daemon.terminate() == 0
        state = await fake.state()
    assert not [r for r in ws.records() if r["kind"] == "clock_refused"]
    assert health["clock"]["ok"] is True and abs(health["clock"]["offset_ms"]) < 150, health
    assert state["requests"]["by_endpoint"].get("GET /api/v3/time", 0) >= 3


async def test_clock_drift_while_running_goes_exits_only_and_back(tmp_path: Path) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(
            tmp_path, fake.url, mode="PAPER", VIGIL_CLOCK__CHECK_INTERVAL_SECONDS="1"
        )
        async with running(ws) as daemon:
            await wait_until(lambda: len(cycles(ws.records())) >= 3, 60, daemon, what="cycles")
            fake.set_clock_skew(-1_500)  # now the host runs 1.5 s ahead of the venue

            async def exits_only() -> dict[str, object] | None:
                _, body = await daemon.health()
                return body if "clock_skew" in body["exits_only"] else None

            health = await wait_until(exits_only, 20, daemon, what="exits only for clock_skew")
            _, text = await daemon.get("/metrics")
            assert sample(text, "vigil_exits_only", cause="clock_skew") == 1
            assert sample(text, "vigil_clock_offset_seconds") < -1.0
            seen = len(ws.records())
            await wait_until(
                lambda: any(c["trading_state"] == "REDUCING" for c in cycles(ws.records()[seen:])),
                10,
                daemon,
                what="an exits-only cycle",
            )
            fake.set_clock_skew(0)

            async def cleared() -> bool:
                _, body = await daemon.health()
                return not body["exits_only"]

            await wait_until(cleared, 20, daemon, what="exits only cleared")
            assert await daemon.terminate() == 0
    assert health["status"] == "degraded"
    assert "ahead of binance" in str(health["exits_only"])
    clock = health["clock"]
    assert isinstance(clock, dict) and clock["ok"] is False and clock["offset_ms"] < -1000
    kinds = [r["kind"] for r in ws.records()]
    assert "exits_only" in kinds and "exits_only_clear" in kinds


async def test_thin_book_refuses_entries_in_paper(tmp_path: Path) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        for sym in SYMBOLS:
            fake.set_book_scale(sym, "0.000001")  # a millionth of the usual depth
        ws = make_workspace(tmp_path, fake.url, mode="PAPER")
        async with running(ws) as daemon:

            def thin() -> list[dict[str, object]]:
                return [
                    r["data"]
                    for r in ws.records()
                    if r["kind"] == "verdict" and r["data"]["reason"] == "THIN_BOOK"
                ]

            await wait_until(lambda: len(thin()) >= 3, 60, daemon, what="THIN_BOOK verdicts")
            _, text = await daemon.get("/metrics")
            assert await daemon.terminate() == 0
        state = await fake.state()
    records = ws.records()
    buys = [r for r in records if r["kind"] == "order_intent" and r["data"]["side"] == "buy"]
    assert buys == []
    assert all(str(v["detail"]).startswith("ask depth ") for v in thin())
    assert sample(text, "vigil_rejections_total", reason="THIN_BOOK") >= 3
    # Books were asked for, but only for entry candidates: far fewer than cycles x symbols.
    books = state["requests"]["by_endpoint"].get("GET /api/v3/depth", 0)
    assert 3 <= books <= len(thin()) + len(SYMBOLS)
    assert "unavailable" not in daemon.stderr()


async def test_an_exception_every_cycle_latches_a_halt_without_a_restart(tmp_path: Path) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(
            tmp_path,
            fake.url,
            mode="PAPER",
            VIGIL_TEST_FAULT="cycle",
            VIGIL_LOOP__MAX_CYCLE_ERRORS="2",
            VIGIL_API_KEY="sk-test-must-not-leak-0123456789",
        )
        async with running(ws) as daemon:
            pid = daemon.pid

            async def halted() -> dict[str, object] | None:
                _, body = await daemon.health()
                return body if body["trading_state"] == "HALTED" else None

            health = await wait_until(halted, 40, daemon, what="/health HALTED")
            _, text = await daemon.get("/metrics")
            await asyncio.sleep(2)  # still failing every cycle, still the same process
            assert daemon.alive() and daemon.pid == pid
            _, after = await daemon.get("/metrics")
            assert await daemon.terminate() == 0
    records = ws.records()
    kinds = [r["kind"] for r in records]
    errors = [r["data"] for r in records if r["kind"] == "cycle_error"]
    assert len(errors) >= 4
    assert errors[0]["error"] == "InjectedFault" and errors[0]["in_a_row"] == 1
    assert "Traceback (most recent call last)" in errors[0]["traceback"]
    assert kinds.index("exits_only") < kinds.index("kill_switch")
    kill = next(r["data"] for r in records if r["kind"] == "kill_switch")
    assert kill["source"] == "cycle_errors" and "4 cycles failed in a row" in kill["reason"]
    assert health["kill_switch"] is True
    assert "cycle_errors" in str(health["detail"])
    assert sample(text, "vigil_cycle_errors_total", kind="InjectedFault") >= 4
    assert sample(after, "vigil_cycle_errors_total", kind="InjectedFault") > sample(
        text, "vigil_cycle_errors_total", kind="InjectedFault"
    )
    assert sample(text, "vigil_exits_only", cause="cycle_errors") == 1
    assert "sk-test-must-not-leak" not in "".join(str(r) for r in records)
    assert records[0]["data"]["test_fault"] == "cycle"


async def test_exchange_down_at_start_moves_the_metrics_on_the_first_failure(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ws = make_workspace(tmp_path, url, mode="PAPER", VIGIL_EXCHANGE__TIMEOUT_MS="1000")
    async with asyncio.timeout(60), running(ws) as daemon:
        line = re.compile(r"exchange binance unreachable .*; trading nothing, retrying in")
        await wait_until(lambda: line.search(daemon.stderr()), 30, daemon, what="one attempt")
        _, text = await daemon.get("/metrics")
        assert await daemon.terminate(timeout=10) == 0
    # Every failed request counts (the first attempt and its retries), and the failed start
    # counts as a cycle that could not trade.
    assert sample(text, "vigil_api_errors_total") >= 1
    assert sample(text, "vigil_no_trade_total", reason="EXCHANGE_DOWN") >= 1


async def test_exchange_down_while_running_moves_the_metrics_and_says_it_retries(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="PAPER")
        async with running(ws) as daemon:
            await wait_until(lambda: len(cycles(ws.records())) >= 3, 60, daemon, what="cycles")
            _, before = await daemon.get("/metrics")
            fake.add_fault(kind="server_error", status=503)

            async def api_errors() -> bool:
                _, text = await daemon.get("/metrics")
                return sample(text, "vigil_api_errors_total") > sample(
                    before, "vigil_api_errors_total"
                )

            await wait_until(api_errors, 20, daemon, what="vigil_api_errors_total to move")

            async def down() -> str | None:
                _, text = await daemon.get("/metrics")
                n = sample(text, "vigil_no_trade_total", reason="EXCHANGE_DOWN")
                return text if n > 0 else None

            await wait_until(down, 30, daemon, what="EXCHANGE_DOWN to be counted")
            fake.clear_faults()
            assert await daemon.terminate() == 0
    err = daemon.stderr()
    assert "trading nothing, retrying every cycle" in err
    assert "not asking again" not in err


async def test_a_symbol_the_venue_keeps_rejecting_is_banned_alone(tmp_path: Path) -> None:
    async with asyncio.timeout(120), watched_fake(tmp_path / "data" / "audit") as fake:
        fake.add_fault(kind="filter_failure", filter="PRICE_FILTER", symbol="SOL/USDT")
        ws = make_workspace(tmp_path, fake.url, mode="LIVE")
        async with running(ws) as daemon:

            def banned() -> list[dict[str, object]]:
                return [r["data"] for r in ws.records() if r["kind"] == "symbol_banned"]

            await wait_until(banned, 90, daemon, what="SOL/USDT banned")
            after = len(ws.records())
            placed = len(fake.accepted)
            # The others keep trading: the ban is the symbol's, not the bot's.
            await wait_until(
                lambda: len(fake.accepted) >= placed + 2, 60, daemon, what="more orders"
            )
            assert await daemon.terminate() == 0
    records = ws.records()
    ban = banned()
    assert [b["symbol"] for b in ban] == ["SOL/USDT"]
    assert "orders rejected" in str(ban[0]["reason"])
    assert {a.symbol for a in fake.accepted} <= {"BTC/USDT", "ETH/USDT"}
    later = cycles(records[after:])
    assert later and all("SOL/USDT" not in c["eligible"] for c in later)
    trips = [r["data"]["breaker"] for r in records if r["kind"] == "breaker_trip"]
    assert "rejections" not in trips
    assert any(c["excluded"].get("BANNED") for c in later)


async def test_ready_and_watchdog_while_the_exchange_is_down_at_start(tmp_path: Path) -> None:
    """What the shipped unit relies on (Type=notify, WatchdogSec): READY=1 once vigil serves
    /health, WATCHDOG=1 while it waits for an unreachable exchange; no start timeout."""
    with tempfile.TemporaryDirectory(prefix="vn") as short:  # AF_UNIX paths are short
        path = str(Path(short) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        got: list[str] = []

        def drain() -> list[str]:
            with contextlib.suppress(BlockingIOError):
                while True:
                    got.append(sock.recv(4096).decode())
            return got

        url = f"http://127.0.0.1:{closed_port()}"
        ws = make_workspace(
            tmp_path,
            url,
            mode="PAPER",
            VIGIL_EXCHANGE__TIMEOUT_MS="1000",
            NOTIFY_SOCKET=path,
            WATCHDOG_USEC="1500000",  # pet every 0.5 s
        )
        try:
            async with asyncio.timeout(60), running(ws) as daemon:
                await wait_until(
                    lambda: any(m.startswith("READY=1") for m in drain()), 30, daemon, what="READY"
                )
                await wait_until(
                    lambda: sum(m == "WATCHDOG=1" for m in drain()) >= 3, 20, daemon, what="pets"
                )
                status, health = await daemon.health()
                assert status == 503 and "unreachable" in health["detail"]
                assert await daemon.terminate(timeout=10) == 0
            drain()
        finally:
            sock.close()
    ready = next(m for m in got if m.startswith("READY=1"))
    assert "STATUS=mode=PAPER" in ready and "starting" in ready
    assert not any("trading" in m for m in got)  # it never got that far
    assert got[-1] == "STOPPING=1"
