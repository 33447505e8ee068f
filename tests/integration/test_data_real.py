"""Acceptance on the real Binance candles in ../shared/data (skipped when absent):
`vigil data check` reads them as a backtest would, and a CryptoDataDownload-style CSV of
them (banner, newest first, unix beside date, base and quote volume) loads back exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.candle_files import load_candles

pytestmark = [pytest.mark.integration, pytest.mark.shared_data]

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(name: str) -> Path:
    d = SHARED / name
    if not d.is_dir():
        pytest.skip(f"real candles not found at {d} (../shared/data is absent on this machine)")
    return d


def vigil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_data_check_on_real_2024_candles_is_clean() -> None:
    res = vigil("data", "check", str(shared("binance_spot_2024")), "--timeframe", "5m")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert res.stdout.count("  OK") == 15
    assert "price spikes: 0" in res.stdout and "Traceback" not in res.stderr


def test_data_check_names_the_real_2023_outage_gap() -> None:
    res = vigil("data", "check", str(shared("binance_spot_2023")), "--timeframe", "5m")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "gap after 2023-03-24T12:35:00Z" in res.stdout


def test_a_real_year_as_a_cryptodatadownload_csv_loads_back(tmp_path: Path) -> None:
    series, _ = load_candles(shared("binance_spot_2023") / "BTC_USDT-1h.feather")
    path = tmp_path / "Binance_BTCUSDT_1h.csv"
    lines = [
        "https://www.CryptoDataDownload.com",
        "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount",
    ]
    for c in reversed(list(series.candles())):
        lines.append(
            f"{c.ts},x,BTC/USDT,{c.open},{c.high},{c.low},{c.close},{c.volume},"
            f"{c.volume * c.close},1"
        )
    path.write_text("\n".join(lines) + "\n")
    back, report = load_candles(path, "BTC/USDT", "1h")
    assert back.equals(series)
    assert report.newest_first and report.rows_kept == len(series)
