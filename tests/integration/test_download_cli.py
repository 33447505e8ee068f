"""`vigil download-data` through real ccxt against the fake Binance, resuming on a rerun."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from infra.candle_files import load_candles
from tools.fake_exchange.client import running_fake

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def _download(url: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runner.cli",
        "download-data",
        "--config",
        str(ROOT / "config"),
        "--exchange",
        "binance",
        "--pairs",
        "BTC/USDT,ETH/USDT",
        "--timeframe",
        "5m",
        "--days",
        "1",
        "--out",
        str(out),
        "--base-url",
        url,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return subprocess.CompletedProcess([], proc.returncode, out_b.decode(), err_b.decode())


def test_download_then_resume(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_fake(
            symbols=["BTC/USDT", "ETH/USDT"],
            balances={"USDT": Decimal(1000)},
            api_key="k",
            api_secret="s",
            timeframe="5m",
            warmup_candles=600,
        ) as fake:
            first = await _download(fake.url, tmp_path)
            assert first.returncode == 0, first.stderr[-2000:]
            series, report = load_candles(tmp_path / "BTC_USDT-5m.feather")
            # One day of closed 5m candles, none still forming, no gaps.
            assert 287 <= len(series) <= 289
            assert report.ok, report.summary()
            again = await _download(fake.url, tmp_path)
            assert again.returncode == 0, again.stderr[-2000:]
            assert "(+0)" in again.stdout or "(+1)" in again.stdout, again.stdout
            series2, _ = load_candles(tmp_path / "BTC_USDT-5m.feather")
            assert len(series2) >= len(series)
            assert (tmp_path / "ETH_USDT-5m.feather").exists()

    asyncio.run(go())
