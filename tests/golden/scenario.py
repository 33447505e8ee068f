"""The golden scenario: three pairs of committed candles through the whole pipeline."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from backtest.runner import run_backtest
from backtest.synthetic import generate_candles
from infra.candle_files import write_candles
from infra.settings import VigilConfig
from runner.app import prepare_replay
from runner.recorder import DECISION_KINDS, MemorySink

HERE = Path(__file__).resolve().parent
CANDLES = HERE / "candles"
EXPECTED = HERE / "expected.json"
START = 1_704_067_200_000  # 2024-01-01
PAIRS = {"BTC/USDT": 42_000.0, "ETH/USDT": 2_300.0, "SOL/USDT": 100.0}
BARS = 1_200


def make_candles() -> None:
    """Made once with the project's own generator and committed as CSV, so the scenario does
    not depend on numpy's random streams staying the same across versions."""
    CANDLES.mkdir(exist_ok=True)
    for i, (pair, px) in enumerate(PAIRS.items()):
        series = generate_candles(
            pair,
            "5m",
            START,
            BARS,
            seed=100 + i,
            start_price=px,
            volatility=0.004,
            base_volume=2_000_000 / px,
        )
        write_candles(CANDLES / f"{pair.replace('/', '_')}-5m.csv", series)


def config() -> VigilConfig:
    return VigilConfig.model_validate(
        {
            "universe": {"symbols": list(PAIRS), "min_quote_volume_24h": 1_000_000},
            "strategies": {
                "rules": {"enabled": True},
                "ema_cross": {"enabled": True, "params": {"fast": 12, "slow": 26}},
            },
        }
    )


def run_scenario() -> dict[str, Any]:
    cfg = config()
    inputs = prepare_replay(cfg, CANDLES, warmup_candles=cfg.loop.warmup_candles)
    sink = MemorySink(keep=DECISION_KINDS)
    res = asyncio.run(run_backtest(cfg, inputs, config_hash="golden", seed=42, audit=sink))
    stream = [[k, d] for k, d in sink.records]
    text = json.dumps(stream, sort_keys=True, default=str)
    kinds: dict[str, int] = {}
    for k, _ in stream:
        kinds[k] = kinds.get(k, 0) + 1
    return {
        "cycles": res.cycles,
        "decisions_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "decision_counts": kinds,
        "intents": [d for k, d in stream if k == "order_intent"],
        "fills": [d for k, d in stream if k == "fill"],
        "final_cash": str(res.final_cash),
        "final_equity": str(res.final_equity),
        "positions": {s: str(p.quantity) for s, p in sorted(res.positions.items())},
        "realized_pnl": str(sum((t.pnl for t in res.trades), start=0)),
        "trades": [
            [t.symbol, t.entry_ts, t.exit_ts, str(t.pnl), t.exit_reason] for t in res.trades
        ],
        "no_trade": dict(sorted(res.no_trade.items())),
    }
