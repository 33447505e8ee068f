"""`vigil run`: take the locks, open the state, pick the infrastructure (live venue or
recorded candles), and hand it to the one wiring path (runner/serve.py).

Only what differs between a live daemon and a replay is here: the clock, the exchange adapter
the mode selects, the feed, the pacer and what the config record names. The engine itself
comes from the composition root (runner/app.py), as in a backtest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from infra.clock import LiveClock, ReplayClock
from infra.config_loader import LoadedConfig
from infra.exchange.sim_config import SimConfig
from infra.metrics import Metrics
from infra.runtime_paths import ResolvedPaths
from infra.secrets import load_secrets
from infra.settings import VigilConfig
from infra.state_store import StateStore, StateUnavailable
from runner.app import prepare_replay, replay_markets_check, replay_venue
from runner.engine import Engine
from runner.loop import LivePacer, ReplayPacer
from runner.ops_status import utc
from runner.serve import Infra, ServeOptions, Venue, run_daemon
from runner.signals import STOP_SIGNALS, install_stop_signals
from runner.startup import banner, paths_line, port_taken
from runner.state_guard import (
    AUDIT_LOCK_NAME,
    check_start,
    state_lock_path,
    writer_locks,
)
from runner.store import paper_wallet

log = logging.getLogger("vigil.daemon")

__all__ = ["RunOptions", "banner", "paths_line", "run"]


@dataclass(frozen=True)
class RunOptions:
    replay: Path | None = None
    speed: float = 60.0
    from_ms: int | None = None
    to_ms: int | None = None
    max_cycles: int | None = None
    fresh: bool = False  # replay only: start over instead of continuing <data_dir>/replay
    fresh_state: bool = False  # start with empty state although vigil ran here before
    flatten_only: bool = False  # serve the waiting FLATTEN request, then stop (no cycle)


async def _run(loaded: LoadedConfig, opts: RunOptions) -> int:
    from infra.http import port_taken as port_in_use

    paths = loaded.paths(replay=opts.replay is not None)
    stop = asyncio.Event()
    install_stop_signals(stop)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    with writer_locks(paths):  # a second daemon on the same files is told so first (exit 3)
        http = loaded.config.http
        if http.enabled and port_in_use(http.host, http.port):  # before any work is done
            raise port_taken(loaded)
        if opts.fresh:
            _clear_replay(paths)
        fresh = check_start(paths, fresh=opts.fresh_state)
        db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
        try:
            infra = (
                _replay_infra(loaded, opts, paths, db)
                if opts.replay
                else _live_infra(loaded.config, db)
            )
            serve = ServeOptions(
                replay=opts.replay is not None,
                max_cycles=opts.max_cycles,
                flatten_only=opts.flatten_only,
            )
            return await run_daemon(loaded, serve, paths, db, stop, fresh, infra)
        finally:
            db.close()


def _clear_replay(paths: ResolvedPaths) -> None:
    """--fresh: delete an earlier replay's files (everything in <data_dir>/replay but the
    locks we hold), so the replay starts from the beginning with a fresh wallet."""
    held = {paths.lock_file, state_lock_path(paths.state_db), paths.audit_dir / AUDIT_LOCK_NAME}
    _clear_dir(paths.data_dir, held)
    log.warning("--fresh: removed the earlier replay's files in %s", paths.data_dir)


def _clear_dir(directory: Path, keep: set[Path]) -> None:
    for entry in directory.iterdir():
        if entry in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if any(k.is_relative_to(entry) for k in keep):
                _clear_dir(entry, keep)
            else:
                shutil.rmtree(entry)
        else:
            entry.unlink()


def _live_infra(cfg: VigilConfig, db: StateStore) -> Infra:
    """A real venue: the mode picks the adapter (runner/live.py); candles over REST or
    streams; cycles every loop.interval_seconds with jitter."""
    from runner.live import FeedSymbols, build_live
    from runner.live_streams import start_streams

    clock = LiveClock()

    def connect(record: Callable[..., object], metrics: Metrics) -> Venue:
        symbols = FeedSymbols(cfg, streams=cfg.stream.enabled)
        parts = build_live(
            cfg, load_secrets(os.environ), clock, db, symbols, record=record, observer=metrics
        )
        metrics.rate_limits.watch(parts.data.limiter_state)

        def attach(engine: Engine) -> Callable[[], Awaitable[None]]:
            streams = start_streams(
                parts.stream,
                exits_to=engine if cfg.stream.fast_exits else None,
                rules=cfg.exits,
                started=lambda: engine.health.started,
                clock=clock,
                metrics=metrics,
            )
            return streams.stop

        return Venue(
            exchange=parts.exchange,
            feed=parts.feed,
            pacer=LivePacer(
                clock=clock,
                interval_s=cfg.loop.interval_seconds,
                jitter_pct=cfg.loop.jitter_pct,
                rng=random.Random(),
            ),
            listeners=parts.listeners,
            on_account=symbols.follow,
            fetch_time=getattr(parts.data, "fetch_time", None),
            record={"exchange": cfg.exchange.id},
            attach=attach,
        )

    return Infra(clock=clock, label=cfg.exchange.id, connect=connect)


def _resume_point(
    cfg: VigilConfig, db: StateStore, opts: RunOptions
) -> tuple[int | None, SimConfig]:
    """A replay restarted on an existing state.db continues after its last cycle, with the
    paper wallet rebuilt from the stored cash and positions; time never runs backwards."""
    last = db.kv_get("last_cycle_ms")
    if last is None:
        return opts.from_ms, cfg.sim
    resume = int(last) + cfg.timeframe_ms
    if opts.from_ms is not None and opts.from_ms < resume:
        raise ConfigError(
            f"--from: {db.path} already holds a replay up to {utc(int(last))}; replaying "
            "earlier data would run time backwards. Pass --fresh to start the replay over."
        )
    wallet = paper_wallet(cfg.sim, cfg.universe.quote_currency, db)
    text = (
        f"continuing the earlier replay in {db.path} after {utc(int(last))}, with its cash "
        "and positions; pass --fresh to start over"
    )
    print(text, file=sys.stderr, flush=True)
    log.warning("%s", text)
    return max(resume, opts.from_ms or 0), wallet


def _replay_infra(
    loaded: LoadedConfig, opts: RunOptions, paths: ResolvedPaths, db: StateStore
) -> Infra:
    """Recorded candles: the sim exchange (PAPER) or a dry run over it, the replay feed, a
    replay clock that jumps to each candle close, one cycle per close at `speed`."""
    cfg = loaded.config
    assert opts.replay is not None
    from_ms, sim_cfg = _resume_point(cfg, db, opts)
    inputs = prepare_replay(
        cfg,
        opts.replay,
        from_ms=from_ms,
        to_ms=opts.to_ms,
        warmup_candles=cfg.loop.warmup_candles,
    )
    if from_ms is not None and inputs.start_ms > inputs.end_ms:
        raise ConfigError(
            f"--replay: the data in {opts.replay} ends before {utc(from_ms)}, where the "
            f"earlier replay in {paths.state_db} left off; nothing left to replay. Pass "
            "--fresh to start over"
        )
    for rep in inputs.reports.values():
        if not rep.ok:
            log.warning("data: %s", rep.summary())
    clock = ReplayClock(inputs.start_ms, opts.speed)

    def connect(record: Callable[..., object], metrics: Metrics) -> Venue:
        venue = replay_venue(inputs, sim_cfg, clock, cfg.mode)
        return Venue(
            exchange=venue.exchange,
            feed=venue.feed,
            pacer=ReplayPacer(
                clock=clock,
                feed=venue.feed,
                start_ms=inputs.start_ms,
                end_ms=inputs.end_ms,
                speed=opts.speed,
                jitter_pct=cfg.loop.jitter_pct,
                rng=random.Random(),
            ),
            listeners=venue.listeners,
            check_clock=False,  # simulated time: nothing to compare with
            record={"replay": str(opts.replay), "speed": opts.speed},
        )

    return Infra(clock=clock, label="replay", connect=connect)


def run(loaded: LoadedConfig, opts: RunOptions) -> int:
    from runner.cli_strategies import require_enabled

    require_enabled(loaded.config)  # before the lock and the state: nothing to run
    if opts.replay is not None:  # before anything is created: the data answers at once
        replay_markets_check(loaded.config, opts.replay)
    try:
        return asyncio.run(_run(loaded, opts))
    except sqlite3.Error as exc:
        # "database or disk is full", "attempt to write a readonly database", ...
        raise StateUnavailable(
            f"state database {loaded.paths(replay=opts.replay is not None).state_db}: {exc}"
        ) from exc
    finally:
        # The loop's handlers are gone; a late signal must not kill the process with the
        # default action between here and exit.
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, signal.SIG_IGN)
