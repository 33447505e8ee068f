"""Bad configs, from outside: `vigil config check` and `vigil run` both refuse them with exit 2
and one line naming the file, field, value and a fix, no traceback, and nothing created
(docs/configuration.md, "Bounds and contradictions")."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config_loader import HOME
from runner import exit_codes
from tests.integration.conftest import PAIRS
from tests.integration.live_helpers import closed_port, make_workspace, watched_fake

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# (dotted key, YAML value, fragments the one error line must hold)
BAD: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "interval-inf": ("loop.interval_seconds", float("inf"), ("= inf", "finite number")),
    "interval-nan": ("loop.interval_seconds", float("nan"), ("= nan", "finite number")),
    "interval-1e300": ("loop.interval_seconds", 1e300, ("= 1e+300", "use at most 86400")),
    "int-past-sqlite": (
        "risk.cooldown_after_fill_minutes",
        99999999999999999999,
        ("= 99999999999999999999", "too large", "use a value between"),
    ),
    "negative-balance": (
        "sim.starting_balances",
        {"USDT": -5},
        ("sim.starting_balances.USDT = -5", "greater than or equal to 0", "use at least 0"),
    ),
    "size-above-total": (
        "risk.position_size_pct",
        30,
        ("risk.position_size_pct = 30", "above max_total_exposure_pct (25)", "lower it"),
    ),
    "budget-above-total": (
        "strategies.rules.budget.max_at_risk_pct",
        50,
        ("strategies.rules.budget.max_at_risk_pct = 50", "lower it to at most 25"),
    ),
    "index-not-a-symbol": (
        "regime.index_symbol",
        "BTCUSDT",
        ("regime.index_symbol = 'BTCUSDT'", "write it as BTC/USDT"),
    ),
    "symbol-no-slash": (
        "universe.symbols",
        ["BTCUSDT"],
        ("universe.symbols", "'BTCUSDT'", "write it as BTC/USDT"),
    ),
    "symbol-lower-case": (
        "universe.symbols",
        ["eth/usdt"],
        ("universe.symbols", "'eth/usdt'", "write it as ETH/USDT"),
    ),
    "symbol-twice": (
        "universe.symbols",
        ["ETH/USDT", "BTC/USDT", "ETH/USDT"],
        ("universe.symbols", "ETH/USDT listed more than once", "remove the repeats"),
    ),
    "http-all-interfaces": (
        "http.host",
        "0.0.0.0",
        ("http.host = '0.0.0.0'", "not a loopback address", "http.allow_remote: true"),
    ),
}


def workspace(tmp_path: Path, key: str | None = None, value: Any = None) -> tuple[Path, Path]:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    if key is not None:
        parts = key.split(".")
        path = config / HOME[parts[0]]
        data = yaml.safe_load(path.read_text()) or {}
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config, tmp_path / "data"


def vigil(config: Path, data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    base.update({"PYTHONPATH": str(ROOT), "VIGIL_PATHS__DATA_DIR": str(data), **env})
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args, "--config", str(config)],
        cwd=config.parent,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(res: subprocess.CompletedProcess[str], fragments: tuple[str, ...]) -> str:
    assert res.returncode == exit_codes.CONFIG, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    problems = [line for line in res.stderr.splitlines() if line and line != "config error:"]
    assert len(problems) == 1, res.stderr
    line = problems[0].removeprefix("error: ")
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.mark.parametrize("case", list(BAD))
def test_bad_value_refused_by_check_and_run_before_anything_is_written(
    tmp_path: Path, case: str
) -> None:
    key, value, fragments = BAD[case]
    config, data = workspace(tmp_path, key, value)
    for args in (("config", "check"), ("run", "--max-cycles", "1")):
        line = assert_refused(vigil(config, data, *args), fragments)
        assert line.startswith(str(config / HOME[key.split(".")[0]]) + ": "), line
    assert not data.exists()  # no state.db, no audit log, no lock


def test_remote_http_is_accepted_when_allowed(tmp_path: Path) -> None:
    config, data = workspace(tmp_path, "http.host", "0.0.0.0")
    res = vigil(config, data, "config", "check", VIGIL_HTTP__ALLOW_REMOTE="true")
    assert res.returncode == exit_codes.OK, res.stderr


def test_yaml_aliases_fail_fast(tmp_path: Path) -> None:
    config, data = workspace(tmp_path)
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, prev in zip("bcdefghij", "abcdefghi", strict=True):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    (config / "strategies.yaml").write_text("\n".join(rows) + "\n")
    for args in (("config", "check"), ("run", "--max-cycles", "1")):
        started = time.monotonic()
        res = vigil(config, data, *args)
        took = time.monotonic() - started
        line = assert_refused(res, ("strategies.yaml: line 2, column", "YAML alias *a", "fix:"))
        assert "write the value out" in line
        assert took < 20  # it took 30 s and more per extra line before
    assert not data.exists()


def test_live_credentials_checked_by_check_and_before_run_creates_files(tmp_path: Path) -> None:
    config, data = workspace(tmp_path)
    live = {
        "VIGIL_MODE": "LIVE",
        "VIGIL_READ_ONLY": "false",
        "VIGIL_EXCHANGE__LIVE_CONFIRM": "binance",
    }
    for args in (("config", "check"), ("run", "--max-cycles", "1")):
        line = assert_refused(
            vigil(config, data, *args, **live), ("VIGIL_API_KEY and VIGIL_API_SECRET", "fix:")
        )
        assert "mode LIVE needs exchange credentials" in line
    assert not data.exists()


def test_short_audit_key_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    config, data = workspace(tmp_path)
    for args in (("config", "check"), ("run", "--max-cycles", "1")):
        res = vigil(config, data, *args, VIGIL_AUDIT_KEY="short-key")
        line = assert_refused(res, ("VIGIL_AUDIT_KEY", "too short", "openssl rand -hex 32"))
        assert "short-key" not in line
    assert not data.exists()


def test_credentials_in_base_url_never_reach_the_log(tmp_path: Path) -> None:
    config, data = workspace(tmp_path)
    url = f"http://vigiluser:s3cretPassw0rd@127.0.0.1:{closed_port()}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    base.update(
        {
            "PYTHONPATH": str(ROOT),
            "VIGIL_PATHS__DATA_DIR": str(data),
            "VIGIL_HTTP__PORT": "0",
            "VIGIL_EXCHANGE__BASE_URL": url,
            "VIGIL_EXCHANGE__TIMEOUT_MS": "500",
        }
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "--config",
            str(config),
            "--log-level",
            "DEBUG",
        ],
        cwd=tmp_path,
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(8)  # start-up, market loading against a closed port, retries
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    text = out + err
    assert "http://***@127.0.0.1" in text, text[-2000:]  # the exchange errors were logged ...
    assert "s3cretPassw0rd" not in text and "vigiluser:" not in text  # ... without credentials
    assert "Traceback" not in text


def test_unknown_index_symbol_is_refused_against_the_replay_data(
    tmp_path: Path, candle_dir: Path
) -> None:
    config, data = workspace(tmp_path, "regime.index_symbol", "XRP/USDT")
    res = vigil(
        config,
        data,
        "run",
        "--replay",
        str(candle_dir),
        "--max-cycles",
        "1",
        VIGIL_UNIVERSE__SYMBOLS=json.dumps(list(PAIRS)),
    )
    line = assert_refused(res, ("regime.index_symbol = 'XRP/USDT'", "not a market with 5m data in"))
    assert "crash breaker never engage; fix: set it to a market" in line
    assert not data.exists()


async def test_unknown_markets_are_refused_once_the_exchange_answers(tmp_path: Path) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(
            tmp_path,
            fake.url,
            mode="PAPER",
            VIGIL_REGIME__INDEX_SYMBOL="BTC/USDC",
            VIGIL_UNIVERSE__SYMBOLS='["BTC/USDT", "DOGE/USDT"]',
            VIGIL_UNIVERSE__CORE_SYMBOLS='["BTC/USDT"]',
        )
        rc, out, err = await ws.vigil("run", timeout=60)
    assert rc == exit_codes.CONFIG, out + err
    assert "Traceback" not in err
    assert "regime.index_symbol = 'BTC/USDC': not a market on binance" in err
    assert "universe.symbols = DOGE/USDT: not a market on binance" in err
    records = ws.records()
    assert records[-1]["kind"] == "shutdown" and "BTC/USDC" in records[-1]["data"]["reason"]
