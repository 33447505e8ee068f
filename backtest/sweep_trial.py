"""One sweep trial: a full backtest of one config, through the same driver as `vigil backtest`.

`evaluate` runs in a Ray worker or in the sweep's own process; it returns plain data (the
report's summary and a thinned equity curve), never raises for a bad config, and depends on
nothing but its arguments, so where it runs cannot change what it returns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backtest import stats
from backtest.report import build_report
from backtest.runner import run_backtest
from core.errors import ConfigError
from infra.settings import VigilConfig, config_hash
from runner import __version__
from runner.app import ReplayInputs
from runner.strategy_loader import load_user_strategies
from strategy.registry import check_params

EQUITY_POINTS = 400  # per trial, kept in the storage for the report's equity chart


def build_config(data: dict[str, Any]) -> VigilConfig:
    """Validate trial config data; a ConfigError names the first bad field."""
    try:
        cfg = VigilConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{loc}: {err['msg']}") from None
    check_params(cfg)  # each strategy's own model (e.g. fast < slow)
    return cfg


def evaluate(
    inputs: ReplayInputs, config_data: dict[str, Any], strategy_dirs: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Backtest `config_data` over `inputs`: {config_hash, summary, equity, start_cash} or
    {error} when the config is refused (e.g. a cross-field rule such as fast < slow).
    `strategy_dirs`: user strategy directories to load first (a no-op once loaded), so a
    worker process knows the strategies the sweep's own process loaded."""
    try:
        if strategy_dirs:
            load_user_strategies([Path(d) for d in strategy_dirs])
        cfg = build_config(config_data)
    except ConfigError as exc:
        return {"error": f"invalid config: {exc}"}
    digest = config_hash(cfg)
    try:
        result = asyncio.run(run_backtest(cfg, inputs, config_hash=digest))
    except Exception as exc:
        # Recorded as a failed trial (with the reason) the same way in every pool, so one
        # crashing config does not end a long sweep; the sweep's summary counts failures.
        return {"config_hash": digest, "error": f"backtest failed: {type(exc).__name__}: {exc}"}
    report = build_report(result, version=__version__, wall_clock=False)
    eq = result.equity
    idx = stats.downsample_indices(eq, EQUITY_POINTS, keep=())
    return {
        "config_hash": digest,
        "summary": report["summary"],
        "start_cash": float(result.starting_cash),
        "equity": [[result.equity_ts[i], round(eq[i], 6)] for i in idx],
    }


def metric_value(result: dict[str, Any], metric: str) -> float | None:
    summary = result.get("summary") or {}
    value = summary.get(metric)
    return float(value) if isinstance(value, int | float) else None
