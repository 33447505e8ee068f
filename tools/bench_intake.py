"""The candles' way alone: what a backtest spends before any cycle runs, the ceiling of the
whole run's throughput. In process, on the candles `vigil backtest` would load:

    deliver     the replay feed's delivery loop (ReplayFeed.poll) into a step that does nothing
    indicators  the same loop into the feature bank the engine builds (runner.app.feature_bank):
                every candle checked and every indicator of the config updated

    .venv/bin/python tools/bench_intake.py [--runs 3] [--pairs 15] [--strategies rules,ema_cross]

One line per stage (median of the runs):
    strategy=rules pairs=15 stage=indicators candles=1079658 candles_per_s=.. wall_s=..
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import PipelineConfig  # noqa: E402
from infra.config_loader import load_config  # noqa: E402
from infra.feeds import ReplayFeed  # noqa: E402
from runner.app import ReplayInputs, feature_bank, prepare_replay  # noqa: E402
from runner.strategy_loader import STRATEGIES  # noqa: E402
from strategy.registry import resolve  # noqa: E402
from tools.bench_backtest import (  # noqa: E402
    DATA,
    PAIRS,
    STRATEGY_ENV,
    pair_count,
    positive,
    require_data,
    strategy_names,
)

Step = Callable[..., Any]


class _Sink:
    """A CandleSink that hands the feed one step per symbol and no listener (no sim)."""

    def __init__(self, step_for: Callable[[str], Step]) -> None:
        self.step_for = step_for

    def __call__(self, symbol: str, *candle: Any) -> None:
        self.step_for(symbol)(*candle)

    def parts(self, symbol: str) -> tuple[Step, None]:
        return self.step_for(symbol), None


def _nothing(*candle: Any) -> None:
    return None


async def _deliver_all(inputs: ReplayInputs, sink: _Sink) -> float:
    feed = ReplayFeed(inputs.series, timeframe_ms=inputs.timeframe_ms)
    t0 = time.perf_counter()
    t = feed.next_close_ms()
    while t is not None:
        await feed.poll(t, sink)
        t = feed.next_close_ms()
    return time.perf_counter() - t0


def one_run(stage: str, config: PipelineConfig, inputs: ReplayInputs) -> float:
    if stage == "deliver":
        return asyncio.run(_deliver_all(inputs, _Sink(lambda symbol: _nothing)))
    bank = feature_bank(config, resolve(config))
    return asyncio.run(_deliver_all(inputs, _Sink(bank.pusher)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=positive, default=3)
    ap.add_argument("--pairs", type=pair_count, default=len(PAIRS))
    ap.add_argument("--strategies", type=strategy_names, default=["rules", "ema_cross"])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    require_data(args.data)
    for strategy in args.strategies:
        env = dict(STRATEGY_ENV[strategy])
        config = load_config(ROOT / "config", env, strategies=STRATEGIES).config
        inputs = prepare_replay(config, args.data, pairs=PAIRS[: args.pairs])
        candles = sum(len(s) for s in inputs.series.values())
        for stage in ("deliver", "indicators"):
            wall = statistics.median(one_run(stage, config, inputs) for _ in range(args.runs))
            print(
                f"strategy={strategy} pairs={args.pairs} stage={stage} candles={candles} "
                f"candles_per_s={candles / wall:.0f} wall_s={wall:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
