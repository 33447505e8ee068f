"""Backtest one strategy in a test: the daemon's own pipeline over generated (or given) candles.

The harness behind the tests `vigil strategies new` writes, and the golden scenario's method:
the same run_backtest, risk checks and SimExchange as `vigil backtest`, in-process, with only
the named strategy enabled.

    from backtest.harness import backtest_strategy
    result = backtest_strategy("my_dip", strategies_path=Path(__file__).parent)
    assert result.trades
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from backtest.runner import BacktestResult, run_backtest
from backtest.synthetic import generate_candles
from infra.candle_files import write_candles
from infra.settings import VigilConfig
from runner.app import prepare_replay
from runner.strategy_loader import load_user_strategies

START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
PRICES = {"BTC/USDT": 42_000.0, "ETH/USDT": 2_300.0, "SOL/USDT": 100.0}


def write_synthetic_candles(
    directory: Path,
    *,
    bars: int = 3_000,
    seed: int = 11,
    pairs: Mapping[str, float] = PRICES,
    timeframe: str = "5m",
) -> Path:
    """One file of generated candles per pair (random walk with changing regimes, 0.4% per-bar
    volatility), the recipe the project's own integration tests use."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, (pair, price) in enumerate(pairs.items()):
        series = generate_candles(
            pair,
            timeframe,
            START_MS,
            bars,
            seed=seed + i,
            start_price=price,
            volatility=0.004,
            base_volume=2_000_000 / price,
        )
        write_candles(directory / f"{pair.replace('/', '_')}-{timeframe}.feather", series)
    return directory


def strategy_config(
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    pairs: Sequence[str] = tuple(PRICES),
    overrides: Mapping[str, Any] | None = None,
) -> VigilConfig:
    """The default config with `name` the only strategy enabled; `overrides` are top-level
    sections (e.g. {"exits": {"stop_loss_pct": -5}})."""
    data: dict[str, Any] = {
        "universe": {"symbols": list(pairs), "min_quote_volume_24h": 1_000_000},
        **(overrides or {}),
        "strategies": {name: {"enabled": True, "params": dict(params or {})}},
    }
    return VigilConfig.model_validate(data)


def backtest_strategy(
    name: str,
    *,
    strategies_path: Path | None = None,
    params: Mapping[str, Any] | None = None,
    data: Path | None = None,
    bars: int = 3_000,
    candle_seed: int = 11,
    seed: int = 42,
    overrides: Mapping[str, Any] | None = None,
) -> BacktestResult:
    """Load the strategies in `strategies_path` (and installed entry points), then backtest
    `name` alone over the candles in `data`, or over generated ones (`bars` per pair)."""
    load_user_strategies([strategies_path] if strategies_path is not None else [])
    if data is not None:  # every pair with candle files there
        return _run(strategy_config(name, params=params, pairs=(), overrides=overrides), data, seed)
    cfg = strategy_config(name, params=params, overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="vigil-harness-") as tmp:
        candles = write_synthetic_candles(Path(tmp), bars=bars, seed=candle_seed)
        return _run(cfg, candles, seed)


def _run(cfg: VigilConfig, data: Path, seed: int) -> BacktestResult:
    inputs = prepare_replay(cfg, data, warmup_candles=cfg.loop.warmup_candles)
    return asyncio.run(run_backtest(cfg, inputs, config_hash="harness", seed=seed))
