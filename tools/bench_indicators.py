"""The indicator step alone: every candle of real 5m data through a FeatureBank, with the
feature keys of the default config (rules + ema_cross), fused and plain-called.

    .venv/bin/python tools/bench_indicators.py [--pairs 15] [--runs 3]

One line per way:
    step=fused pairs=15 candles=1079658 ns_per_candle=.. wall_s=..
    step=called pairs=15 candles=1079658 ns_per_candle=.. wall_s=..

`fused` is what the pipeline runs (core/candlestep.py); `called` calls each indicator's own
`update` in turn (the reference). Medians of --runs; the two ways alternate so both see the
same load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.features import FeatureBank  # noqa: E402
from infra.candle_files import load_candles  # noqa: E402
from tools.bench_backtest import DATA, PAIRS  # noqa: E402

COMMON = ["ema:12", "ema:26", "hh:20", "med:20", "qvol:288", "roc:12", "rsi:14", "vavg:20"]
INDEX_EXTRA = ["ema:50", "ema:200", "atr:14", "peak:288"]  # the regime's, on its index only

Row = tuple[int, float, float, float, float, float]


def one(rows: dict[str, list[Row]], fused: bool) -> float:
    bank = FeatureBank(COMMON, extra={"BTC/USDT": INDEX_EXTRA}, history=0, fused=fused)
    t0 = time.perf_counter()
    for symbol, rs in rows.items():
        push = bank.pusher(symbol)
        for r in rs:
            push(*r)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"no candles at {args.data} (see ../shared/data/README)")
    rows: dict[str, list[Row]] = {}
    for pair in PAIRS[: args.pairs]:
        s, _ = load_candles(args.data, pair, "5m")
        cols = (s.ts, s.open, s.high, s.low, s.close, s.volume)
        rows[pair] = list(zip(*(c.tolist() for c in cols), strict=True))
    n = sum(len(r) for r in rows.values())
    times: dict[str, list[float]] = {"fused": [], "called": []}
    for _ in range(args.runs):
        for way in times:
            times[way].append(one(rows, way == "fused"))
    for way, ts in times.items():
        med = statistics.median(ts)
        print(
            f"step={way} pairs={len(rows)} candles={n} ns_per_candle={med / n * 1e9:.0f} "
            f"wall_s={med:.2f}"
        )


if __name__ == "__main__":
    main()
