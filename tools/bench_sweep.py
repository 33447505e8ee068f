"""Sweep throughput: the same 16 trials run serially and on a local Ray with 2 workers.

    .venv/bin/python tools/bench_sweep.py [--runs 1] [--trials 16] [--workers 2]
        [--from 2024-01-01] [--to 2024-03-01] [--data ../shared/data/binance_spot_2024]

Each trial is a full backtest of EMA-cross on all 15 pairs (5m) with fast, slow and the stop
loss drawn by the random sampler (seed 0), through the real sweep loop (optuna storage, batches,
the same `evaluate` as `vigil sweep`). Default window: two months, Jan-Feb 2024, so a run takes
minutes, not most of an hour; pass --to 2024-09-06 for the whole file. The timed phase is from
the first trial submitted to the last result told; starting Ray and putting the candles into its
object store are reported apart (ray_start_s), and speedup_incl_start counts them. Prints:

    trials=16 pairs=15 workers=2 window=.. trials_per_hour=.. serial_trials_per_hour=..
        speedup=.. speedup_incl_start=.. ray_start_s=.. same_results=true

The machine may be shared with other work while this runs: repeat with --runs 3 for a median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backtest import sweep  # noqa: E402
from backtest.sweep_pool import Pool, RayPool, SerialPool, ray_available  # noqa: E402
from backtest.sweep_space import parse_space  # noqa: E402
from infra.config_loader import load_config  # noqa: E402
from runner.app import ReplayInputs, prepare_replay  # noqa: E402
from runner.cli import parse_date_ms  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance_spot_2024"
SPACE = {
    "strategies.ema_cross.params.fast": {"int": [5, 30]},
    "strategies.ema_cross.params.slow": {"int": [40, 120]},
    "exits.stop_loss_pct": {"float": [-8, -2]},
}


def make_spec(data: Path, frm: str, to: str, trials: int) -> tuple[sweep.SweepSpec, ReplayInputs]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_TIMEFRAME"] = "5m"
    loaded = load_config(ROOT / "config", env)
    cfg = loaded.config
    inputs = prepare_replay(
        cfg,
        data,
        from_ms=parse_date_ms(frm),
        to_ms=parse_date_ms(to),
        warmup_candles=cfg.loop.warmup_candles,
    )
    spec = sweep.SweepSpec(
        strategies=("ema_cross",),
        space=parse_space(SPACE, ("ema_cross",), label="bench"),
        metric="total_pnl_pct",
        sampler="random",
        seed=0,
        batch=trials,
        base_config=cfg.model_dump(mode="json"),
        base_hash=loaded.config_hash,
        train=(inputs.start_ms, inputs.end_ms),
        pairs=tuple(sorted(inputs.series)),
    )
    return spec, inputs


def timed(spec: sweep.SweepSpec, pool: Pool, trials: int, tmp: Path) -> tuple[float, list]:
    study = sweep.open_study(spec, tmp / f"{type(pool).__name__}-{time.monotonic_ns()}.db")
    t0 = time.perf_counter()
    sweep.run_trials(spec, study, pool, trials)
    wall = time.perf_counter() - t0
    return wall, [(r.number, r.params, r.value, r.summary) for r in sweep.records(study)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--from", dest="frm", default="2024-01-01")
    ap.add_argument("--to", default="2024-03-01")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"skip: {args.data} not found (see ../shared/data/README.md)")
        return 0
    if not ray_available():
        print("skip: Ray is not installed (pip install '.[sweep]')")
        return 0
    spec, inputs = make_spec(args.data, args.frm, args.to, args.trials)
    serial_s, ray_s, start_s, same = [], [], [], True
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            pool: Pool = SerialPool()
            pool.share("train", inputs)
            wall, serial = timed(spec, pool, args.trials, Path(tmp))
            serial_s.append(wall)
            t0 = time.perf_counter()
            pool = RayPool(args.workers)
            pool.share("train", inputs)
            start_s.append(time.perf_counter() - t0)
            try:
                wall, parallel = timed(spec, pool, args.trials, Path(tmp))
            finally:
                pool.close()
            ray_s.append(wall)
            same = same and parallel == serial
    s, r, st = (statistics.median(x) for x in (serial_s, ray_s, start_s))
    print(
        f"trials={args.trials} pairs={len(inputs.series)} workers={args.workers} "
        f"window={args.frm}..{args.to} runs={args.runs} "
        f"trials_per_hour={args.trials / r * 3600:.0f} "
        f"serial_trials_per_hour={args.trials / s * 3600:.0f} "
        f"speedup={s / r:.2f} speedup_incl_start={s / (r + st):.2f} "
        f"serial_s={s:.1f} ray_s={r:.1f} ray_start_s={st:.1f} "
        f"same_results={str(same).lower()}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
