"""`vigil drill list|run`: the failure drills (tools/drills) as commands, PASS or FAIL each."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner import exit_codes
from runner.cli_plugins import CommandGroup

DRILL_TIMEOUT_S = 240.0


def add_drill_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    drill = sub.add_parser(
        "drill",
        help="failure drills against the fake exchange",
        epilog=epilog,
        description="Each drill runs the real daemon against the project's fake exchange on "
        "127.0.0.1 in a temporary directory (your config copied in, tuned to trade on 1 s "
        "candles), causes one failure and checks the outcome from outside. Nothing touches "
        "your data directory or a real exchange.",
    )
    dsub = drill.add_subparsers(dest="sub", required=True, metavar="ACTION")
    common(dsub.add_parser("list", help="the drills, what each checks", epilog=epilog))
    run = dsub.add_parser(
        "run",
        help="run drills; print PASS or FAIL with measurements",
        epilog=epilog + " Exit 0 when every drill passed, 1 when any failed.",
    )
    common(run)
    run.add_argument("names", nargs="*", metavar="NAME", help="drills to run (see `list`)")
    run.add_argument("--all", action="store_true", help="run every drill")
    run.add_argument("--fast", action="store_true", help="run the fast drills (as make test)")


def cmd_drill(args: argparse.Namespace) -> int:
    from infra.config_loader import load_config
    from runner.strategy_loader import STRATEGIES
    from tools.drills.catalog import DRILLS

    # The config the drills copy must load, as for every command (ConfigError: exit 2).
    load_config(args.config, os.environ, [], strategies=STRATEGIES)
    if args.sub == "list":
        for d in DRILLS.values():
            print(f"{d.name:22} {'fast' if d.fast else 'slow':5} {d.what}")
        return exit_codes.OK
    names = list(args.names)
    if args.all:
        names = list(DRILLS)
    elif args.fast:
        names = [d.name for d in DRILLS.values() if d.fast]
    unknown = [n for n in names if n not in DRILLS]
    if unknown or not names:
        print(
            f"drill: {'unknown drill ' + ', '.join(unknown) if unknown else 'name a drill'}; "
            f"known: {', '.join(DRILLS)} (or --all, --fast)"
        )
        return exit_codes.CONFIG
    config: Path = args.config
    if not config.is_dir():
        print(f"drill: config directory {config} not found (--config)")
        return exit_codes.CONFIG
    failed = 0
    for name in names:
        failed += not _run_one(name, config)
    print(f"{len(names) - failed} passed, {failed} failed")
    return exit_codes.FAILURE if failed else exit_codes.OK


def _run_one(name: str, config: Path) -> bool:
    from tools.drills.catalog import DRILLS
    from tools.drills.harness import DrillFailed

    t0 = time.monotonic()
    try:
        measures = asyncio.run(asyncio.wait_for(DRILLS[name].run(config), DRILL_TIMEOUT_S))
    except (DrillFailed, TimeoutError) as exc:
        text = str(exc) or f"did not finish within {DRILL_TIMEOUT_S:g} s"
        print(f"FAIL {name} ({time.monotonic() - t0:.1f} s): {text.strip()}")
        return False
    except Exception as exc:  # a drill that breaks is a failed drill, said in one line
        print(f"FAIL {name} ({time.monotonic() - t0:.1f} s): {type(exc).__name__}: {exc}")
        return False
    shown = " ".join(f"{k}={v}" for k, v in measures.items())
    print(f"PASS {name} ({time.monotonic() - t0:.1f} s) {shown}", flush=True)
    return True


# Plugged into `vigil` through the vigil.commands entry points (pyproject.toml): runner may not
# import tools.
COMMANDS = CommandGroup(add=add_drill_commands, dispatch=cmd_drill)
