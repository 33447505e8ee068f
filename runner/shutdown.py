"""Daemon shutdown: stop the engine (no new orders, open ones canceled when configured), save
its state, write the audit record; a full disk must not lose the record."""

from __future__ import annotations

import logging
import sqlite3

from core.clock import Clock
from infra.audit import AuditLog
from infra.settings import VigilConfig
from runner.engine import Engine

log = logging.getLogger("vigil.daemon")
CANCEL_TIMEOUT_S = 5.0


async def shutdown(engine: Engine, clock: Clock, cfg: VigilConfig, audit: AuditLog) -> None:
    """Stop new orders, cancel open ones (configurable), flush state and audit."""
    now = clock.now_ms()
    canceled = await engine.stop(
        now, cancel_open=cfg.loop.cancel_on_shutdown, timeout_s=CANCEL_TIMEOUT_S
    )
    last = engine.last_decision
    record: dict[str, object] = {
        "ts": now,
        "canceled": canceled,
        "open_orders": len(engine.book.live()),
        "positions": len(engine.portfolio.positions),
        "equity": str(last.equity if last else engine.portfolio.cash),
    }
    try:
        engine.persist(now)
    except (OSError, sqlite3.Error) as exc:
        # A full disk or a read-only file system: the audit record may still fit.
        log.error("state could not be saved at shutdown: %s", exc)
        record["state_saved"] = False
        record["error"] = " ".join(str(exc).split())[:200]
    try:
        audit.append("shutdown", record, sync=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: the log refused after a failed write
        log.error("the shutdown record could not be written to the audit log: %s", exc)
