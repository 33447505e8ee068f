"""Backtest throughput, whole process: `vigil backtest` run as a subprocess, timed from exec to
exit, with its peak RSS from the kernel. Median of several runs per size.

    .venv/bin/python tools/bench_backtest.py [--runs 3] [--pairs 1,5,15]
        [--strategies rules,ema_cross]

One line per run size:
    strategy=rules pairs=15 candles=1080000 candles_per_s=.. wall_s=.. peak_rss_mb=..
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance_spot_2024"
# Ordered by what a user would add first; the first n are used for a run of n pairs.
PAIRS = [
    "BTC/USDT",
    "ETH/USDT",
    "SOL/USDT",
    "XRP/USDT",
    "DOGE/USDT",
    "AVAX/USDT",
    "LINK/USDT",
    "LTC/USDT",
    "BCH/USDT",
    "ATOM/USDT",
    "NEAR/USDT",
    "UNI/USDT",
    "TRX/USDT",
    "SHIB/USDT",
    "MATIC/USDT",
]
STRATEGY_ENV = {
    "rules": {
        "VIGIL_STRATEGIES__RULES__ENABLED": "true",
        "VIGIL_STRATEGIES__EMA_CROSS__ENABLED": "false",
    },
    "ema_cross": {
        "VIGIL_STRATEGIES__RULES__ENABLED": "false",
        "VIGIL_STRATEGIES__EMA_CROSS__ENABLED": "true",
    },
}


def strategy_names(text: str) -> list[str]:
    """--strategies: comma-separated names of STRATEGY_ENV."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGY_ENV]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected names from {', '.join(STRATEGY_ENV)}, comma-separated"
        )
    return names


def pair_count(text: str) -> int:
    """A number of pairs: the first n of PAIRS."""
    if not text.strip().isdigit() or not 1 <= int(text) <= len(PAIRS):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number from 1 to {len(PAIRS)}")
    return int(text)


def pair_counts(text: str) -> list[int]:
    return [pair_count(n) for n in text.split(",")]


def positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return int(text)


def require_data(data: Path) -> None:
    if not data.is_dir():
        raise SystemExit(
            f"{data} not found: the benchmark needs the Binance candles "
            "described in ../shared/data/README.md"
        )


def one_run(strategy: str, pairs: list[str], data: Path, out: Path) -> tuple[float, float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(STRATEGY_ENV[strategy])
    cmd = [
        sys.executable,
        "-m",
        "runner.cli",
        "backtest",
        "--config",
        str(ROOT / "config"),
        "--data",
        str(data),
        "--pairs",
        ",".join(pairs),
        "--timeframe",
        "5m",
        "--output",
        str(out),
        "--no-progress",
        "--log-level",
        "WARNING",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"backtest failed ({proc.returncode}):\n{err[-2000:]}")
    report = json.loads(out.read_text())
    candles = int(report["metadata"]["candles"])
    return wall, usage.ru_maxrss / 1024.0, candles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=positive, default=3)
    ap.add_argument("--pairs", type=pair_counts, default=[1, 5, 15])
    ap.add_argument("--strategies", type=strategy_names, default=["rules", "ema_cross"])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    require_data(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            for n in args.pairs:
                walls, rss = [], []
                candles = 0
                for r in range(args.runs):
                    w, m, candles = one_run(
                        strategy, PAIRS[:n], args.data, Path(tmp) / f"{strategy}-{n}-{r}.json"
                    )
                    walls.append(w)
                    rss.append(m)
                wall = statistics.median(walls)
                print(
                    f"strategy={strategy} pairs={n} candles={candles} "
                    f"candles_per_s={candles / wall:.0f} wall_s={wall:.2f} "
                    f"peak_rss_mb={max(rss):.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
