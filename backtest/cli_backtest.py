"""`vigil backtest`, `vigil backtest compare` and `vigil download-data`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from runner import __version__, exit_codes
from runner.cli_plugins import CommandGroup


def add_backtest_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    from runner.cli import parse_date_ms

    bt = sub.add_parser(
        "backtest",
        help="replay the daemon's pipeline over historical candles",
        epilog=epilog + " Compare reports with: vigil backtest compare CURRENT BASELINE "
        "--tolerance 2",
        description="Run the daemon's own pipeline (same run_cycle, risk and SimExchange) "
        "over recorded candles, stepped by a simulated clock.",
    )
    common(bt)
    bt.add_argument("--data", type=Path, required=True, help="directory of candle files")
    bt.add_argument(
        "--pairs",
        help="comma-separated, e.g. BTC/USDT,ETH/USDT (default: "
        "universe.symbols, else every pair in --data)",
    )
    bt.add_argument("--timeframe", help="candle timeframe (default: from config)")
    bt.add_argument(
        "--from", dest="from_ms", type=parse_date_ms, metavar="DATE", help="start, UTC date"
    )
    bt.add_argument(
        "--to", dest="to_ms", type=parse_date_ms, metavar="DATE", help="end, UTC date (exclusive)"
    )
    bt.add_argument("--seed", type=int, help="fill-model seed (default: sim.seed)")
    bt.add_argument("--output", type=Path, default=Path("report.json"), help="report JSON")
    bt.add_argument("--html", type=Path, help="also write an HTML report here")
    bt.add_argument(
        "--audit",
        type=Path,
        help="also write the decision stream as an audit log into this directory",
    )
    bt.add_argument("--no-progress", action="store_true", help="no progress bar")
    from runner.cli_strategies import add_strategy_flags

    add_strategy_flags(bt)

    cmp_ = sub.add_parser(
        "backtest-compare",
        help="compare two backtest reports (also spelled `vigil backtest compare`)",
        epilog=epilog,
        description="Compare total trades, win rate, total PnL %, max drawdown % and profit "
        "factor of CURRENT against BASELINE. Exit 0 pass, 1 fail, 2 error.",
    )
    cmp_.add_argument("current", type=Path)
    cmp_.add_argument("baseline", type=Path)
    cmp_.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        help="allowed relative difference in percent (default 2)",
    )
    cmp_.add_argument("--log-level", default="WARNING")

    dl = sub.add_parser(
        "download-data", help="fetch candles through ccxt into a directory", epilog=epilog
    )
    common(dl)
    dl.add_argument("--exchange", default="binance", help="ccxt exchange id")
    dl.add_argument("--pairs", required=True, help="comma-separated pairs")
    dl.add_argument("--timeframe", default="5m")
    dl.add_argument("--days", type=int, default=30, help="how far back")
    dl.add_argument("--out", type=Path, default=Path("data/ohlcv"), help="target directory")
    dl.add_argument(
        "--format", default="feather", choices=["feather", "parquet", "csv", "json", "json.gz"]
    )
    dl.add_argument("--base-url", help=argparse.SUPPRESS)  # tests point this at the fake


_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "EUR", "BTC", "ETH", "BNB")


def _pairs(text: str | None, flag: str = "--pairs") -> list[str] | None:
    """Comma-separated BASE/QUOTE pairs, upper-cased; anything else is refused naming the
    value and its likely spelling (BTC-USDT and btcusdt mean BTC/USDT)."""
    if not text:
        return None
    out = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        pair = raw.upper()
        base, _, quote = pair.partition("/")
        if not base or not quote or "/" in quote or not (base + quote).isalnum():
            raise ConfigError(
                f"{flag} {raw!r}: not a pair; write BASE/QUOTE like {_guess(pair)}, "
                "comma-separated for several"
            )
        out.append(pair)
    if not out:
        raise ConfigError(f"{flag} {text!r}: no pair given; e.g. {flag} BTC/USDT,ETH/USDT")
    return out


def _guess(pair: str) -> str:
    for sep in ("-", "_", ":", " "):
        if sep in pair:
            base, _, quote = pair.partition(sep)
            return f"{base}/{quote}"
    for quote in _QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return f"{pair[: -len(quote)]}/{quote}"
    return "BTC/USDT"


def _check_output(path: Path, flag: str) -> None:
    """Refuse an output path whose directory is missing before the run, not after it."""
    target = path.absolute()
    if target.is_dir():
        raise ConfigError(f"{flag} {target}: is a directory; give a file name inside it")
    if not target.parent.is_dir():
        raise ConfigError(
            f"{flag} {target}: directory {target.parent} does not exist; create it "
            f"(mkdir -p {target.parent}) or write elsewhere"
        )


def _progress_bar() -> Callable[[int, int], None]:
    start = time.monotonic()

    def show(done: int, total: int) -> None:
        frac = min(1.0, done / total) if total else 1.0
        bar = "#" * int(frac * 30)
        elapsed = time.monotonic() - start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        sys.stderr.write(f"\r[{bar:<30}] {frac * 100:5.1f}% {done}/{total} cycles eta {eta:5.0f}s")
        if frac >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def cmd_backtest(args: argparse.Namespace) -> int:
    from backtest.html_report import render_html
    from backtest.report import build_report, summary_table, write_report
    from backtest.runner import run_backtest
    from infra.audit import AuditLog
    from infra.config_loader import load_config
    from runner.app import prepare_replay
    from runner.cli import check_dir, check_range

    pairs = _pairs(args.pairs)
    check_dir(args.data, "--data", "directory of candle files")
    check_range(args.from_ms, args.to_ms)
    _check_output(args.output, "--output")
    if args.html is not None:
        _check_output(args.html, "--html")
    if args.audit is not None and args.audit.exists() and not args.audit.is_dir():
        raise ConfigError(f"--audit {args.audit.absolute()}: is a file; give a directory")
    flags: list[tuple[str, str, Any]] = []
    if pairs:
        flags.append(("universe.symbols", "--pairs", pairs))
    if args.timeframe:
        flags.append(("timeframe", "--timeframe", args.timeframe))
    from runner.cli_strategies import require_enabled, strategy_options
    from runner.strategy_loader import STRATEGIES

    loaded = load_config(
        args.config, os.environ, flags, strategies=STRATEGIES, **strategy_options(args)
    )
    cfg = loaded.config
    require_enabled(cfg)
    feed_pairs = list(cfg.universe.symbols) if cfg.universe.symbols else None
    if feed_pairs is not None and cfg.regime.index_symbol not in feed_pairs:
        # The regime reads the index even when it is not traded.
        feed_pairs.append(cfg.regime.index_symbol)
    try:
        inputs = prepare_replay(
            cfg,
            args.data,
            pairs=feed_pairs,
            from_ms=args.from_ms,
            to_ms=args.to_ms,
            warmup_candles=cfg.loop.warmup_candles,
        )
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    for rep in inputs.reports.values():
        if not rep.ok:
            print(f"data: {rep.summary()}", file=sys.stderr)
    progress = None
    if not args.no_progress and sys.stderr.isatty():
        progress = _progress_bar()
    audit = None
    if args.audit is not None:
        from core.clock import SimClock

        audit_clock = SimClock(inputs.start_ms)
        audit = AuditLog(
            args.audit, config_hash=loaded.config_hash, clock=audit_clock, fsync=False
        ).open()
    try:
        result = asyncio.run(
            run_backtest(
                cfg,
                inputs,
                config_hash=loaded.config_hash,
                seed=args.seed,
                audit=_ClockedSink(audit, audit_clock) if audit else None,
                progress=progress,
            )
        )
    except Exception as exc:
        from runner.strategy_loader import user_frame

        where = user_frame(exc.__traceback__)
        if where is None:
            raise
        # A bug in the user's strategy: one line naming their code, not our traceback.
        print(f"strategy error: {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_codes.FAILURE
    finally:
        if audit is not None:
            audit.close()
    report = build_report(result, version=__version__)
    write_report(report, args.output)
    if args.html:
        args.html.write_text(render_html(report, result), encoding="utf-8")
    print(summary_table(report))
    print(f"report: {args.output}" + (f", html: {args.html}" if args.html else ""))
    return exit_codes.OK


class _ClockedSink:
    """Stamps audit records with the simulated time of the cycle that produced them."""

    def __init__(self, log: Any, clock: Any) -> None:
        self._log = log
        self._clock = clock

    def append(self, kind: str, data: Any, *, sync: bool = False) -> None:
        ts = data.get("cycle_ts") or data.get("ts")
        if isinstance(ts, int) and ts >= self._clock.now_ms():
            self._clock.advance_to(ts)
        self._log.append(kind, data, sync=sync)


def cmd_compare(args: argparse.Namespace) -> int:
    from backtest.compare import compare, format_compare, load_report

    try:
        current, baseline = load_report(args.current), load_report(args.baseline)
        res = compare(current, baseline, args.tolerance)
    except (ValueError, OSError) as exc:
        print(f"compare error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    print(format_compare(res))
    return exit_codes.OK if res.ok else exit_codes.FAILURE


def cmd_download(args: argparse.Namespace) -> int:
    from backtest.download import download_candles, download_window, make_ccxt_exchange

    pairs = _pairs(args.pairs) or []
    if args.days < 1:
        raise ConfigError(f"--days {args.days}: must be at least 1")
    now = int(datetime.now(UTC).timestamp() * 1000)
    # Closed candles only: the one still forming is left for the next download.
    since, until = download_window(now, args.days, args.timeframe)

    async def go() -> int:
        ex = make_ccxt_exchange(args.exchange, base_url=args.base_url)
        worst = exit_codes.OK
        try:
            for pair in pairs:
                try:
                    res = await download_candles(
                        ex,
                        pair,
                        args.timeframe,
                        since_ms=since,
                        until_ms=until,
                        out_dir=args.out,
                        fmt=args.format,
                    )
                except Exception as exc:  # one pair failing must not hide the others
                    print(f"{pair}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                    worst = exit_codes.FAILURE
                    continue
                print(
                    f"{pair}: {res.rows_before} -> {res.rows_before + res.rows_added} rows "
                    f"(+{res.rows_added}) in {res.path}; {res.report.summary()}"
                )
        finally:
            await ex.close()
        return worst

    return asyncio.run(go())


def dispatch_backtest(args: argparse.Namespace) -> int:
    if args.cmd == "backtest":
        return cmd_backtest(args)
    if args.cmd == "backtest-compare":
        return cmd_compare(args)
    return cmd_download(args)


# Plugged into `vigil` through the `vigil.commands` entry points (runner/cli_plugins.py).
COMMANDS = CommandGroup(
    add=add_backtest_commands,
    dispatch=dispatch_backtest,
    aliases={("backtest", "compare"): "backtest-compare"},
)
