"""`vigil sweep`: a parameter sweep, each trial a full backtest, in parallel on Ray.

Sampling, batching, resume: backtest/sweep.py. The search space file: backtest/sweep_space.py.
Outputs: backtest/sweep_report.py and sweep_html.py. Guide: docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from runner import exit_codes
from runner.cli_plugins import CommandGroup


def add_sweep_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    from backtest.sweep_names import METRICS, SAMPLERS
    from runner.cli import parse_date_ms

    sw = sub.add_parser(
        "sweep",
        help="search strategy/risk parameters: many backtests, in parallel on Ray",
        epilog=epilog + " Guide: docs/sweeps.md.",
        description="Sample configs with optuna and run each as a full backtest (the same "
        "pipeline as `vigil backtest`), in parallel on a local Ray or a cluster. Resumable, "
        "deterministic for a seed whatever the number of workers.",
    )
    common(sw)
    sw.add_argument(
        "--strategy",
        required=True,
        metavar="NAME[,NAME]",
        help="strategies to sweep; exactly these are enabled in every trial",
    )
    from runner.cli_strategies import add_strategy_path_flag

    add_strategy_path_flag(sw)
    sw.add_argument("--space", type=Path, required=True, help="search space YAML")
    sw.add_argument("--trials", type=int, help="trials to run in all (default 20; grid: all)")
    sw.add_argument(
        "--metric",
        default="total_pnl_pct",
        choices=sorted(METRICS),
        help="what to optimise (max_drawdown_pct is minimised; default total_pnl_pct)",
    )
    sw.add_argument("--sampler", default="tpe", choices=SAMPLERS, help="default tpe")
    sw.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    sw.add_argument(
        "--batch",
        type=int,
        help="trials asked at a time (default 8 for tpe, all for random and grid); "
        "part of the sweep's identity, unlike --workers",
    )
    sw.add_argument("--workers", type=int, help="parallel trials (default: all cores)")
    sw.add_argument("--ray-address", help="join this Ray cluster instead of starting one")
    sw.add_argument("--data", type=Path, required=True, help="directory of candle files")
    sw.add_argument("--pairs", help="comma-separated pairs (default as `vigil backtest`)")
    sw.add_argument("--timeframe", help="candle timeframe (default: from config)")
    for flag, dest, text in (
        ("--from", "from_ms", "train start, UTC date"),
        ("--to", "to_ms", "train end, UTC date (exclusive)"),
        ("--test-from", "test_from_ms", "out-of-sample start: re-run the top trials there"),
        ("--test-to", "test_to_ms", "out-of-sample end (exclusive)"),
    ):
        sw.add_argument(flag, dest=dest, type=parse_date_ms, metavar="DATE", help=text)
    sw.add_argument("--top", type=int, default=5, help="best trials shown and re-run on test")
    sw.add_argument("--out", type=Path, help="output directory (default reports/sweep-NAME-ID)")
    sw.add_argument("--storage", type=Path, help="optuna SQLite file (default OUT/sweep.db)")
    sw.add_argument("--no-progress", action="store_true", help="no progress on stderr")


def _progress(enabled: bool, metric: str) -> Callable[[int, int, float | None], None] | None:
    if not enabled:
        return None
    start = time.monotonic()
    tty = sys.stderr.isatty()

    def show(done: int, total: int, best: float | None) -> None:
        frac = min(1.0, done / total) if total else 1.0
        bar = "#" * int(frac * 30)
        elapsed = time.monotonic() - start
        best_s = "n/a" if best is None else f"{best:,.4g}"
        line = f"[{bar:<30}] {done}/{total} trials  best {metric} {best_s}  {elapsed:5.0f}s"
        sys.stderr.write(("\r" + line + ("\n" if frac >= 1.0 else "")) if tty else line + "\n")
        sys.stderr.flush()

    return show


def _check_args(args: argparse.Namespace) -> None:
    for name in ("trials", "batch", "workers", "top"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name}: must be at least 1 (got {value})")
    if args.test_to_ms is not None and args.test_from_ms is None:
        raise ConfigError("--test-to needs --test-from")
    if (
        args.test_from_ms is not None
        and args.test_to_ms is not None
        and (args.test_from_ms >= args.test_to_ms)
    ):
        raise ConfigError("--test-from must be before --test-to")


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("vigil sweep needs optuna: reinstall vigil (pip install -e .)") from None
    from backtest import sweep
    from backtest.cli_backtest import _pairs
    from backtest.sweep_pool import make_pool
    from backtest.sweep_space import load_space
    from infra.config_loader import load_config
    from runner.strategy_loader import STRATEGIES
    from strategy.registry import get as get_strategy

    _check_args(args)
    names = tuple(dict.fromkeys(n.strip() for n in args.strategy.split(",") if n.strip()))
    if not names:
        raise ConfigError("--strategy: name at least one strategy")
    flags: list[tuple[str, str, Any]] = []
    pairs = _pairs(args.pairs)
    if pairs:
        flags.append(("universe.symbols", "--pairs", pairs))
    if args.timeframe:
        flags.append(("timeframe", "--timeframe", args.timeframe))
    # User strategies are loaded (and --strategy names checked) with the config, as in
    # `vigil backtest`; the trials then run with exactly these strategies enabled.
    loaded = load_config(
        args.config,
        os.environ,
        flags,
        strategies=STRATEGIES,
        strategy_paths=args.strategy_paths,
        only_strategies=list(names),
    )
    for name in names:
        if not get_strategy(name).supports_backtest:  # ConfigError names the known ones
            raise ConfigError(f"--strategy {name}: this strategy does not support backtests")
    space = load_space(args.space, names)
    cfg = loaded.config
    train = _inputs(cfg, args.data, args.from_ms, args.to_ms)
    test = None
    if args.test_from_ms is not None:
        test = _inputs(cfg, args.data, args.test_from_ms, args.test_to_ms)
        if test.start_ms <= train.end_ms and train.start_ms <= test.end_ms:
            print("warning: the test window overlaps the train window", file=sys.stderr)
    trials = args.trials
    if args.sampler == "grid":
        size = space.grid_size()
        trials = size if trials is None else min(trials, size)
    trials = trials or 20
    batch = args.batch or (8 if args.sampler == "tpe" else trials)
    spec = sweep.SweepSpec(
        strategies=names,
        space=space,
        metric=args.metric,
        sampler=args.sampler,
        seed=args.seed,
        batch=batch,
        base_config=cfg.model_dump(mode="json"),
        base_hash=loaded.config_hash,
        train=(train.start_ms, train.end_ms),
        pairs=tuple(sorted(train.series)),
        data=sweep.data_fingerprint(train),
        strategy_dirs=tuple(str(d) for d in loaded.strategy_dirs),
    )
    out = args.out or Path("reports") / f"sweep-{'+'.join(names)}-{spec.digest()[:8]}"
    storage = args.storage or out / "sweep.db"
    workers = args.workers or sweep.default_workers()
    with sweep.StorageLock(storage):
        study = sweep.open_study(spec, storage)
        pool = make_pool(workers, args.ray_address, spec.strategy_dirs)
        try:
            pool.share("train", train)
            if test is not None:
                pool.share("test", test)
            progress = _progress(not args.no_progress, args.metric)
            sweep.run_trials(spec, study, pool, trials, progress)
            recs = sweep.records(study)
            top = sweep.ranked(recs, spec.direction)[: args.top]
            window = (test.start_ms, test.end_ms) if test is not None else None
            if test is not None and window is not None and top:
                sweep.run_out_of_sample(spec, study, pool, top, window)
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: finished trials are kept in {storage}; run the same command "
                "to resume",
                file=sys.stderr,
            )
            return 130
        finally:
            pool.close()
        importance, note = sweep.importance(study, [p.path for p in space.params])
    return _write_outputs(spec, recs, top, window, importance, note, out, storage)


def _inputs(cfg: Any, data: Path, from_ms: int | None, to_ms: int | None) -> Any:
    from runner.app import prepare_replay

    feed_pairs = list(cfg.universe.symbols) if cfg.universe.symbols else None
    if feed_pairs is not None and cfg.regime.index_symbol not in feed_pairs:
        feed_pairs.append(cfg.regime.index_symbol)  # the regime reads the index
    try:
        return prepare_replay(
            cfg,
            data,
            pairs=feed_pairs,
            from_ms=from_ms,
            to_ms=to_ms,
            warmup_candles=cfg.loop.warmup_candles,
        )
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None


def _write_outputs(
    spec: Any,
    recs: Any,
    top: Any,
    window: tuple[int, int] | None,
    importance: dict[str, float],
    note: str,
    out: Path,
    storage: Path,
) -> int:
    from backtest.sweep_html import render_sweep_html
    from backtest.sweep_report import best_yaml, table, trials_json, write_atomic

    failed = sum(1 for r in recs if r.state == "fail")
    files = [
        write_atomic(out / "trials.json", trials_json(spec, recs, top, window, importance, note))
    ]
    strategies_text, policy_text = best_yaml(spec, top[0]) if top else ("", None)
    if top:
        files.append(write_atomic(out / "best_params.yaml", strategies_text))
        if policy_text:
            files.append(write_atomic(out / "best_policy.yaml", policy_text))
    pasteable = strategies_text + ("\n" + policy_text if policy_text else "")
    html = render_sweep_html(spec, recs, top, window, importance, note, pasteable)
    files.append(write_atomic(out / "report.html", html))
    print(table(spec, top, window is not None), end="")
    if top:
        print(strategies_text + (policy_text or ""), end="")
    print(f"{len(recs) - failed} trials completed, {failed} failed; storage: {storage}")
    print("wrote: " + ", ".join(str(f) for f in files))
    if not top:
        print("no trial completed: see the errors in trials.json", file=sys.stderr)
        return exit_codes.FAILURE
    return exit_codes.OK


# Plugged into `vigil` through the `vigil.commands` entry points (runner/cli_plugins.py).
COMMANDS = CommandGroup(add=add_sweep_commands, dispatch=cmd_sweep)
