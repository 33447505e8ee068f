"""The real daemon replaying recorded candles: its peak memory and cycle rate.

Runs `vigil run --replay DIR --speed 1e9 --mode PAPER` as a subprocess (the same process an
operator runs: SQLite state, audit log with fsync on order intents, HTTP server, kill-switch
watcher), in a temporary data directory, and reads its peak RSS from the kernel.

    .venv/bin/python tools/bench_replay.py [--pairs 15] [--cycles 20000] [--runs 3]

Prints: pairs=15 cycles=20000 cycles_per_s=.. wall_s=.. peak_rss_mb=..
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.bench_backtest import DATA, PAIRS  # noqa: E402


def one(pairs: list[str], cycles: int, data: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="vigil-replay-") as tmp:
        cfg = Path(tmp) / "config"
        shutil.copytree(ROOT / "config", cfg)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update(
            {
                "VIGIL_PATHS__DATA_DIR": str(Path(tmp) / "data"),
                "VIGIL_HTTP__PORT": "0",
                "VIGIL_UNIVERSE__SYMBOLS": json.dumps(pairs),
            }
        )
        cmd = [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "--config",
            str(cfg),
            "--mode",
            "PAPER",
            "--replay",
            str(data),
            "--speed",
            "1000000000",
            "--max-cycles",
            str(cycles),
            "--log-level",
            "WARNING",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"daemon exited {code}:\n{err[-2000:]}")
        return wall, usage.ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--cycles", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} not found: see ../shared/data/README.md")
    walls, rss = [], []
    for _ in range(args.runs):
        w, m = one(PAIRS[: args.pairs], args.cycles, args.data)
        walls.append(w)
        rss.append(m)
    wall = statistics.median(walls)
    print(
        f"pairs={args.pairs} cycles={args.cycles} cycles_per_s={args.cycles / wall:.0f} "
        f"wall_s={wall:.2f} peak_rss_mb={max(rss):.0f}"
    )


if __name__ == "__main__":
    main()
