"""Issue 12 section 2: one bad print (high and close at 1000x, OHLC consistent, normal
volume) cannot poison the book, through the real `vigil backtest` and `vigil run --replay`."""

from __future__ import annotations

import json
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from core.candles import CandleSeries
from infra.candle_files import load_candles, write_candles
from infra.state_codecs import loads
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration

INDEX = "BTC/USDT"  # the regime's index; the spike goes on a traded pair that is held


def backtest(ws: Workspace, data: Path, out: Path) -> dict:
    res = ws.vigil("backtest", "--data", str(data), "--output", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    return json.loads(out.read_text())


def spike(data: Path, symbol: str, ts: int) -> None:
    """One candle at `ts` with high and close at 1000x; open, low and volume untouched."""
    path = data / (symbol.replace("/", "_") + "-5m.feather")
    series, _ = load_candles(path)
    i = int(np.searchsorted(series.ts, ts))
    cols = [c.copy() for c in series.columns()]
    cols[2][i] = cols[4][i] * 1000  # high
    cols[4][i] = cols[4][i] * 1000  # close
    write_candles(path, CandleSeries(symbol, "5m", *cols))


def test_one_1000x_print_leaves_drawdown_sortino_and_breakers_alone(
    ws: Workspace, tmp_path: Path
) -> None:
    clean = backtest(ws, ws.candles, tmp_path / "clean.json")
    held = [t for t in clean["trades"] if t["symbol"] != INDEX]
    assert held, "the scenario must hold a position on a traded pair"
    trade = max(held, key=lambda t: t["exit_ts"] - t["entry_ts"])
    at = trade["entry_ts"] + (trade["exit_ts"] - trade["entry_ts"]) // 2
    at -= at % 300_000
    data = tmp_path / "spiked"
    shutil.copytree(ws.candles, data)
    spike(data, trade["symbol"], at)

    # The data check flags the row; the backtest's validation report too.
    check = ws.vigil("data", "check", str(data), "--timeframe", "5m")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "spike" in check.stdout and trade["symbol"] in check.stdout

    spiked = backtest(ws, data, tmp_path / "spiked.json")
    quality = spiked["metadata"]["data_quality"][trade["symbol"]]
    assert "spike" in quality, quality
    dd_clean = clean["summary"]["max_drawdown_pct"]
    dd = spiked["summary"]["max_drawdown_pct"]
    assert dd < dd_clean + 2.0, (dd, dd_clean)  # unguarded: about 98%
    assert spiked["summary"]["sortino"] < 3 * max(clean["summary"]["sortino"], 1.0) + 5
    # The position was held through the print and valued at the median there.
    assert any(t["symbol"] == trade["symbol"] for t in spiked["trades"])

    # The replayed daemon: no drawdown breaker, and the high-water mark in state.db is sane.
    res = ws.vigil("run", "--replay", str(data), "--speed", "1000000000", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    cycles = [r["data"] for r in ws.records() if r["kind"] == "cycle"]
    assert any(any(n.startswith("mark guard") for n in c["notes"]) for c in cycles), (
        "the guard must have met the print on a held position"
    )
    assert not any("MAX_DRAWDOWN" in c["breakers_tripped"] for c in cycles)
    trips = {r["data"]["breaker"] for r in ws.records() if r["kind"] == "breaker_trip"}
    assert not trips & {"MAX_DRAWDOWN", "DAILY_LOSS", "WEEKLY_LOSS"}, trips
    start = Decimal(str(cycles[0]["equity"]))
    assert max(Decimal(c["equity"]) for c in cycles) < start * 2
    with sqlite3.connect(ws.state_db) as db:
        (value,) = db.execute("SELECT value FROM kv WHERE key = 'equity_marks'").fetchone()
    assert loads(value)["hwm"] < start * 2
