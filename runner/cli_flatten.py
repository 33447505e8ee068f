"""`vigil flatten` and `vigil kill --flatten`: get flat through the running daemon, or on its
own when none runs (runner/flatten.py does the work, in the daemon's process either way)."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.config_loader import LoadedConfig
from infra.lock import pid_alive
from infra.runtime_paths import ResolvedPaths
from infra.state_store import StateStore
from runner import exit_codes
from runner.flatten import (
    REQUEST_FILE,
    RESULT_FILE,
    FlattenRequest,
    FlattenResult,
    wait_for_result,
    write_atomic,
)


def add_flatten_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passive-seconds",
        type=float,
        default=10.0,
        help="how long the post-only sell at the best ask may rest (default 10)",
    )
    p.add_argument(
        "--marketable-seconds",
        type=float,
        default=10.0,
        help="how long the marketable sell may take before it is cancelled (default 10)",
    )
    p.add_argument(
        "--slippage-bps",
        type=float,
        default=50.0,
        help="the marketable sell's limit: best bid minus this many bps (default 50)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="seconds to wait for the running daemon's answer (default 300)",
    )


def add_flatten_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    p = sub.add_parser(
        "flatten",
        help="sell the named or all positions, reduce-only, through the running daemon",
        epilog=epilog + " Exit 0 when nothing tradeable is left (dust below the venue minimum "
        "is reported, not counted), 1 when a position is left or the daemon did not answer.",
        description="Post-only limit sell at the best ask first, a marketable limit sell "
        "after --passive-seconds, each step audited; prints what is left per symbol and why. "
        "Goes through the running daemon (found from --config); when none runs, does the same "
        "itself with the daemon's exchange setup, then exits. Does not stop new entries: use "
        "`vigil kill --flatten` to get flat and stay flat.",
    )
    common(p)
    p.add_argument("--symbols", help="comma-separated, e.g. BTC/USDT,ETH/USDT (default: all)")
    p.add_argument("--reason", default="operator flatten via CLI", help="why (recorded)")
    add_flatten_args(p)


def _running_pid(paths: ResolvedPaths) -> int | None:
    from runner.daemon_link import locked_pid

    return locked_pid(paths)


def _kill_latched(paths: ResolvedPaths) -> bool:
    try:
        con = sqlite3.connect(f"file:{paths.state_db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return False
    try:
        return StateStore(connection=con, path=str(paths.state_db)).kill_switch()[0]
    except sqlite3.Error:
        return False
    finally:
        con.close()


def wait_for_kill(paths: ResolvedPaths, timeout_s: float = 10.0) -> bool:
    """True once the daemon has latched the kill switch (its cancels are then done or under
    way, so they cannot take down the flatten's orders)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _kill_latched(paths):
            return True
        time.sleep(0.05)
    return False


def _print(result: FlattenResult) -> int:
    for o in result.outcomes:
        print(o.line())
    if not result.outcomes:
        print("no positions: nothing to flatten")
    print(f"flatten {result.id}: {'done' if result.ok else 'INCOMPLETE'} in {result.seconds:.1f} s")
    return exit_codes.OK if result.ok else exit_codes.FAILURE


def cmd_flatten(loaded: LoadedConfig, args: argparse.Namespace, *, symbols: str | None) -> int:
    paths = loaded.paths()
    wanted = tuple(s.strip().upper() for s in (symbols or "").split(",") if s.strip())
    try:
        req = FlattenRequest.new(
            wanted,
            args.reason,
            passive_seconds=args.passive_seconds,
            marketable_seconds=args.marketable_seconds,
            slippage_bps=args.slippage_bps,
        )
        FlattenRequest.parse(req.to_json())  # the daemon's own checks, before anything is sent
    except ValueError as exc:
        print(f"flatten: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    pid = _running_pid(paths)
    if pid is not None:
        write_atomic(paths.data_dir / REQUEST_FILE, req.to_json())
        print(f"flatten {req.id} requested from vigil (pid {pid}); waiting for its answer")
        answer = asyncio.run(
            wait_for_result(paths.data_dir, req.id, args.wait, lambda: pid_alive(pid))
        )
        if isinstance(answer, str):
            print(f"flatten {req.id}: {answer}", file=sys.stderr)
            return exit_codes.FAILURE
        return _print(answer)
    return _standalone(loaded, req, paths)


def _standalone(loaded: LoadedConfig, req: FlattenRequest, paths: ResolvedPaths) -> int:
    from runner.daemon import RunOptions, run

    print(f"vigil is not running: flattening on its own ({loaded.config.mode.value})")
    result_path: Path = paths.data_dir / RESULT_FILE
    write_atomic(paths.data_dir / REQUEST_FILE, req.to_json())
    try:
        rc = run(loaded, RunOptions(flatten_only=True))
    finally:
        (paths.data_dir / REQUEST_FILE).unlink(missing_ok=True)
    if rc != exit_codes.OK:
        return rc
    try:
        result = FlattenResult.parse(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        print(f"flatten {req.id}: stopped before the exchange could be reached", file=sys.stderr)
        return exit_codes.FAILURE
    if result.id != req.id:
        print(f"flatten {req.id}: no result was written", file=sys.stderr)
        return exit_codes.FAILURE
    return _print(result)


def add_kill_flatten_args(kill: argparse.ArgumentParser) -> None:
    kill.add_argument(
        "--flatten",
        action="store_true",
        help="after halting, sell every position reduce-only (as `vigil flatten`)",
    )
    add_flatten_args(kill)


def cmd_kill_flatten(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    """Called after the kill switch is set: wait until the daemon has latched it (its
    cancel-all is then done), then flatten everything."""
    paths = loaded.paths()
    if _running_pid(paths) is not None and not wait_for_kill(paths):
        print(
            "kill --flatten: the daemon did not latch the kill switch within 10 s; not flattening",
            file=sys.stderr,
        )
        return exit_codes.FAILURE
    return cmd_flatten(loaded, args, symbols=None)
