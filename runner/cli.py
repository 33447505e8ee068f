"""The `vigil` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from core.errors import AlreadyRunning, AuditCorrupted, ConfigError, StateCorrupted
from infra.config_loader import LoadedConfig, load_config
from infra.secrets import RedactingFilter, load_secrets
from runner import __version__, exit_codes

EPILOG = (
    "Exit codes: 0 ok, 1 check failed, 2 bad config/arguments, 3 already running, "
    "4 state.db corrupted (quarantined), 5 audit log corrupted. See docs/cli.md."
)


def parse_date_ms(text: str) -> int:
    """'2024-01-31' or an ISO timestamp (UTC unless it says otherwise) -> epoch ms."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad date {text!r}: use YYYY-MM-DD or an ISO timestamp"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, default=Path("config"), help="config directory (default: ./config)"
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vigil", description="A careful crypto trading daemon.", epilog=EPILOG
    )
    ap.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon",
        epilog=EPILOG,
        description="Run the trading daemon until SIGTERM/SIGINT.",
    )
    _common(run)
    run.add_argument(
        "--mode", choices=["DRY_RUN", "PAPER", "LIVE"], help="override the configured mode"
    )
    run.add_argument(
        "--replay",
        type=Path,
        metavar="DIR",
        help="replay recorded candles from DIR instead of live market data",
    )
    run.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="replay speed: simulated seconds per wall second (default 60)",
    )
    run.add_argument(
        "--from", dest="from_ms", type=parse_date_ms, metavar="DATE", help="replay start (UTC)"
    )
    run.add_argument(
        "--to", dest="to_ms", type=parse_date_ms, metavar="DATE", help="replay end (UTC)"
    )
    run.add_argument("--max-cycles", type=int, help="stop after this many cycles")

    kill = sub.add_parser(
        "kill", help="halt trading now (latched until `vigil resume`)", epilog=EPILOG
    )
    _common(kill)
    kill.add_argument("--reason", default="operator kill via CLI", help="why (recorded)")

    resume = sub.add_parser("resume", help="re-arm trading after a kill", epilog=EPILOG)
    _common(resume)
    resume.add_argument("--reason", default="operator resume via CLI", help="why (recorded)")

    status = sub.add_parser("status", help="show the daemon's state", epilog=EPILOG)
    _common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    cfg = sub.add_parser("config", help="validate or show the configuration", epilog=EPILOG)
    csub = cfg.add_subparsers(dest="sub", required=True, metavar="ACTION")
    _common(csub.add_parser("check", help="validate; exit 0 or 2", epilog=EPILOG))
    _common(
        csub.add_parser("show", help="print the effective config, secrets redacted", epilog=EPILOG)
    )

    audit = sub.add_parser("audit", help="verify, read or replay the audit log", epilog=EPILOG)
    asub = audit.add_subparsers(dest="sub", required=True, metavar="ACTION")
    for name, text in (
        ("verify", "check the hash chain; names the first bad record"),
        ("tail", "print recent records readably"),
        ("replay", "rebuild positions and PnL from the log, compare with state.db"),
    ):
        p = asub.add_parser(name, help=text, epilog=EPILOG)
        _common(p)
        p.add_argument("--dir", type=Path, help="audit directory (default: from config)")
        if name == "tail":
            p.add_argument("-n", type=int, default=20, help="how many records")
            p.add_argument("--kind", action="append", help="only these kinds (repeatable)")

    shadow = sub.add_parser("shadow", help="shadow mode: live vs simulated fills", epilog=EPILOG)
    ssub = shadow.add_subparsers(dest="sub", required=True, metavar="ACTION")
    rep = ssub.add_parser(
        "report",
        help="summarise slippage, fill rates and latency from "
        "the shadow records; suggest fill-model settings",
        epilog=EPILOG,
    )
    _common(rep)
    rep.add_argument("--dir", type=Path, help="audit directory (default: from config)")
    rep.add_argument(
        "--since",
        dest="since_ms",
        type=parse_date_ms,
        metavar="DATE",
        help="only orders submitted since (UTC)",
    )
    rep.add_argument("--json", action="store_true", help="machine-readable output")

    from runner.cli_backtest import add_backtest_commands

    add_backtest_commands(sub, _common, EPILOG)
    from runner.cli_sweep import add_sweep_commands

    add_sweep_commands(sub, _common, EPILOG)
    return ap


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(load_secrets(os.environ)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError:
        root.setLevel(logging.INFO)


def _load(args: argparse.Namespace) -> LoadedConfig:
    env = dict(os.environ)
    if getattr(args, "mode", None):
        env["VIGIL_MODE"] = args.mode
    return load_config(args.config, env)


def dispatch(args: argparse.Namespace) -> int:
    from runner import ops

    if args.cmd in ("backtest", "backtest-compare", "download-data"):
        from runner.cli_backtest import dispatch_backtest

        return dispatch_backtest(args)
    if args.cmd == "sweep":
        from runner.cli_sweep import cmd_sweep

        return cmd_sweep(args)
    loaded = _load(args)
    for w in loaded.warnings:
        logging.getLogger("vigil.config").warning("%s", w)
    if args.cmd == "run":
        from runner.daemon import RunOptions, run

        return run(
            loaded,
            RunOptions(
                replay=args.replay,
                speed=args.speed,
                from_ms=args.from_ms,
                to_ms=args.to_ms,
                max_cycles=args.max_cycles,
            ),
        )
    if args.cmd == "kill":
        return ops.cmd_kill(loaded, args.reason)
    if args.cmd == "resume":
        return ops.cmd_resume(loaded, args.reason)
    if args.cmd == "status":
        return ops.cmd_status(loaded, args.json)
    if args.cmd == "config":
        return ops.cmd_config_check(loaded) if args.sub == "check" else ops.cmd_config_show(loaded)
    if args.cmd == "shadow":
        from runner.shadow_report import cmd_shadow_report

        directory = args.dir or loaded.config.paths.resolved().audit_dir
        return cmd_shadow_report(directory, args.json, since_ms=args.since_ms)
    if args.cmd == "audit":
        directory = args.dir or loaded.config.paths.resolved().audit_dir
        if args.sub == "verify":
            return ops.cmd_audit_verify(directory)
        if args.sub == "tail":
            return ops.cmd_audit_tail(directory, args.n, set(args.kind) if args.kind else None)
        return ops.cmd_audit_replay(loaded, directory)
    raise AssertionError(args.cmd)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["backtest", "compare"]:
        argv = ["backtest-compare", *argv[2:]]
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return dispatch(args)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return exit_codes.CONFIG
    except AlreadyRunning as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return exit_codes.ALREADY_RUNNING
    except StateCorrupted as exc:
        print(f"refusing to trade: {exc}", file=sys.stderr)
        return exit_codes.STATE_CORRUPTED
    except AuditCorrupted as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return exit_codes.AUDIT_CORRUPTED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
