"""`vigil config check --data DIR` and `--markets`, from outside: unknown markets are refused
with the words a backtest or `vigil run` uses (exit 2), an exchange that cannot be reached
ends the check with one line and exit 1, and without either flag the output says markets were
not checked (docs/configuration.md, "Markets")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from runner import exit_codes
from tests.integration.conftest import PAIRS, Workspace
from tests.integration.live_helpers import closed_port, make_workspace, watched_fake

pytestmark = pytest.mark.integration

NOT_CHECKED = "markets not checked (only the symbols' form); check them with --markets"


def refusal(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line and line != "config error:"]


def test_without_flags_output_says_markets_were_not_checked(ws: Workspace) -> None:
    res = ws.vigil("config", "check")
    assert res.returncode == exit_codes.OK, res.stderr
    assert "config OK" in res.stdout and NOT_CHECKED in res.stdout


def test_data_good_config_passes(ws: Workspace) -> None:
    res = ws.vigil("config", "check", "--data", str(ws.candles))
    assert res.returncode == exit_codes.OK, res.stderr
    assert "config OK" in res.stdout
    assert f"markets checked against the 5m candle files in {ws.candles}" in res.stdout


def test_data_missing_pair_is_refused_as_a_replay_refuses_it(ws: Workspace) -> None:
    env = {"VIGIL_UNIVERSE__SYMBOLS": json.dumps([*PAIRS, "XRP/USDT"])}
    res = ws.vigil("config", "check", "--data", str(ws.candles), env=env)
    assert res.returncode == exit_codes.CONFIG, res.stdout + res.stderr
    assert "config OK" not in res.stdout
    lines = refusal(res.stderr)
    assert lines == [
        f"data error: pair XRP/USDT is required but has no candle file (5m) in {ws.candles}: "
        "universe.symbols names it; fix: add its candles (vigil download-data --pairs XRP/USDT "
        "--timeframe 5m) or remove it from universe.symbols"
    ]
    run = ws.vigil("run", "--replay", str(ws.candles), "--max-cycles", "1", env=env)
    assert run.returncode == exit_codes.CONFIG
    assert refusal(run.stderr) == lines  # the same line as the replay prints


def test_data_missing_index_is_refused(ws: Workspace) -> None:
    env = {"VIGIL_REGIME__INDEX_SYMBOL": "XRP/USDT"}
    res = ws.vigil("config", "check", "--data", str(ws.candles), env=env)
    assert res.returncode == exit_codes.CONFIG, res.stdout + res.stderr
    (line,) = refusal(res.stderr)
    assert line.startswith(
        f"data error: regime.index_symbol = 'XRP/USDT': not a market with 5m data in {ws.candles}"
    )
    assert "crash breaker never engage; fix: set it to a market" in line


def test_data_directory_without_candles_is_refused(ws: Workspace, tmp_path: Path) -> None:
    for path, words in ((tmp_path / "nope", "not a directory"), (tmp_path, "no 5m candle files")):
        res = ws.vigil("config", "check", "--data", str(path))
        assert res.returncode == exit_codes.CONFIG, res.stdout + res.stderr
        (line,) = refusal(res.stderr)
        assert words in line and "config OK" not in res.stdout


async def test_markets_checked_against_the_exchange(tmp_path: Path) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="PAPER")
        rc, out, err = await ws.vigil("config", "check", "--markets")
        assert rc == exit_codes.OK, out + err
        assert "config OK" in out and "markets checked on binance (3 spot markets" in out
        bad = make_workspace(
            tmp_path,
            fake.url,
            mode="PAPER",
            VIGIL_REGIME__INDEX_SYMBOL="BTC/USDC",
            VIGIL_UNIVERSE__SYMBOLS='["BTC/USDT", "DOGE/USDT"]',
            VIGIL_UNIVERSE__CORE_SYMBOLS='["BTC/USDT"]',
        )
        rc, out, err = await bad.vigil("config", "check", "--markets")
    assert rc == exit_codes.CONFIG, out + err
    assert "config OK" not in out
    lines = refusal(err)
    assert len(lines) == 2, err
    assert lines[0].startswith("regime.index_symbol = 'BTC/USDC': not a market on binance")
    assert lines[1] == (
        "universe.symbols = DOGE/USDT: not a market on binance; fix: remove them from "
        "universe.symbols or correct the spelling"
    )
    assert not (tmp_path / "data").exists()  # a check creates nothing


async def test_unreachable_exchange_is_not_ok(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ws = make_workspace(tmp_path, url, mode="PAPER", VIGIL_EXCHANGE__TIMEOUT_MS="500")
    rc, out, err = await ws.vigil("config", "check", "--markets", timeout=60)
    assert rc == exit_codes.FAILURE, out + err
    assert "Traceback" not in err and "OK" not in out
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: markets not checked: binance could not be asked")
    assert "the check could not be completed" in lines[0]
