"""What the daemon does when a cycle raises something nobody expected.

A bug (or data no code path foresaw) must neither kill the process, which under systemd
would become a restart loop that reconciles and fails again every few seconds, nor be
swallowed silently. Each failure is caught at the cycle boundary, written to the audit log
with its traceback (secrets scrubbed), counted in `vigil_cycle_errors_total` and alerted.
Failures in a row escalate, and both steps are latched until an operator runs `vigil resume`:

- `limit` in a row: exits only (entries refused, exits and cancels still run);
- `2 x limit` in a row: HALTED through the kill-switch latch (open orders cancelled,
  nothing new sent, survives a restart).

One completed cycle resets the count in a row, never the latches.

Storage failures are not cycle errors: when the disk is full or read-only, or SQLite fails,
nothing can be recorded (not even an exit's order intent), so the failure ends the daemon with
a storage error (exit 8, see docs/runbook.md) instead of being retried every cycle.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from infra.state_store import StateUnavailable
from runner.exits_only import ExitsOnly

log = logging.getLogger("vigil.cycle")

CAUSE = "cycle_errors"
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM}


def storage_failure(exc: BaseException) -> bool:
    """The disk or the database failed under us: stop, do not retry the cycle."""
    if isinstance(exc, sqlite3.Error | StateUnavailable):
        return True
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


MAX_TRACEBACK = 8_000  # characters kept in the audit record (the innermost frames)


@dataclass(frozen=True)
class GuardControl:
    """What the runner's guards (this one, runner/clock_watch.py) may do to the engine, and
    nothing more; the engine hands it out (`Engine.guard_control`)."""

    exits_only: ExitsOnly
    halt: Callable[[str, int, str], Awaitable[int]]  # (reason, now_ms, source) -> canceled
    halted: Callable[[], bool]  # the engine state holds the kill latch
    record: Callable[..., None]  # (kind, data, sync=...) an audit record
    event: Callable[..., None]  # (name, **labels) a telemetry event


class CycleGuard:
    def __init__(
        self,
        *,
        control: GuardControl,
        limit: int,
        scrub: Callable[[str], str],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_change()` runs after each failure: the metrics' state gauges are otherwise
        set at the end of a cycle, which a failing cycle never reaches."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._ctl = control
        self._limit = limit
        self._scrub = scrub
        self._on_change = on_change
        self.in_a_row = 0
        self.total = 0

    def succeeded(self) -> None:
        self.in_a_row = 0

    async def failed(self, now_ms: int, exc: BaseException) -> None:
        """Record, count and alert one failed cycle; escalate when they come in a row."""
        self.in_a_row += 1
        self.total += 1
        ctl = self._ctl
        kind = type(exc).__name__
        message = self._scrub(" ".join(str(exc).split()))[:500]
        text = self._scrub("".join(traceback.format_exception(exc)))[-MAX_TRACEBACK:]
        if self.in_a_row == 1:
            log.error("cycle failed: %s: %s\n%s", kind, message, text)
        else:
            log.error("cycle failed (%d in a row): %s: %s", self.in_a_row, kind, message)
        ctl.event("cycle_error", kind=kind)
        ctl.record(
            "cycle_error",
            {
                "ts": now_ms,
                "error": kind,
                "message": message,
                "in_a_row": self.in_a_row,
                "limit": self._limit,
                "traceback": text,
            },
            sync=True,
        )
        why = f"{self.in_a_row} cycles failed in a row, last {kind}: {message}"[:300]
        if self.in_a_row >= 2 * self._limit and not ctl.halted():
            n = await ctl.halt(f"{CAUSE}: {why}", now_ms, CAUSE)
            log.critical("HALTED: %s; %d open order(s) cancelled; run `vigil resume`", why, n)
        elif self.in_a_row >= self._limit and CAUSE not in ctl.exits_only:
            ctl.exits_only.set(CAUSE, why, now_ms)
        self._on_change()
