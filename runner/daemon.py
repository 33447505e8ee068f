"""`vigil run`: wire the daemon together, run it, shut it down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
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
from infra.lock import InstanceLock
from infra.logfmt import json_logging
from infra.metrics import Metrics
from infra.secrets import load_secrets
from infra.settings import Mode, VigilConfig
from infra.state_store import StateStore
from infra.systemd import SystemdNotifier
from runner import __version__
from runner.alerting import AlertingSink, alerting_sink, make_notifier
from runner.app import (
    build_engine,
    prepare_replay,
    replay_exchange,
    replay_feed,
    sim_exchange,
)
from runner.checks import key_issued_ms, start_integrity_watch
from runner.engine import Engine
from runner.flatten import Flattener, FlattenPacer
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
from runner.store import SqliteStore, paper_wallet
from runner.trim import TrimRule, paper_unwind, trim_request

log = logging.getLogger("vigil.daemon")


@dataclass(frozen=True)
class RunOptions:
    replay: Path | None = None
    speed: float = 60.0
    from_ms: int | None = None
    to_ms: int | None = None
    max_cycles: int | None = None
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


async def _run(loaded: LoadedConfig, opts: RunOptions) -> int:
    cfg = loaded.config
    paths = cfg.paths.resolved()
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    lock = InstanceLock(paths.lock_file)
    lock.acquire()
    try:
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


def _config_record(loaded: LoadedConfig, **extra: Any) -> dict[str, Any]:
    text = banner(loaded)
    if not json_logging():  # in JSON mode the log line below is the banner
        print(text, file=sys.stderr, flush=True)
    log.info("%s", text)
    return {
        "version": __version__,
        "banner": text,
        "sources": list(loaded.sources),
        "warnings": list(loaded.warnings),
        **extra,
    }


async def _run_live(loaded: LoadedConfig, opts: RunOptions, paths: Any, db: StateStore) -> int:
    from runner.live import FeedSymbols, build_live

    cfg = loaded.config
    clock = LiveClock()
    symbols = FeedSymbols(cfg)
    audit = AuditLog(paths.audit_dir, config_hash=loaded.config_hash, clock=clock).open()
    metrics = Metrics()
    metrics.alerts.set_key_age(key_issued_ms(os.environ), cfg.checks.api_key_max_age_days)
    notifier = make_notifier(cfg, clock, metrics)
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
        sink=alerting_sink(cfg, audit, notifier),
        listeners=parts.listeners,
        telemetry=metrics,
    )
    symbols.engine = engine
    audit.append("config_loaded", _config_record(loaded, exchange=cfg.exchange.id), sync=True)
    pacer: Pacer = LivePacer(
        clock=clock,
        interval_s=cfg.loop.interval_seconds,
        jitter_pct=cfg.loop.jitter_pct,
        rng=random.Random(),
    )
    try:
        return await _serve(loaded, engine, clock, pacer, paths, metrics, audit, opts, notifier)
    finally:
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
            f"--from: {db.path} already holds a replay up to {last} ms; replaying "
            "earlier data would run time backwards. Use a fresh paths.data_dir."
        )
    wallet = paper_wallet(cfg.sim, cfg.universe.quote_currency, db)
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
            f"--replay: the data in {opts.replay} ends before {from_ms} ms, "
            "where this state.db left off; nothing left to replay"
        )
    for rep in inputs.reports.values():
        if not rep.ok:
            log.warning("data: %s", rep.summary())
    clock = ReplayClock(inputs.start_ms, opts.speed)
    audit = AuditLog(paths.audit_dir, config_hash=loaded.config_hash, clock=clock).open()
    metrics = Metrics()
    metrics.alerts.set_key_age(key_issued_ms(os.environ), cfg.checks.api_key_max_age_days)
    notifier = make_notifier(cfg, clock, metrics)
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
    audit.append(
        "config_loaded",
        _config_record(loaded, replay=str(opts.replay), speed=opts.speed),
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
    server = await _start_http(loaded, engine, clock, paths, metrics)
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
    loaded: LoadedConfig, engine: Engine, clock: Any, paths: Any, metrics: Metrics
) -> Any:
    from infra.http import HttpServer, health_report, readiness

    cfg = loaded.config
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
        ),
        ready=lambda: readiness(engine),
        allow_remote=cfg.http.allow_remote,
    )
    port = await server.start()
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
    flattener = Flattener(engine=engine, now_ms=clock.now_ms, data_dir=paths.data_dir)
    trim = None
    if cfg.flatten.trim_tolerance_pct is not None:
        rule = TrimRule(
            cfg.risk.max_asset_exposure_pct, Decimal(str(cfg.flatten.trim_tolerance_pct))
        )
        trim = functools.partial(trim_request, engine, rule)
    pacer = FlattenPacer(pacer, flattener, once=opts.flatten_only, trim=trim)
    integrity = start_integrity_watch(engine, clock, cfg, paths, stop)
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
            on_budget_exceeded=lambda: _over_budget(engine, metrics, cfg.loop.cycle_budget_ms),
            progress=Progress(pet=systemd.pet, stall_after_s=stall_s),
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
    return asyncio.run(_run(loaded, opts))
