"""`vigil run`: wire the daemon together, run it, shut it down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import random
import shutil
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.errors import ConfigError, ExchangeError, ExchangeUnavailable
from infra.alerts import Notifier
from infra.audit import AuditLog
from infra.clock import LiveClock, ReplayClock
from infra.config_loader import LoadedConfig
from infra.exchange.sim_config import SimConfig
from infra.logfmt import json_logging
from infra.metrics import Metrics
from infra.secrets import audit_key, load_secrets, redact
from infra.settings import Mode, ResolvedPaths, VigilConfig
from infra.state_store import StateStore, StateUnavailable
from infra.systemd import SystemdNotifier
from runner import __version__
from runner.alerting import AlertingSink, alerting_sink, make_notifier
from runner.app import (
    build_engine,
    check_markets,
    prepare_replay,
    replay_exchange,
    replay_feed,
    replay_markets_check,
    sim_exchange,
)
from runner.checks import key_issued_ms, start_integrity_watch
from runner.engine import Engine
from runner.flatten import Flattener, FlattenPacer
from runner.guards import Guards
from runner.loop import (
    KillFiles,
    KillWatcher,
    LivePacer,
    Pacer,
    Progress,
    ReplayPacer,
    run_loop,
)
from runner.ops_status import utc
from runner.signals import STOP_SIGNALS, install_stop_signals
from runner.state_guard import (
    AUDIT_LOCK_NAME,
    check_start,
    state_lock_path,
    writer_locks,
)
from runner.store import SqliteStore, paper_wallet
from runner.trim import TrimRule, paper_unwind, trim_request

log = logging.getLogger("vigil.daemon")
AUDIT_CHECKPOINT_MS = 5 * 60_000


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


def banner(loaded: LoadedConfig) -> str:
    c = loaded.config
    r = c.risk
    enabled = ",".join(n for n, _ in c.enabled_strategies()) or "none"
    return (
        f"vigil {__version__} | mode={c.mode.value} read_only={c.read_only} "
        f"exchange={c.exchange.id}{' (sandbox)' if c.exchange.sandbox else ''} "
        f"config_hash={loaded.config_hash} | timeframe={c.timeframe} strategies={enabled} | "
        f"max_total={r.max_total_exposure_pct}% max_asset={r.max_asset_exposure_pct}% "
        f"max_theme={r.max_theme_exposure_pct}% max_positions={r.max_open_positions} "
        f"stop={c.exits.stop_loss_pct}% daily_stop={r.daily_loss_stop_pct}% "
        f"max_dd={r.max_drawdown_pct}%"
    )


def _port_taken(loaded: LoadedConfig) -> ConfigError:
    http = loaded.config.http
    where = loaded.origins.get("http.port", "the default")
    return ConfigError(
        f"http.port {http.port} (from {where}): {http.host}:{http.port} is already in use, "
        "probably by another vigil (`make run` and `make replay` both default to 9108); stop "
        "it, or set another http.port (0 picks a free one)"
    )


async def _run(loaded: LoadedConfig, opts: RunOptions) -> int:
    from infra.http import port_taken

    paths = loaded.paths(replay=opts.replay is not None)
    stop = asyncio.Event()
    install_stop_signals(stop)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    with writer_locks(paths):  # a second daemon on the same files is told so first (exit 3)
        http = loaded.config.http
        if http.enabled and port_taken(http.host, http.port):  # before any work is done
            raise _port_taken(loaded)
        if opts.fresh:
            _clear_replay(paths)
        fresh = check_start(paths, fresh=opts.fresh_state)
        return await _run_locked(loaded, opts, paths, stop, fresh)


async def _run_locked(
    loaded: LoadedConfig, opts: RunOptions, paths: Any, stop: asyncio.Event, fresh: list[str] | None
) -> int:
    db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
    try:
        if opts.replay is not None:
            return await _run_replay(loaded, opts, paths, db, stop, fresh)
        return await _run_live(loaded, opts, paths, db, stop, fresh)
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


def paths_line(loaded: LoadedConfig, paths: ResolvedPaths) -> str:
    return (
        f"config={loaded.config_dir} data_dir={paths.data_dir} state_db={paths.state_db} "
        f"audit_dir={paths.audit_dir} kill_switch={paths.kill_switch}"
    )


def _fresh_record(audit: AuditLog, paths: Any, fresh: list[str] | None) -> None:
    if fresh is None:
        return
    log.warning("starting with EMPTY state on purpose (--fresh-state); found before: %s", fresh)
    audit.append(
        "state_fresh",
        {"state_db": str(paths.state_db), "found": fresh, "source": "run --fresh-state"},
        sync=True,
    )


def open_audit(directory: Path, config_hash: str, clock: Any) -> AuditLog:
    """Open the audit log, verifying it first (AuditCorrupted, exit 5, names the first bad
    record); keyed by VIGIL_AUDIT_KEY when set; checkpoint lines every 5 minutes."""
    return AuditLog(
        directory,
        config_hash=config_hash,
        clock=clock,
        key=audit_key(os.environ),
        checkpoint_every_ms=AUDIT_CHECKPOINT_MS,
    ).open()


def _config_record(loaded: LoadedConfig, paths: ResolvedPaths, **extra: Any) -> dict[str, Any]:
    text = banner(loaded)
    where = paths_line(loaded, paths)
    if not json_logging():  # in JSON mode the log lines below are the banner
        print(f"{text}\n{where}", file=sys.stderr, flush=True)
    log.info("%s", text)
    from runner.strategy_loader import user_sources

    enabled = [n for n, _ in loaded.config.enabled_strategies()]
    log.info("%s", where)
    return {
        "version": __version__,
        "banner": text,
        "paths": where,
        "sources": list(loaded.sources),
        "warnings": list(loaded.warnings),
        # The config hash does not cover user strategy code; its file digests are recorded.
        "user_strategies": user_sources(enabled),
        **extra,
    }


async def _run_live(
    loaded: LoadedConfig,
    opts: RunOptions,
    paths: Any,
    db: StateStore,
    stop: asyncio.Event,
    fresh: list[str] | None,
) -> int:
    from runner.live import FeedSymbols, build_live
    from runner.live_streams import start_streams

    cfg = loaded.config
    clock = LiveClock()
    symbols = FeedSymbols(cfg)
    audit = open_audit(paths.audit_dir, loaded.config_hash, clock)
    metrics = Metrics()
    metrics.alerts.set_key_age(key_issued_ms(os.environ), cfg.checks.api_key_max_age_days)
    notifier = make_notifier(cfg, clock, metrics)
    secrets = load_secrets(os.environ)
    audit.on_checkpoint = metrics.audit_checkpoint
    metrics.audit_checkpoint(*audit.head)
    try:
        parts = build_live(
            cfg,
            secrets,
            clock,
            db,
            symbols,
            record=audit.append,
            observer=metrics,
        )
    except BaseException:
        audit.close()
        raise
    metrics.rate_limits.watch(parts.data.limiter_state)
    metrics.set_info(
        version=__version__,
        mode=cfg.mode.value,
        exchange=cfg.exchange.id,
        config_hash=loaded.config_hash,
    )
    engine = build_engine(
        config=cfg,
        exchange=parts.exchange,
        feed=parts.feed,
        store=SqliteStore(db),
        sink=alerting_sink(cfg, audit, notifier),
        listeners=parts.listeners,
        telemetry=metrics,
    )
    symbols.engine = engine
    streams = start_streams(parts, engine, clock, metrics)
    guards = Guards(
        engine=engine,
        config=cfg,
        clock=clock,
        scrub=lambda text: redact(text, secrets),
        fetch_time=getattr(parts.data, "fetch_time", None),
        exchange=cfg.exchange.id,
        on_clock=lambda r: metrics.guards.clock_reading(r.offset_ms, r.ok),
        on_change=lambda: metrics.update_state(engine),
    )
    audit.append(
        "config_loaded",
        _config_record(loaded, paths, exchange=cfg.exchange.id, **guards.describe()),
        sync=True,
    )
    _fresh_record(audit, paths, fresh)
    pacer: Pacer = LivePacer(
        clock=clock,
        interval_s=cfg.loop.interval_seconds,
        jitter_pct=cfg.loop.jitter_pct,
        rng=random.Random(),
    )
    try:
        return await _serve(
            loaded, engine, clock, pacer, paths, metrics, audit, opts, notifier, guards, stop
        )
    finally:
        await streams.stop()
        await parts.exchange.close()
        audit.close()


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


async def _run_replay(
    loaded: LoadedConfig,
    opts: RunOptions,
    paths: Any,
    db: StateStore,
    stop: asyncio.Event,
    fresh: list[str] | None,
) -> int:
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
    audit = open_audit(paths.audit_dir, loaded.config_hash, clock)
    metrics = Metrics()
    metrics.alerts.set_key_age(key_issued_ms(os.environ), cfg.checks.api_key_max_age_days)
    notifier = make_notifier(cfg, clock, metrics)
    audit.on_checkpoint = metrics.audit_checkpoint
    metrics.audit_checkpoint(*audit.head)
    metrics.set_info(
        version=__version__,
        mode=cfg.mode.value,
        exchange="replay",
        config_hash=loaded.config_hash,
    )
    sim = sim_exchange(inputs, sim_cfg, clock)
    exchange = replay_exchange(cfg.mode, sim, clock)
    feed = replay_feed(inputs)
    engine = build_engine(
        config=cfg,
        exchange=exchange,
        feed=feed,
        store=SqliteStore(db),
        sink=alerting_sink(cfg, audit, notifier),
        listeners=[sim.candle_listener()],
        telemetry=metrics,
    )
    secrets = load_secrets(os.environ)
    guards = Guards(
        engine=engine,
        config=cfg,
        clock=clock,
        scrub=lambda text: redact(text, secrets),
        check_clock=False,  # simulated time: nothing to compare with
        on_change=lambda: metrics.update_state(engine),
    )
    audit.append(
        "config_loaded",
        _config_record(
            loaded, paths, replay=str(opts.replay), speed=opts.speed, **guards.describe()
        ),
        sync=True,
    )
    _fresh_record(audit, paths, fresh)
    pacer: Pacer = ReplayPacer(
        clock=clock,
        feed=feed,
        start_ms=inputs.start_ms,
        end_ms=inputs.end_ms,
        speed=opts.speed,
        jitter_pct=cfg.loop.jitter_pct,
        rng=random.Random(),
    )
    try:
        return await _serve(
            loaded, engine, clock, pacer, paths, metrics, audit, opts, notifier, guards, stop
        )
    finally:
        await exchange.close()
        audit.close()


async def _serve(
    loaded: LoadedConfig,
    engine: Engine,
    clock: Any,
    pacer: Pacer,
    paths: Any,
    metrics: Metrics,
    audit: AuditLog,
    opts: RunOptions,
    notifier: Notifier,
    guards: Guards,
    stop: asyncio.Event,
) -> int:
    notifier.start()
    server = await _start_http(loaded, engine, clock, paths, metrics, opts.replay is not None)
    systemd = SystemdNotifier()
    # Up and serving /health: systemd may count the start as done even while the exchange is
    # still unreachable (the retries below), so a down venue never becomes a restart loop.
    systemd.ready(f"mode={loaded.config.mode.value} config={loaded.config_hash}; starting")
    try:
        if await _start_engine(engine, clock, loaded.config, stop, systemd.pet):
            _check_exchange_markets(loaded, engine, clock, audit)
            await guards.at_start()
            return await _cycle(
                loaded, engine, clock, pacer, paths, metrics, audit, opts, stop, guards, systemd
            )
        systemd.stopping()
        log.info("stopped before the exchange could be reached")
        audit.append("shutdown", {"ts": clock.now_ms(), "started": False}, sync=True)
        return 0
    finally:
        if server is not None:
            await server.stop()
        await notifier.stop()


def _check_exchange_markets(loaded: LoadedConfig, engine: Engine, clock: Any, audit: Any) -> None:
    """Now that the exchange has answered: refuse (exit 2) markets it does not list."""
    try:
        check_markets(loaded.config, engine.markets, f"on {loaded.config.exchange.id}")
    except ConfigError as exc:
        audit.append("shutdown", {"ts": clock.now_ms(), "started": False, "reason": str(exc)})
        raise


async def _start_engine(
    engine: Engine,
    clock: Any,
    cfg: VigilConfig,
    stop: asyncio.Event,
    pet: Any = None,
) -> bool:
    """Start, retrying with capped backoff while the exchange cannot be reached. One line
    per failed attempt; SIGTERM during the retries ends the daemon cleanly. `pet` feeds the
    systemd watchdog while it waits: waiting for the venue is not a hang."""
    rng = random.Random()
    attempt = 0
    while not stop.is_set():
        start = asyncio.create_task(
            engine.start(clock.now_ms(), warmup_bars=cfg.loop.warmup_candles)
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not start.done():  # SIGTERM while still connecting: do not wait for timeouts
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, ExchangeError):
                await start
            return False
        try:
            start.result()
            return True
        except ExchangeError as exc:
            engine.start_failed(clock.now_ms(), exc)
            delay = min(60.0, 2.0**attempt) * rng.uniform(0.5, 1.0)
            attempt += 1
            text = " ".join(str(exc).split())[:200]
            what = "unreachable" if isinstance(exc, ExchangeUnavailable) else "refused start-up"
            log.error(
                "exchange %s %s (%s: %s); trading nothing, retrying in %.0fs",
                cfg.exchange.id,
                what,
                type(exc).__name__,
                text,
                delay,
            )
            await _wait_petting(stop, delay, pet)
    return False


async def _wait_petting(stop: asyncio.Event, delay: float, pet: Any) -> None:
    end = time.monotonic() + delay
    while not stop.is_set() and (left := end - time.monotonic()) > 0:
        if pet is not None:
            pet()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(left, 1.0))


async def _start_http(
    loaded: LoadedConfig, engine: Engine, clock: Any, paths: Any, metrics: Metrics, replay: bool
) -> Any:
    from infra.http import HttpServer, health_report, readiness
    from runner.ops_status import daemon_facts

    cfg = loaded.config
    started_ms = int(time.time() * 1000)
    key_issued = key_issued_ms(os.environ)
    if not cfg.http.enabled:
        return None
    server = HttpServer(
        host=cfg.http.host,
        port=cfg.http.port,
        metrics=metrics,
        health=lambda: health_report(
            engine,
            now_ms=clock.now_ms(),
            mode=cfg.mode.value,
            config_hash=loaded.config_hash,
            stale_after_s=max(3 * engine.config.timeframe_ms / 1000, 60),
            streams=getattr(engine.feed, "stats", None),
        ),
        ready=lambda: readiness(engine),
        status=lambda: daemon_facts(
            engine,
            mode=cfg.mode.value,
            config_hash=loaded.config_hash,
            config_dir=str(loaded.config_dir),
            paths=paths,
            replay=replay,
            started_ms=started_ms,
            key_issued_ms=key_issued,
            key_max_age_days=cfg.checks.api_key_max_age_days,
        ),
        allow_remote=cfg.http.allow_remote,
    )
    try:
        port = await server.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise _port_taken(loaded) from None
    paths.health_dir.mkdir(parents=True, exist_ok=True)
    (paths.health_dir / "http_port").write_text(f"{port}\n")
    log.info("HTTP on http://%s:%d (/metrics /health /ready)", cfg.http.host, port)
    return server


async def _cycle(
    loaded: LoadedConfig,
    engine: Engine,
    clock: Any,
    pacer: Pacer,
    paths: Any,
    metrics: Metrics,
    audit: AuditLog,
    opts: RunOptions,
    stop: asyncio.Event,
    guards: Guards,
    systemd: SystemdNotifier,
) -> int:
    cfg = loaded.config
    if engine.state.kill_switch:
        log.warning(
            "trading HALTED by the kill-switch latch (%s); run `vigil resume`",
            engine.state.kill_reason,
        )
    watcher = KillWatcher(
        engine=engine,
        clock=clock,
        files=KillFiles(paths.kill_switch, paths.data_dir / "RESUME"),
        on_latency=metrics.observe_kill_latency,
    )
    if opts.max_cycles is not None:
        pacer = _Limited(pacer, opts.max_cycles)
    flattener = Flattener(engine=engine, now_ms=clock.now_ms, data_dir=paths.data_dir)
    trim = None
    if cfg.flatten.trim_tolerance_pct is not None:
        rule = TrimRule(
            cfg.risk.max_asset_exposure_pct, Decimal(str(cfg.flatten.trim_tolerance_pct))
        )
        trim = functools.partial(trim_request, engine, rule)
    pacer = FlattenPacer(pacer, flattener, once=opts.flatten_only, trim=trim)
    integrity = start_integrity_watch(engine, clock, cfg, paths, stop)
    stall_s = 2 * cfg.loop.interval_seconds + cfg.loop.cycle_budget_ms / 1000
    systemd.notify(f"STATUS=mode={cfg.mode.value} config={loaded.config_hash}; trading")
    t0 = time.monotonic()
    try:
        cycles = await run_loop(
            engine=engine,
            pacer=pacer,
            watcher=watcher,
            stop=stop,
            budget_ms=cfg.loop.cycle_budget_ms,
            on_budget_exceeded=lambda: _over_budget(engine, metrics, cfg.loop.cycle_budget_ms),
            progress=Progress(pet=systemd.pet, stall_after_s=stall_s),
            guard=guards.cycle,
            before_cycle=guards.before_cycle,
        )
        if (
            cfg.mode is Mode.PAPER
            and cfg.flatten.paper_unwind_on_stop
            and opts.replay is None
            and engine.portfolio.positions
        ):
            log.warning(
                "PAPER auto-unwind: selling %d position(s)", len(engine.portfolio.positions)
            )
            await paper_unwind(flattener, engine.config.timeframe_ms)
    finally:
        systemd.stopping()
        if integrity is not None:
            integrity.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await integrity
        await _shutdown(engine, clock, cfg, audit, metrics)
    log.info("stopped after %d cycles in %.1fs", cycles, time.monotonic() - t0)
    return 0


def _over_budget(engine: Engine, metrics: Metrics, budget_ms: int) -> None:
    metrics.event("budget_exceeded")
    sink = engine.recorder.sink
    if isinstance(sink, AlertingSink):
        sink.cycle_over_budget(budget_ms)


class _Limited:
    def __init__(self, inner: Pacer, n: int) -> None:
        self._inner = inner
        self._left = n

    async def next_cycle(self, stop: asyncio.Event) -> int | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return await self._inner.next_cycle(stop)


async def _shutdown(
    engine: Engine, clock: Any, cfg: VigilConfig, audit: AuditLog, metrics: Metrics
) -> None:
    """Stop new orders, cancel open ones (configurable), flush state and audit."""
    now = clock.now_ms()
    engine.kill_file = True  # nothing new may be sent while we wind down
    canceled = 0
    if cfg.loop.cancel_on_shutdown and engine.book.live():
        try:
            canceled = await asyncio.wait_for(
                engine.cancel_all(now, reason="SHUTDOWN"), timeout=5.0
            )
        except TimeoutError:
            log.error("cancelling open orders timed out; they may still rest on the exchange")
    engine.kill_file = engine.state.kill_switch
    record: dict[str, Any] = {
        "ts": now,
        "canceled": canceled,
        "open_orders": len(engine.book.live()),
        "positions": len(engine.portfolio.positions),
        "equity": str(
            engine.last_decision.equity if engine.last_decision else engine.portfolio.cash
        ),
    }
    try:
        engine.store.save_cycle(engine.state, engine.portfolio, now)
    except (OSError, sqlite3.Error) as exc:
        # A full disk or a read-only file system: the audit record may still fit.
        log.error("state could not be saved at shutdown: %s", exc)
        record["state_saved"] = False
        record["error"] = " ".join(str(exc).split())[:200]
    try:
        audit.append("shutdown", record, sync=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: the log refused after a failed write
        log.error("the shutdown record could not be written to the audit log: %s", exc)


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
