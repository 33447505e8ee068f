"""`vigil data check` and `vigil data convert`: look at candle files before a run trusts them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner import exit_codes
from runner.cli_plugins import CommandGroup


def add_data_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    data = sub.add_parser(
        "data",
        help="check candle files, or convert them to freqtrade's feather layout",
        epilog=epilog,
    )
    dsub = data.add_subparsers(dest="sub", required=True, metavar="ACTION")
    check = dsub.add_parser(
        "check",
        help="per file: rows, range, gaps, duplicates, order, bad ticks, price spikes",
        epilog=epilog,
        description="Validate every candle file in PATH (a directory or one file) the way a "
        "backtest loads it. Exit 0 all clean, 1 problems found, 2 a file cannot be read.",
    )
    check.add_argument("path", type=Path, metavar="PATH", help="candle directory or file")
    check.add_argument("--timeframe", help="only files of this timeframe, e.g. 5m")
    _guard_args(check)

    conv = dsub.add_parser(
        "convert",
        help="rewrite candle files (CSV exports included) as <BASE>_<QUOTE>-<tf>.feather",
        epilog=epilog,
        description="Read SOURCE (a file, or every candle file in a directory), validate it, "
        "and write the clean series in freqtrade's feather layout (date timestamp[ns, UTC], "
        "open, high, low, close, volume in the base asset) into --out. Rows are sorted oldest "
        "first; rows that fail the checks are left out and listed. Exit 2 on unreadable input.",
    )
    conv.add_argument("source", type=Path, metavar="SOURCE", help="candle file or directory")
    conv.add_argument("--out", type=Path, required=True, help="target directory")
    conv.add_argument("--symbol", help="pair, when the file name does not say, e.g. BTC/USDT")
    conv.add_argument(
        "--timeframe", help="timeframe, when the file name does not say (default: from the rows)"
    )
    conv.add_argument(
        "--format",
        default="feather",
        choices=["feather", "parquet", "csv", "json", "json.gz"],
        help="output format (default feather)",
    )
    _guard_args(conv)


def _guard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        help="take the spike guard's thresholds (triggers.outlier) from this config "
        "directory (default: the built-in defaults)",
    )
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")


def dispatch_data(args: argparse.Namespace) -> int:
    guard = _guard(args.config)
    if args.sub == "check":
        return cmd_check(args.path, args.timeframe, guard)
    return cmd_convert(args, guard)


def _guard(config: Path | None) -> Any:
    from core.config import OutlierGuard

    if config is None:
        return OutlierGuard()
    import os

    from infra.config_loader import load_config
    from runner.strategy_loader import STRATEGIES

    return load_config(config, dict(os.environ), strategies=STRATEGIES).config.triggers.outlier


def _files(path: Path, timeframe: str | None) -> tuple[list[Path], list[Path]]:
    """(candle files named the freqtrade way, other files that look like candles)."""
    from infra.candle_formats import FORMATS, parse_candle_filename

    if not path.exists():
        raise _Usage(f"{path} does not exist")
    items = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    named, other = [], []
    for p in items:
        parsed = parse_candle_filename(p.name)
        if parsed is not None:
            if timeframe is None or parsed[1] == timeframe:
                named.append(p)
        elif any(p.name.lower().endswith("." + f) for f in FORMATS):
            other.append(p)
    return named, other


class _Usage(Exception):
    pass


def cmd_check(path: Path, timeframe: str | None, guard: Any) -> int:
    from infra.candle_files import DataError, load_candles

    try:
        named, other = _files(path, timeframe)
    except _Usage as exc:
        print(f"data check: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    if not named and not other:
        what = f"{timeframe} " if timeframe else ""
        print(f"data check: no {what}candle files in {path}", file=sys.stderr)
        return exit_codes.CONFIG
    worst = exit_codes.OK
    for p in named:
        try:
            series, report = load_candles(p, guard=guard)
        except DataError as exc:
            print(f"{p.name}: ERROR: {exc}")
            worst = exit_codes.CONFIG
            continue
        print(_describe(p, series, report))
        if not (report.ok and len(series)) and worst == exit_codes.OK:
            worst = exit_codes.FAILURE
    for p in other:
        print(
            f"{p.name}: SKIPPED: the name does not say pair and timeframe "
            "(BASE_QUOTE-5m.ext); `vigil data convert FILE --symbol BTC/USDT --out DIR` "
            "writes it under such a name"
        )
    return worst


def _describe(path: Path, series: Any, report: Any) -> str:
    from core.candles import iso

    span = f"{iso(series.first_ts)} .. {iso(series.last_ts)}" if len(series) else "no rows"
    order = "newest first (read reversed)" if report.newest_first else "oldest first"
    if report.non_monotonic:
        order += f", {len(report.non_monotonic)} row(s) out of order"
    lines = [
        f"{path.name}: {report.symbol} {report.timeframe}, {report.rows_read} rows, "
        f"{report.rows_kept} kept, {span}",
        f"  gaps: {len(report.gaps)} ({report.missing_bars} missing bars)"
        f"; duplicates: {len(report.duplicates)}; conflicts: {len(report.conflicts)}"
        f"; order: {order}",
        f"  bad ticks: {len(report.bad_ticks)}; price spikes: {len(report.spikes)}",
    ]
    if report.notes:
        lines.append("  read: " + "; ".join(report.notes))
    for ts, reason in report.bad_ticks[:5]:
        lines.append(f"  bad tick at {iso(ts)}: {reason}")
    for ts, what in report.spikes[:5]:
        lines.append(f"  spike at {iso(ts)}: {what}")
    for after, missing in report.gaps[:5]:
        lines.append(f"  gap after {iso(after)}: {missing} bar(s)")
    if len(series) == 0:
        lines.append("  EMPTY: a backtest or replay that needs this pair stops (exit 2)")
    lines.append("  " + ("OK" if report.ok and len(series) else "PROBLEMS"))
    return "\n".join(lines)


def cmd_convert(args: argparse.Namespace, guard: Any) -> int:
    from infra.candle_files import DataError, load_candles, write_candles
    from infra.candle_formats import candle_filename, parse_candle_filename, read_candle_file

    try:
        named, other = _files(args.source, None)
    except _Usage as exc:
        print(f"data convert: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    sources = named + other
    if not sources:
        print(f"data convert: no candle files in {args.source}", file=sys.stderr)
        return exit_codes.CONFIG
    for src in sources:
        parsed = parse_candle_filename(src.name)
        symbol = args.symbol or (parsed[0] if parsed else None)
        timeframe = args.timeframe or (parsed[1] if parsed else None)
        if symbol is None:
            print(f"data error: {src}: pass --symbol (e.g. BTC/USDT)", file=sys.stderr)
            return exit_codes.CONFIG
        try:
            if timeframe is None:
                raw, _ = read_candle_file(src, symbol)
                timeframe = infer_timeframe(raw.ts, str(src))
            series, report = load_candles(src, symbol, timeframe, guard=guard)
            out = args.out / candle_filename(symbol, timeframe, args.format)
            if out.resolve() == src.resolve():
                raise DataError(f"{src}: --out would overwrite the source; pick another dir")
            if not len(series):
                raise DataError(f"{src}: no usable candles: {report.summary()}")
            write_candles(out, series)
        except (DataError, ValueError) as exc:
            print(f"data error: {exc}", file=sys.stderr)
            return exit_codes.CONFIG
        print(f"{src.name} -> {out}: {report.summary()}")
    return exit_codes.OK


def infer_timeframe(ts: Any, source: str) -> str:
    """The most common step between rows, as a timeframe ('1h'); DataError when unclear."""
    import numpy as np

    from core.clock import timeframe_ms
    from infra.candle_files import DataError

    steps = np.diff(np.unique(ts))
    if not len(steps):
        raise DataError(f"{source}: too few rows to tell the timeframe; pass --timeframe")
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[int(np.argmax(counts))])
    for unit, ms in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if step % ms == 0:
            tf = f"{step // ms}{unit}"
            timeframe_ms(tf)
            return tf
    raise DataError(f"{source}: rows are {step} ms apart, not a timeframe; pass --timeframe")


# Plugged into `vigil` through the `vigil.commands` entry points (runner/cli_plugins.py).
COMMANDS = CommandGroup(add=add_data_commands, dispatch=dispatch_data)
