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
        speedup=.. speedup_incl_start=.. ray_start_s=.. load_serial=.. load_ray=..
        cpu_efficiency=.. idle_speedup_estimate=.. same_results=true

Medians over --runs, serial and Ray interleaved. load_* is the 1-minute load average at the
end of each phase: on a machine shared with other work (load above the core count) the wall
speedup says more about the neighbours than about the sweep. cpu_efficiency is the CPU seconds
of the serial trials over those of the Ray phase (this process and all its live descendants:
the workers and Ray's helper processes); idle_speedup_estimate = workers x cpu_efficiency is
what the speedup would be on otherwise idle cores: an estimate, not a measurement.
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
from runner.strategy_loader import STRATEGIES  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance_spot_2024"
SPACE = {
    "strategies.ema_cross.params.fast": {"int": [5, 30]},
    "strategies.ema_cross.params.slow": {"int": [40, 120]},
    "exits.stop_loss_pct": {"float": [-8, -2]},
}


def make_spec(data: Path, frm: str, to: str, trials: int) -> tuple[sweep.SweepSpec, ReplayInputs]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_TIMEFRAME"] = "5m"
    loaded = load_config(ROOT / "config", env, strategies=STRATEGIES)
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


def tree_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process and all its descendants that
    are alive: the Ray workers and Ray's own helper processes are started from here."""
    stats: dict[int, tuple[int, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            text = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        stats[int(d)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK"))
    mine, total = {os.getpid()}, 0.0
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    for pid in mine:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def timed(spec: sweep.SweepSpec, pool: Pool, trials: int, tmp: Path) -> tuple[float, float, list]:
    """(wall s, CPU s of the process tree, results) of running the trials."""
    study = sweep.open_study(spec, tmp / f"{type(pool).__name__}-{time.monotonic_ns()}.db")
    t0, c0 = time.perf_counter(), tree_cpu_s()
    sweep.run_trials(spec, study, pool, trials)
    wall, cpu = time.perf_counter() - t0, tree_cpu_s() - c0
    return wall, cpu, [(r.number, r.params, r.value, r.summary) for r in sweep.records(study)]


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
    serial_cpu, ray_cpu = [], []
    load_serial, load_ray = [], []  # 1-minute load average at the end of each phase
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # interleaved, so a busy spell hits both modes alike
            pool: Pool = SerialPool()
            pool.share("train", inputs)
            wall, cpu, serial = timed(spec, pool, args.trials, Path(tmp))
            serial_s.append(wall)
            serial_cpu.append(cpu)
            load_serial.append(os.getloadavg()[0])
            t0 = time.perf_counter()
            pool = RayPool(args.workers)
            pool.share("train", inputs)
            start_s.append(time.perf_counter() - t0)
            try:
                wall, cpu, parallel = timed(spec, pool, args.trials, Path(tmp))
            finally:
                pool.close()
            ray_s.append(wall)
            ray_cpu.append(cpu)
            load_ray.append(os.getloadavg()[0])
            same = same and parallel == serial
            print(
                f"run serial_s={serial_s[-1]:.1f} ray_s={ray_s[-1]:.1f} "
                f"serial_cpu_s={serial_cpu[-1]:.1f} ray_cpu_s={ray_cpu[-1]:.1f} "
                f"load_serial={load_serial[-1]:.1f} load_ray={load_ray[-1]:.1f}",
                file=sys.stderr,
            )
    s, r, st = (statistics.median(x) for x in (serial_s, ray_s, start_s))
    # CPU seconds the same trials cost serially / on Ray (workers, Ray's helpers included):
    # 1.0 means Ray adds no work, and workers x that is the speedup on otherwise idle cores.
    efficiency = statistics.median(serial_cpu) / statistics.median(ray_cpu)
    print(
        f"trials={args.trials} pairs={len(inputs.series)} workers={args.workers} "
        f"window={args.frm}..{args.to} runs={args.runs} "
        f"trials_per_hour={args.trials / r * 3600:.0f} "
        f"serial_trials_per_hour={args.trials / s * 3600:.0f} "
        f"speedup={s / r:.2f} speedup_incl_start={s / (r + st):.2f} "
        f"serial_s={s:.1f} ray_s={r:.1f} ray_start_s={st:.1f} "
        f"load_serial={statistics.median(load_serial):.1f} "
        f"load_ray={statistics.median(load_ray):.1f} cores={os.cpu_count()} "
        f"cpu_efficiency={efficiency:.2f} idle_speedup_estimate={args.workers * efficiency:.2f} "
        f"same_results={str(same).lower()}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
