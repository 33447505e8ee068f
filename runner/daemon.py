"""`vigil run`: wire the daemon together, run it, shut it down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, ExchangeError, ExchangeUnavailable
from infra.alerts import Notifier
from infra.audit import AuditLog
from infra.clock import LiveClock, ReplayClock
from infra.config_loader import LoadedConfig
from infra.exchange.sim_config import SimConfig
from infra.lock import InstanceLock
from infra.metrics import Metrics
from infra.secrets import load_secrets
from infra.settings import ResolvedPaths, VigilConfig
from infra.state_store import StateStore
from infra.systemd import SystemdNotifier
from runner import __version__
from runner.alerting import AlertingSink
from runner.app import (
    build_engine,
    prepare_replay,
    replay_exchange,
    replay_feed,
    sim_exchange,
)
from runner.engine import Engine
from runner.loop import (
    KillFiles,
    KillWatcher,
    LivePacer,
    Pacer,
    Progress,
    ReplayPacer,
    install_signal_handlers,
    run_loop,
)
from runner.ops_status import utc
from runner.store import SqliteStore, paper_wallet

log = logging.getLogger("vigil.daemon")


@dataclass(frozen=True)
class RunOptions:
    replay: Path | None = None
    speed: float = 60.0
    from_ms: int | None = None
    to_ms: int | None = None
    max_cycles: int | None = None
    fresh: bool = False  # replay only: start over instead of continuing <data_dir>/replay


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
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    lock = InstanceLock(paths.lock_file)
    lock.acquire()  # a second daemon on the same files is told so first (exit 3)
    try:
        http = loaded.config.http
        if http.enabled and port_taken(http.host, http.port):  # before any work is done
            raise _port_taken(loaded)
        if opts.fresh:
            _clear_replay(paths)
        return await _run_locked(loaded, opts, paths)
    finally:
        lock.release()


async def _run_locked(loaded: LoadedConfig, opts: RunOptions, paths: Any) -> int:
    db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
    try:
        if opts.replay is not None:
            return await _run_replay(loaded, opts, paths, db)
        return await _run_live(loaded, opts, paths, db)
    finally:
        db.close()


def _clear_replay(paths: ResolvedPaths) -> None:
    """--fresh: delete an earlier replay's files (everything in <data_dir>/replay but the
    lock we hold), so the replay starts from the beginning with a fresh wallet."""
    for entry in paths.data_dir.iterdir():
        if entry == paths.lock_file:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    log.warning("--fresh: removed the earlier replay's files in %s", paths.data_dir)


def paths_line(loaded: LoadedConfig, paths: ResolvedPaths) -> str:
    return (
        f"config={loaded.config_dir} data_dir={paths.data_dir} state_db={paths.state_db} "
        f"audit_dir={paths.audit_dir} kill_switch={paths.kill_switch}"
    )


def _config_record(loaded: LoadedConfig, paths: ResolvedPaths, **extra: Any) -> dict[str, Any]:
    text = banner(loaded)
    where = paths_line(loaded, paths)
    print(f"{text}\n{where}", file=sys.stderr, flush=True)
    log.info("%s", text)
    from infra.strategy_loader import user_sources

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


async def _run_live(loaded: LoadedConfig, opts: RunOptions, paths: Any, db: StateStore) -> int:
    from runner.live import FeedSymbols, build_live
    from runner.live_streams import start_streams

    cfg = loaded.config
    clock = LiveClock()
    symbols = FeedSymbols(cfg)
    audit = AuditLog(paths.audit_dir, config_hash=loaded.config_hash, clock=clock).open()
    notifier = make_notifier(cfg, clock)
    metrics = Metrics()
    try:
        parts = build_live(
            cfg,
            load_secrets(os.environ),
            clock,
            db,
            symbols,
            record=audit.append,
            observer=metrics,
        )
    except BaseException:
        audit.close()
        raise
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
        sink=AlertingSink(audit, notifier),
        listeners=parts.listeners,
        telemetry=metrics,
    )
    symbols.engine = engine
    streams = start_streams(parts, engine, clock, metrics)
    audit.append(
        "config_loaded", _config_record(loaded, paths, exchange=cfg.exchange.id), sync=True
    )
    pacer: Pacer = LivePacer(
        clock=clock,
        interval_s=cfg.loop.interval_seconds,
        jitter_pct=cfg.loop.jitter_pct,
        rng=random.Random(),
    )
    try:
        return await _serve(loaded, engine, clock, pacer, paths, metrics, audit, opts, notifier)
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


async def _run_replay(loaded: LoadedConfig, opts: RunOptions, paths: Any, db: StateStore) -> int:
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
    audit = AuditLog(paths.audit_dir, config_hash=loaded.config_hash, clock=clock).open()
    notifier = make_notifier(cfg, clock)
    metrics = Metrics()
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
        sink=AlertingSink(audit, notifier),
        listeners=[sim.candle_listener()],
        telemetry=metrics,
    )
    audit.append(
        "config_loaded",
        _config_record(loaded, paths, replay=str(opts.replay), speed=opts.speed),
        sync=True,
    )
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
        return await _serve(loaded, engine, clock, pacer, paths, metrics, audit, opts, notifier)
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
) -> int:
    stop = asyncio.Event()
    install_signal_handlers(stop)
    notifier.start()
    server = await _start_http(loaded, engine, clock, paths, metrics, opts.replay is not None)
    try:
        if await _start_engine(engine, clock, loaded.config, stop):
            return await _cycle(loaded, engine, clock, pacer, paths, metrics, audit, opts, stop)
        log.info("stopped before the exchange could be reached")
        audit.append("shutdown", {"ts": clock.now_ms(), "started": False}, sync=True)
        return 0
    finally:
        if server is not None:
            await server.stop()
        await notifier.stop()


def make_notifier(cfg: VigilConfig, clock: Any) -> Notifier:
    """Apprise URLs come only from VIGIL_ALERT_URLS; without them alerts are logged."""
    urls = load_secrets(os.environ).alert_urls if cfg.alerts.enabled else ()
    return Notifier(
        urls=urls,
        clock=clock,
        dedupe_seconds=cfg.alerts.dedupe_seconds,
        escalate_after=cfg.alerts.escalate_after,
    )


async def _start_engine(engine: Engine, clock: Any, cfg: VigilConfig, stop: asyncio.Event) -> bool:
    """Start, retrying with capped backoff while the exchange cannot be reached. One line
    per failed attempt; SIGTERM during the retries ends the daemon cleanly."""
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
            engine.health.exchange_error = type(exc).__name__
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
    return False


async def _start_http(
    loaded: LoadedConfig, engine: Engine, clock: Any, paths: Any, metrics: Metrics, replay: bool
) -> Any:
    from infra.http import HttpServer, health_report, readiness
    from runner.ops_status import daemon_facts

    cfg = loaded.config
    started_ms = int(time.time() * 1000)
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
    systemd = SystemdNotifier()
    stall_s = 2 * cfg.loop.interval_seconds + cfg.loop.cycle_budget_ms / 1000
    systemd.ready(f"mode={cfg.mode.value} config={loaded.config_hash}")
    t0 = time.monotonic()
    try:
        cycles = await run_loop(
            engine=engine,
            pacer=pacer,
            watcher=watcher,
            stop=stop,
            budget_ms=cfg.loop.cycle_budget_ms,
            on_budget_exceeded=lambda: metrics.event("budget_exceeded"),
            progress=Progress(pet=systemd.pet, stall_after_s=stall_s),
        )
    finally:
        systemd.stopping()
        await _shutdown(engine, clock, cfg, audit, metrics)
    log.info("stopped after %d cycles in %.1fs", cycles, time.monotonic() - t0)
    return 0


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
    engine.store.save_cycle(engine.state, engine.portfolio, now)
    audit.append(
        "shutdown",
        {
            "ts": now,
            "canceled": canceled,
            "open_orders": len(engine.book.live()),
            "positions": len(engine.portfolio.positions),
            "equity": str(
                engine.last_decision.equity if engine.last_decision else engine.portfolio.cash
            ),
        },
        sync=True,
    )


def run(loaded: LoadedConfig, opts: RunOptions) -> int:
    from runner.cli_strategies import require_enabled

    require_enabled(loaded.config)  # before the lock and the state: nothing to run
    return asyncio.run(_run(loaded, opts))
