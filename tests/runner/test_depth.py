"""The depth check runs in backtests on the sim's book model: entries are judged on the book
of each approved candidate, and a thin book refuses them (THIN_BOOK)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from backtest.runner import BacktestResult, run_backtest
from runner.app import prepare_replay
from tests.golden.scenario import CANDLES, config


def _run(participation: str) -> BacktestResult:
    cfg = config()
    cfg = cfg.model_copy(
        update={"sim": cfg.sim.model_copy(update={"participation_cap": Decimal(participation)})}
    )
    inputs = prepare_replay(cfg, CANDLES, warmup_candles=cfg.loop.warmup_candles)
    return asyncio.run(run_backtest(cfg, inputs, config_hash="depth", seed=42))


def test_backtest_judges_entries_on_the_sim_book_and_refuses_thin_ones() -> None:
    normal = _run("0.1")
    # A millionth of each candle's volume on the book: no entry finds 3x its size.
    thin = _run("0.000001")
    assert normal.rejections.get("THIN_BOOK", 0) == 0
    assert normal.trades
    assert thin.rejections.get("THIN_BOOK", 0) > 0
    assert not thin.fills, thin.fills[:3]
