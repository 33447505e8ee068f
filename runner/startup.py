"""Daemon start-up: the banner and config record, the audit log, the HTTP server, starting the
engine with retries while the exchange cannot be reached, and the markets check."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.clock import Clock
from core.errors import ConfigError, ExchangeError, ExchangeUnavailable
from infra.audit import AuditLog
from infra.clock_sync import ClockStatus
from infra.config_loader import LoadedConfig
from infra.logfmt import json_logging
from infra.metrics import Metrics
from infra.runtime_paths import ResolvedPaths
from infra.secrets import audit_key
from infra.settings import VigilConfig
from runner import __version__
from runner.app import check_markets
from runner.checks import key_issued_ms
from runner.engine import Engine

if TYPE_CHECKING:
    from infra.http import HttpServer

log = logging.getLogger("vigil.daemon")
AUDIT_CHECKPOINT_MS = 5 * 60_000


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


def port_taken(loaded: LoadedConfig) -> ConfigError:
    http = loaded.config.http
    where = loaded.origins.get("http.port", "the default")
    return ConfigError(
        f"http.port {http.port} (from {where}): {http.host}:{http.port} is already in use, "
        "probably by another vigil (`make run` and `make replay` both default to 9108); stop "
        "it, or set another http.port (0 picks a free one)"
    )


def paths_line(loaded: LoadedConfig, paths: ResolvedPaths) -> str:
    return (
        f"config={loaded.config_dir} data_dir={paths.data_dir} state_db={paths.state_db} "
        f"audit_dir={paths.audit_dir} kill_switch={paths.kill_switch}"
    )


def fresh_record(audit: AuditLog, paths: ResolvedPaths, fresh: list[str] | None) -> None:
    if fresh is None:
        return
    log.warning("starting with EMPTY state on purpose (--fresh-state); found before: %s", fresh)
    audit.append(
        "state_fresh",
        {"state_db": str(paths.state_db), "found": fresh, "source": "run --fresh-state"},
        sync=True,
    )


def open_audit(
    directory: Path,
    config_hash: str,
    clock: Clock,
    on_checkpoint: Callable[[int, str], None] | None = None,
) -> AuditLog:
    """Open the audit log, verifying it first (AuditCorrupted, exit 5, names the first bad
    record); keyed by VIGIL_AUDIT_KEY when set; checkpoint lines every 5 minutes."""
    return AuditLog(
        directory,
        config_hash=config_hash,
        clock=clock,
        key=audit_key(os.environ),
        checkpoint_every_ms=AUDIT_CHECKPOINT_MS,
        on_checkpoint=on_checkpoint,
    ).open()


def config_record(loaded: LoadedConfig, paths: ResolvedPaths, **extra: object) -> dict[str, object]:
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


def check_exchange_markets(
    loaded: LoadedConfig, engine: Engine, clock: Clock, audit: AuditLog
) -> None:
    """Now that the exchange has answered: refuse (exit 2) markets it does not list."""
    try:
        check_markets(loaded.config, engine.markets, f"on {loaded.config.exchange.id}")
    except ConfigError as exc:
        audit.append("shutdown", {"ts": clock.now_ms(), "started": False, "reason": str(exc)})
        raise


async def start_engine(
    engine: Engine,
    clock: Clock,
    cfg: VigilConfig,
    stop: asyncio.Event,
    pet: Callable[[], None] | None = None,
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
            _user_code_fails_plainly(start)
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


async def _wait_petting(stop: asyncio.Event, delay: float, pet: Callable[[], None] | None) -> None:
    end = time.monotonic() + delay
    while not stop.is_set() and (left := end - time.monotonic()) > 0:
        if pet is not None:
            pet()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(left, 1.0))


async def start_http(
    loaded: LoadedConfig,
    engine: Engine,
    clock: Clock,
    paths: ResolvedPaths,
    metrics: Metrics,
    replay: bool,
    clock_check: Callable[[], ClockStatus | None] = lambda: None,
) -> HttpServer | None:
    """The HTTP server (/metrics /health /ready /status), or None when http.enabled is off.
    `clock_check()` is the clock-drift check's last result (runner/guards.py)."""
    from infra.http import HttpServer, health_report, readiness  # aiohttp: only when serving
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
            clock=clock_check(),
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
        raise port_taken(loaded) from None
    paths.health_dir.mkdir(parents=True, exist_ok=True)
    (paths.health_dir / "http_port").write_text(f"{port}\n")
    log.info("HTTP on http://%s:%d (/metrics /health /ready)", cfg.http.host, port)
    return server


def _user_code_fails_plainly(start: asyncio.Task[None]) -> None:
    """The start's outcome. A user strategy or indicator that raises while the history warms
    up is a configuration the daemon cannot run: one line naming the user's file and line
    (exit 2, which systemd does not restart), not our traceback."""
    try:
        start.result()
    except ExchangeError:
        raise
    except Exception as exc:
        from runner.strategy_loader import user_frame

        where = user_frame(exc.__traceback__)
        if where is None:
            raise
        raise ConfigError(
            f"strategy error at start-up: {where}: {type(exc).__name__}: {exc}"
        ) from None
