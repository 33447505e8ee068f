"""The `vigil` command line."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import AlreadyRunning, AuditCorrupted, ConfigError, DataError, StateCorrupted
from infra.clock_sync import ClockSkewed
from infra.config_loader import Flag, LoadedConfig, load_config
from infra.logfmt import FORMATS, formatter
from infra.secrets import (
    RedactingFilter,
    audit_key,
    load_secrets,
    require_live_credentials,
    scrub_in_logs,
    url_credentials,
)
from infra.state_file import StateUnavailable
from runner import __version__, exit_codes
from runner.cli_plugins import (
    CommandGroup,
    expand_aliases,
    installed_groups,
    missing_install,
    ordered,
)

EPILOG = (
    "Exit codes: 0 ok, 1 check failed, 2 bad config/arguments, 3 already running, "
    "4 state.db corrupted (quarantined) or lost beside an audit log, 5 audit log corrupted, "
    "6 no daemon running (acted on disk only), 7 LIVE refused: clock off, 8 a file or "
    "directory cannot be read or written. See docs/cli.md."
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


def check_range(from_ms: int | None, to_ms: int | None) -> None:
    """--from must come before --to: an empty or reversed range is a typo, not 'no data'."""
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        when = "equals" if from_ms == to_ms else "is after"
        raise ConfigError(
            f"--from {_day(from_ms)} {when} --to {_day(to_ms)}: the range is empty; give a "
            "--from before --to (--to is exclusive)"
        )


def _day(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%d" if dt.time() == datetime.min.time() else "%Y-%m-%dT%H:%M:%S")


def check_dir(path: Path, flag: str, what: str) -> None:
    if not path.exists():
        raise ConfigError(f"{flag} {path.absolute()}: no such directory; give the {what}")
    if not path.is_dir():
        raise ConfigError(
            f"{flag} {path.absolute()}: is a file, not a directory; give the {what} "
            f"(perhaps {path.absolute().parent})"
        )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=Path("config"),
        help="config directory (default: ./config); relative paths in it are taken from "
        "its parent directory",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text lines, or one JSON object per line (docs/deployment.md)",
    )


def _replay_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replay",
        action="store_true",
        help="act on the replay daemon's files (<data_dir>/replay) instead of the live ones",
    )


def build_parser(groups: Mapping[str, CommandGroup] | None = None) -> argparse.ArgumentParser:
    """The whole command line; `groups` defaults to the installed `vigil.commands`."""
    ap = argparse.ArgumentParser(
        prog="vigil", description="A careful crypto trading daemon.", epilog=EPILOG
    )
    ap.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon",
        epilog=EPILOG,
        description="Run the trading daemon until SIGTERM, SIGINT, SIGHUP, SIGQUIT or SIGUSR1 "
        "(each a clean stop).",
    )
    _common(run)
    run.add_argument(
        "--mode",
        metavar="{DRY_RUN,PAPER,LIVE}",
        help="override the configured mode (any case, like mode: in YAML)",
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
    run.add_argument(
        "--fresh",
        action="store_true",
        help="replay only: delete the earlier replay's files in <data_dir>/replay and start "
        "from the beginning instead of continuing it",
    )
    run.add_argument(
        "--fresh-state",
        action="store_true",
        help="start with empty state although state.db is missing beside an existing audit "
        "log (recorded in the audit log); see `vigil state rebuild` for the other way",
    )
    from runner.cli_strategies import add_strategy_flags

    add_strategy_flags(run)

    kill = sub.add_parser(
        "kill", help="halt trading now (latched until `vigil resume`)", epilog=EPILOG
    )
    _common(kill)
    _replay_flag(kill)
    kill.add_argument("--reason", default="operator kill via CLI", help="why (recorded)")
    from runner.cli_flatten import add_kill_flatten_args

    add_kill_flatten_args(kill)

    resume = sub.add_parser("resume", help="re-arm trading after a kill", epilog=EPILOG)
    _common(resume)
    _replay_flag(resume)
    resume.add_argument("--reason", default="operator resume via CLI", help="why (recorded)")

    status = sub.add_parser("status", help="show the running daemon's state", epilog=EPILOG)
    _common(status)
    _replay_flag(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    cfg = sub.add_parser("config", help="validate or show the configuration", epilog=EPILOG)
    csub = cfg.add_subparsers(dest="sub", required=True, metavar="ACTION")
    check = csub.add_parser("check", help="validate; exit 0, 2 (refused) or 1", epilog=EPILOG)
    _common(check)
    check.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="also check universe.symbols and regime.index_symbol against the candle files "
        "in DIR, as a backtest would (exit 2 for a missing one)",
    )
    check.add_argument(
        "--markets",
        action="store_true",
        help="also ask the configured exchange for its markets (public data, no keys) and "
        "refuse unknown ones as `vigil run` would (exit 2); exit 1 when it cannot be reached",
    )
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
        _replay_flag(p)
        p.add_argument("--dir", type=Path, help="audit directory (default: from config)")
        if name == "verify":
            from runner.cli_audit import add_verify_args

            add_verify_args(p)
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

    _add_groups(sub, installed_groups() if groups is None else groups)
    return ap


# The order `vigil --help` lists command groups in after the ones above. strategies, state and
# ops are runner's own; backtest, data and sweep come from the backtest package through the
# `vigil.commands` entry points (runner/cli_plugins.py). Other installed groups follow by name.
GROUP_ORDER = ("backtest", "strategies", "data", "state", "ops", "drill", "sweep")


def _add_groups(sub: Any, groups: Mapping[str, CommandGroup]) -> None:
    from runner.cli_ops import add_ops_commands
    from runner.cli_state import add_state_commands
    from runner.cli_strategies import add_strategies_commands

    own = {
        "strategies": add_strategies_commands,
        "state": add_state_commands,
        "ops": add_ops_commands,
    }
    for name in ordered([*own, *groups], GROUP_ORDER):
        if name in own:
            own[name](sub, _common, EPILOG)
            continue
        before = set(sub.choices)
        groups[name].add(sub, _common, EPILOG)
        for command in set(sub.choices) - before:
            sub.choices[command].set_defaults(_dispatch=groups[name].dispatch)


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    return {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(RedactingFilter(load_secrets(os.environ)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError:
        root.setLevel(logging.INFO)


def _load(args: argparse.Namespace) -> LoadedConfig:
    flags: list[Flag] = []
    if getattr(args, "mode", None):
        flags.append(("mode", "--mode", args.mode))
    from runner.cli_strategies import strategy_options
    from runner.strategy_loader import STRATEGIES

    return load_config(
        args.config, os.environ, flags, strategies=STRATEGIES, **strategy_options(args)
    )


def _check_run(args: argparse.Namespace) -> None:
    """Bad run arguments fail before anything is locked, opened or bound."""
    if args.replay is not None:
        check_dir(args.replay, "--replay", "directory of recorded candle files")
        if not math.isfinite(args.speed) or args.speed <= 0:
            raise ConfigError(f"--speed {args.speed:g}: must be a number above 0, e.g. 60")
    elif args.fresh or args.from_ms is not None or args.to_ms is not None:
        used = "--fresh" if args.fresh else "--from/--to"
        raise ConfigError(f"{used} applies to replays only; add --replay DIR or drop it")
    if args.max_cycles is not None and args.max_cycles < 1:
        raise ConfigError(f"--max-cycles {args.max_cycles}: must be at least 1")
    check_range(args.from_ms, args.to_ms)


def dispatch(args: argparse.Namespace) -> int:
    from runner import ops
    from runner.cli_ops import OPS_COMMANDS, dispatch_ops

    plugged = getattr(args, "_dispatch", None)
    if plugged is not None:  # a command from a `vigil.commands` group
        code: int = plugged(args)
        return code
    if args.cmd == "strategies":
        from runner.cli_strategies import dispatch_strategies

        return dispatch_strategies(args)
    if args.cmd == "run":
        _check_run(args)
    kinds = ops.check_kinds(getattr(args, "kind", None))
    loaded = _load(args)
    scrub_in_logs(url_credentials(loaded.config.exchange.base_url))
    for w in loaded.warnings:
        logging.getLogger("vigil.config").warning("%s", w)
    if args.cmd in OPS_COMMANDS:
        return dispatch_ops(args, loaded)
    if args.cmd == "run" or (args.cmd == "config" and args.sub == "check"):
        # Checked before anything is created: no state.db, audit log or lock for a run that
        # cannot trade, and `config check` says so too.
        require_live_credentials(loaded.config, load_secrets(os.environ))
        audit_key(os.environ)
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
                fresh=args.fresh,
                fresh_state=args.fresh_state,
            ),
        )
    if args.cmd == "state":
        from runner.cli_state import dispatch_state

        return dispatch_state(loaded, args)
    if args.cmd == "kill":
        rc = ops.cmd_kill(loaded, args.reason, args.replay)
        if not args.flatten or rc not in (exit_codes.OK, exit_codes.NOT_RUNNING):
            return rc
        from runner.cli_flatten import cmd_kill_flatten

        return cmd_kill_flatten(loaded, args)
    if args.cmd == "resume":
        return ops.cmd_resume(loaded, args.reason, args.replay)
    if args.cmd == "status":
        return ops.cmd_status(loaded, args.json, args.replay)
    if args.cmd == "config":
        if args.sub == "show":
            return ops.cmd_config_show(loaded)
        from runner.config_markets import cmd_config_check

        return cmd_config_check(loaded, args.data, args.markets)
    if args.cmd == "shadow":
        from runner.shadow_report import cmd_shadow_report

        directory = args.dir or loaded.paths().audit_dir
        ops.check_audit_dir(directory)
        return cmd_shadow_report(directory, args.json, since_ms=args.since_ms)
    if args.cmd == "audit":
        directory = args.dir or loaded.paths(replay=args.replay).audit_dir
        ops.check_audit_dir(directory)
        if args.sub == "verify":
            from runner.cli_audit import cmd_audit_verify

            return cmd_audit_verify(directory, args)
        if args.sub == "tail":
            return ops.cmd_audit_tail(directory, args.n, kinds)
        return ops.cmd_audit_replay(loaded, directory, args.replay)
    raise AssertionError(args.cmd)


def _plain(exc: BaseException) -> str:
    """One line for a file-system failure: the OS's words and the path, no traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        hint = {
            28: "; free some space (the disk is full)",
            30: "; the file system is mounted read-only",
            13: "; check the owner and mode of the file and its directory",
        }.get(exc.errno or 0, "")
        return f"{exc.strerror}{where}{hint}"
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    groups = installed_groups()
    parser = build_parser(groups)
    if argv and argv[0][:1] != "-" and argv[0] not in _commands(parser):
        hint = missing_install(argv[0])
        if hint is not None:  # argparse's "invalid choice" would not say why
            print(f"error: {hint}", file=sys.stderr)
            return exit_codes.CONFIG
    args = parser.parse_args(expand_aliases(argv, groups))
    setup_logging(args.log_level, getattr(args, "log_format", "text"))
    try:
        code = dispatch(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
        return code
    except BrokenPipeError:
        # `vigil status | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again, and exit quietly with 1 (as the
        # Python docs advise): the output was not all delivered, and the command's own exit
        # code was lost with it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exit_codes.FAILURE
    except ConfigError as exc:
        print(f"config error:\n{exc}" if "\n" in str(exc) else f"error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    except DataError as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    except PermissionError as exc:
        print(
            f"error: permission denied: {exc.filename}; run the command as the user that owns "
            "the data directory (e.g. sudo -u vigil vigil ...)",
            file=sys.stderr,
        )
        return exit_codes.FAILURE
    except AlreadyRunning as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return exit_codes.ALREADY_RUNNING
    except StateCorrupted as exc:
        print(f"refusing to trade: {exc}", file=sys.stderr)
        return exit_codes.STATE_CORRUPTED
    except AuditCorrupted as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return exit_codes.AUDIT_CORRUPTED
    except ClockSkewed as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return exit_codes.CLOCK_SKEW
    except (StateUnavailable, OSError) as exc:
        print(f"storage error: {_plain(exc)}", file=sys.stderr)
        return exit_codes.STORAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
