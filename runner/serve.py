"""The daemon's wiring, one path for live, paper and replay: the infrastructure (clock,
exchange adapter, feed, pacer) comes from runner/daemon.py as an `Infra`; everything else
(audit, metrics, alerts, the engine from the composition root runner/app.py, guards, HTTP,
the kill watcher, flatten, the loop and shutdown) is built here the same way for both."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from core.clock import Clock
from core.ports import CandleFeed, CandleSink, Exchange
from infra.alerts import Notifier
from infra.audit import AuditLog
from infra.config_loader import LoadedConfig
from infra.metrics import Metrics
from infra.runtime_paths import ResolvedPaths
from infra.secrets import load_secrets, redact
from infra.settings import Mode
from infra.state_store import StateStore
from infra.systemd import SystemdNotifier
from runner import __version__
from runner.alerting import AlertingSink, alerting_sink, make_notifier
from runner.app import build_engine
from runner.checks import key_issued_ms, start_integrity_watch
from runner.engine import Engine
from runner.engine_parts import AccountListener
from runner.flatten import Flattener, FlattenPacer
from runner.guards import Guards
from runner.kill import KillFiles, KillWatcher
from runner.loop import Pacer, Progress, run_loop
from runner.shutdown import shutdown
from runner.startup import (
    check_exchange_markets,
    config_record,
    fresh_record,
    open_audit,
    start_engine,
    start_http,
)
from runner.store import SqliteStore
from runner.trim import TrimRule, paper_unwind, trim_request

log = logging.getLogger("vigil.daemon")


async def _nothing() -> None:
    return None


@dataclass
class Venue:
    """The exchange side the infrastructure picked, once the audit log and metrics exist."""

    exchange: Exchange
    feed: CandleFeed
    pacer: Pacer
    listeners: Sequence[CandleSink] = ()
    on_account: AccountListener | None = None  # told markets and positions (a live feed)
    fetch_time: Callable[[], Awaitable[int]] | None = None  # the venue's clock, for drift
    check_clock: bool = True
    record: Mapping[str, object] = field(default_factory=dict)  # extra config_loaded fields
    # Started with the engine (the live streams); returns what stops it.
    attach: Callable[[Engine], Callable[[], Awaitable[None]]] = lambda engine: _nothing


@dataclass(frozen=True)
class Infra:
    """What runner/daemon.py picks: the clock, the exchange label for metrics, and how to
    connect the venue given the audit log's append and the metrics."""

    clock: Clock
    label: str
    # (the audit log's append, for shadow records; the metrics) -> the venue
    connect: Callable[[Callable[..., object], Metrics], Venue]


@dataclass(frozen=True)
class ServeOptions:
    replay: bool
    max_cycles: int | None
    flatten_only: bool


async def run_daemon(
    loaded: LoadedConfig,
    opts: ServeOptions,
    paths: ResolvedPaths,
    db: StateStore,
    stop: asyncio.Event,
    fresh: list[str] | None,
    infra: Infra,
) -> int:
    cfg = loaded.config
    clock = infra.clock
    metrics = Metrics()
    audit = open_audit(paths.audit_dir, loaded.config_hash, clock, metrics.audit_checkpoint)
    try:
        metrics.alerts.set_key_age(key_issued_ms(os.environ), cfg.checks.api_key_max_age_days)
        notifier = make_notifier(cfg, clock, metrics)
        metrics.audit_checkpoint(*audit.head)
        venue = infra.connect(audit.append, metrics)
        try:
            metrics.set_info(
                version=__version__,
                mode=cfg.mode.value,
                exchange=infra.label,
                config_hash=loaded.config_hash,
            )
            engine = build_engine(
                config=cfg,
                exchange=venue.exchange,
                feed=venue.feed,
                store=SqliteStore(db),
                sink=alerting_sink(cfg, audit, notifier),
                listeners=venue.listeners,
                telemetry=metrics,
                on_account=venue.on_account,
            )
            detach = venue.attach(engine)
            try:
                secrets = load_secrets(os.environ)
                guards = Guards(
                    control=engine.guard_control(),
                    config=cfg,
                    clock=clock,
                    scrub=lambda text: redact(text, secrets),
                    fetch_time=venue.fetch_time,
                    exchange=cfg.exchange.id,
                    on_clock=lambda r: metrics.guards.clock_reading(r.offset_ms, r.ok),
                    on_change=lambda: metrics.update_state(engine),
                    check_clock=venue.check_clock,
                )
                audit.append(
                    "config_loaded",
                    config_record(loaded, paths, **venue.record, **guards.describe()),
                    sync=True,
                )
                fresh_record(audit, paths, fresh)
                parts = _Parts(engine, clock, venue.pacer, metrics, audit, notifier, guards)
                return await _serve(loaded, parts, paths, opts, stop)
            finally:
                await detach()
        finally:
            await venue.exchange.close()
    finally:
        audit.close()


@dataclass(frozen=True)
class _Parts:
    """What the wiring built, handed on to serving and cycling."""

    engine: Engine
    clock: Clock
    pacer: Pacer
    metrics: Metrics
    audit: AuditLog
    notifier: Notifier
    guards: Guards


async def _serve(
    loaded: LoadedConfig,
    parts: _Parts,
    paths: ResolvedPaths,
    opts: ServeOptions,
    stop: asyncio.Event,
) -> int:
    engine, clock, audit, notifier = parts.engine, parts.clock, parts.audit, parts.notifier
    metrics, guards = parts.metrics, parts.guards
    notifier.start()
    server = await start_http(
        loaded, engine, clock, paths, metrics, opts.replay, clock_check=guards.clock_status
    )
    systemd = SystemdNotifier()
    # Up and serving /health: systemd may count the start as done even while the exchange is
    # still unreachable (the retries below), so a down venue never becomes a restart loop.
    systemd.ready(f"mode={loaded.config.mode.value} config={loaded.config_hash}; starting")
    try:
        if await start_engine(engine, clock, loaded.config, stop, systemd.pet):
            check_exchange_markets(loaded, engine, clock, audit)
            await guards.at_start()
            return await _cycle(loaded, parts, paths, opts, stop, systemd)
        systemd.stopping()
        log.info("stopped before the exchange could be reached")
        audit.append("shutdown", {"ts": clock.now_ms(), "started": False}, sync=True)
        return 0
    finally:
        if server is not None:
            await server.stop()
        await notifier.stop()


async def _cycle(
    loaded: LoadedConfig,
    parts: _Parts,
    paths: ResolvedPaths,
    opts: ServeOptions,
    stop: asyncio.Event,
    systemd: SystemdNotifier,
) -> int:
    engine, clock, metrics, guards = parts.engine, parts.clock, parts.metrics, parts.guards
    pacer = parts.pacer
    cfg = loaded.config
    if engine.state.kill_switch:
        log.warning(
            "trading HALTED by the kill-switch latch (%s); run `vigil resume`",
            engine.state.kill_reason,
        )
    watcher = KillWatcher(
        control=engine.kill_control(),
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
    cycles = 0
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
            and not opts.replay
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
        await shutdown(engine, clock, cfg, parts.audit)
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
