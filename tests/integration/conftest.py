"""Fixtures that run the real `vigil` CLI as a subprocess on generated candles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backtest.synthetic import generate_candles
from infra.candle_files import write_candles

ROOT = Path(__file__).resolve().parents[2]
START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
PRICES = {"BTC/USDT": 42_000.0, "ETH/USDT": 2_300.0, "SOL/USDT": 100.0}


def make_candles(directory: Path, bars: int, *, seed: int = 11) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, pair in enumerate(PAIRS):
        series = generate_candles(
            pair,
            "5m",
            START_MS,
            bars,
            seed=seed + i,
            start_price=PRICES[pair],
            volatility=0.004,
            base_volume=2_000_000 / PRICES[pair],
        )
        write_candles(directory / (pair.replace("/", "_") + "-5m.feather"), series)
    return directory


@dataclass
class Workspace:
    root: Path
    config: Path
    data: Path  # the replay daemon's runtime files: <paths.data_dir>/replay
    candles: Path
    env: dict[str, str]

    def vigil(
        self,
        *args: str,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner.cli", *args, "--config", str(self.config)],
            cwd=cwd or self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "runner.cli", *args, "--config", str(self.config)],
            cwd=cwd or self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def audit_dir(self) -> Path:
        return self.data / "audit"

    @property
    def state_db(self) -> Path:
        return self.data / "state.db"

    def records(self) -> list[dict[str, object]]:
        out = []
        for f in sorted(self.audit_dir.glob("audit-*.jsonl")):
            out.extend(json.loads(line) for line in f.read_text().splitlines() if line)
        return out


def wait_for(pred: object, timeout: float = 30.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(every)
    return False


@pytest.fixture(scope="session")
def candle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_candles(tmp_path_factory.mktemp("candles"), 2_400)


@pytest.fixture
def ws(tmp_path: Path, candle_dir: Path) -> Iterator[Workspace]:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "VIGIL_PATHS__DATA_DIR": str(data_dir),
            "VIGIL_HTTP__PORT": "0",
            "VIGIL_MODE": "PAPER",
            "VIGIL_UNIVERSE__SYMBOLS": json.dumps(list(PAIRS)),
            "VIGIL_UNIVERSE__MIN_QUOTE_VOLUME_24H": "1000000",
        }
    )
    # `vigil run --replay` keeps its files in <data_dir>/replay, apart from the live state.
    data = data_dir / "replay"
    yield Workspace(root=ROOT, config=config, data=data, candles=candle_dir, env=env)
