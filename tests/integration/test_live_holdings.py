"""Coins on the venue that the state does not know, and a lost state.db rebuilt and checked
against the venue: the real daemon in LIVE against the fake Binance through unmodified ccxt
(issue 12, section 1)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner import exit_codes
from tests.integration.live_helpers import (
    account_problems,
    cycles,
    make_workspace,
    quiesce_and_stop,
    read_db,
    running,
    wait_until,
    watched_fake,
)
from tools.fake_exchange.client import ccxt_for

pytestmark = pytest.mark.integration

# No strategy entries: the only positions are the ones a test makes. A daemon with no strategy
# enabled refuses to start, so an idle user strategy (it never proposes) takes the place.
IDLE = """
from pydantic import BaseModel, ConfigDict

from strategy.base import BaseStrategy
from strategy.registry import register


class IdleParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@register("idle")
class Idle(BaseStrategy):
    \"\"\"Never proposes anything.\"\"\"

    Params = IdleParams

    def propose(self, ctx):
        return ()
"""


def no_entries(tmp: Path) -> dict[str, str]:
    where = tmp / "idle_strategy"
    where.mkdir(exist_ok=True)
    (where / "idle.py").write_text(IDLE)
    return {
        "VIGIL_STRATEGIES_PATH": str(where),
        "VIGIL_STRATEGIES__RULES__ENABLED": "false",
        "VIGIL_STRATEGIES__IDLE__ENABLED": "true",
    }


async def buy_by_hand(fake: Any, symbol: str, amount: str) -> None:
    """An order placed on the venue by someone else (not vigil's client order id), filled."""
    ex = ccxt_for(fake)
    try:
        await ex.load_markets()
        await ex.create_order(
            symbol, "market", "buy", float(amount), params={"newClientOrderId": "by-hand-1"}
        )
    finally:
        await ex.close()

    async def filled() -> bool:
        st = await fake.state()
        return any(f["clientOrderId"] == "by-hand-1" for f in st["fills"])

    await wait_until(filled, 20, what="the hand order to fill")


def reconcile_records(records: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    return [r["data"] for r in records if r["kind"] == "reconcile" and r["data"]["what"] == what]


async def test_unknown_holdings_halt_entries_by_default_and_show(tmp_path: Path) -> None:
    async with asyncio.timeout(100), watched_fake(tmp_path / "data" / "audit") as fake:
        fake.set_balance("SOL", Decimal("7"))  # coins the state knows nothing about
        ws = make_workspace(tmp_path, fake.url, mode="LIVE")
        async with running(ws) as daemon:
            await wait_until(
                lambda: reconcile_records(ws.records(), "unknown_holding"),
                40,
                daemon,
                what="the unknown holding reported",
            )
            n = len(ws.records())
            await wait_until(
                lambda: len(cycles(ws.records()[n:])) >= 5, 30, daemon, what="5 more cycles"
            )
            _, health = await daemon.health()
            assert {s: Decimal(a) for s, a in health["unknown_holdings"].items()} == {
                "SOL/USDT": Decimal(7)
            }, health
            assert health["status"] != "ok" and "new entries halted" in health["detail"]
            rc, out, err = await ws.vigil("status", "--json")
            assert rc == 0, err
            listed = json.loads(out)["unknown_holdings"]
            assert {s: Decimal(a) for s, a in listed.items()} == {"SOL/USDT": Decimal(7)}
            assert await daemon.terminate() == 0
        state = await fake.state()

    records = ws.records()
    found = reconcile_records(records, "unknown_holding")
    assert found[0]["symbol"] == "SOL/USDT" and found[0]["policy"] == "halt_entries"
    at = next(i for i, r in enumerate(records) if r["kind"] == "reconcile")
    later = records[at + 1 :]
    # Entries blocked from then on (the daemon trades eagerly otherwise), exits allowed.
    assert all(c["trading_state"] == "REDUCING" for c in cycles(later)[1:])
    assert not [r for r in later if r["kind"] == "order_intent" and r["data"]["side"] == "buy"]
    # Left alone on the venue.
    assert Decimal(state["balances"]["SOL"]["free"]) == Decimal(7)


async def test_unknown_holdings_adopted_from_venue_fills_else_the_mark(tmp_path: Path) -> None:
    async with asyncio.timeout(100), watched_fake(tmp_path / "data" / "audit") as fake:
        await buy_by_hand(fake, "BTC/USDT", "0.01")
        fake.set_balance("ETH", Decimal("0.5"))  # no fill behind it: cost from the mark
        hand = [f for f in (await fake.state())["fills"] if f["clientOrderId"] == "by-hand-1"]
        ws = make_workspace(
            tmp_path,
            fake.url,
            mode="LIVE",
            VIGIL_RECONCILE__UNKNOWN_HOLDINGS="adopt",
            VIGIL_EXITS__MAX_HOLDING_MINUTES="600",
            VIGIL_EXITS__STOP_LOSS_PCT="-50",
            VIGIL_EXITS__TAKE_PROFIT_PCT="50",
            VIGIL_EXITS__TRAILING_STOP_PCT="50",
            **no_entries(tmp_path),
        )
        async with running(ws) as daemon:
            await wait_until(
                lambda: len(reconcile_records(ws.records(), "adopted")) >= 2,
                40,
                daemon,
                what="two adoptions",
            )
            n = len(ws.records())
            await wait_until(
                lambda: len(cycles(ws.records()[n:])) >= 2, 20, daemon, what="2 more cycles"
            )
            _, health = await daemon.health()
            assert health["unknown_holdings"] == {}
            assert await quiesce_and_stop(fake, daemon, ws) == 0
        state = await fake.state()

    adopted = {d["symbol"]: d for d in reconcile_records(ws.records(), "adopted")}
    btc, eth = adopted["BTC/USDT"], adopted["ETH/USDT"]
    assert btc["cost_source"] == "venue fills"
    assert Decimal(btc["amount"]) == Decimal(hand[0]["qty"])
    assert Decimal(btc["price"]) == Decimal(hand[0]["price"])
    assert eth["cost_source"] == "mark" and Decimal(eth["amount"]) == Decimal("0.5")
    assert all(d["flag"] for d in adopted.values())
    db = read_db(ws.state_db)
    # The adopted coins are positions now: state.db and the venue agree to the last unit.
    assert account_problems(state, db) == []
    assert db.positions["ETH/USDT"] == Decimal("0.5")
    cycle = cycles(ws.records())[-1]
    assert cycle["positions"] == 2  # counted toward caps like any position


async def test_adopted_position_gets_its_stop(tmp_path: Path) -> None:
    async with asyncio.timeout(100), watched_fake(tmp_path / "data" / "audit") as fake:
        fake.set_balance("ETH", Decimal("0.5"))
        ws = make_workspace(
            tmp_path,
            fake.url,
            mode="LIVE",
            VIGIL_RECONCILE__UNKNOWN_HOLDINGS="adopt",
            **no_entries(tmp_path),
        )
        async with running(ws) as daemon:

            def sold() -> bool:
                return any(
                    r["kind"] == "order_intent"
                    and r["data"]["symbol"] == "ETH/USDT"
                    and r["data"]["side"] == "sell"
                    for r in ws.records()
                )

            # TRADE_ENV's exits are tight (0.1% stop, 1 minute max hold): the adopted coins
            # are sold by an exit like any position.
            await wait_until(sold, 80, daemon, what="an exit on the adopted position")
            assert await daemon.terminate() == 0


async def test_lost_state_db_in_live_refused_then_rebuilt_and_checked_against_the_venue(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(150), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(
            tmp_path,
            fake.url,
            mode="LIVE",
            VIGIL_EXITS__MAX_HOLDING_MINUTES="600",
            VIGIL_EXITS__STOP_LOSS_PCT="-50",
            VIGIL_EXITS__TAKE_PROFIT_PCT="50",
            VIGIL_EXITS__TRAILING_STOP_PCT="50",
        )
        async with running(ws, name="first") as first:

            def holding() -> bool:
                try:
                    return len(read_db(ws.state_db).positions) >= 1
                except sqlite3.Error:  # not created yet
                    return False

            await wait_until(holding, 60, first, what="a position")
            assert await quiesce_and_stop(fake, first, ws) == 0
        kept = read_db(ws.state_db)
        ws.state_db.unlink()

        async with running(ws, name="refused") as refused:
            assert refused.proc is not None
            rc = await asyncio.wait_for(refused.proc.wait(), 30)
            assert rc == exit_codes.STATE_CORRUPTED, refused.stderr()[-2000:]
            assert "vigil state rebuild" in refused.stderr()

        # Coins moved on the venue meanwhile: the check finds it and nothing is written.
        state = await fake.state()
        sym = next(iter(kept.positions))
        base = sym.split("/")[0]
        held = Decimal(state["balances"][base]["free"])
        fake.set_balance(base, held + 1)
        rc, out, err = await ws.vigil("state", "rebuild")
        assert rc == exit_codes.FAILURE, out + err
        assert f"{sym}: rebuilt position" in out and "nothing written" in err
        assert not ws.state_db.exists()

        fake.set_balance(base, held)
        rc, out, err = await ws.vigil("state", "rebuild")
        assert rc == 0, out + err
        assert "venue check: OK" in out
        db = read_db(ws.state_db)
        assert db.positions == kept.positions
        assert set(db.fills) == set(kept.fills)

        async with running(ws, name="after") as after:
            n = len(ws.records())
            await wait_until(lambda: len(cycles(ws.records()[n:])) >= 3, 40, after, what="3 cycles")
            _, health = await after.health()
            assert health["unknown_holdings"] == {}
            assert await quiesce_and_stop(fake, after, ws) == 0
        final = await fake.state()
    assert account_problems(final, read_db(ws.state_db)) == []
    rc, out, err = await ws.vigil("audit", "verify")
    assert rc == 0, out + err
