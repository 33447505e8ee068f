"""The kill-switch file watcher, and the narrow control it gets over the engine.

The watcher looks for the file every KILL_POLL_S seconds (and before every cycle). When it
appears, the order gate closes at once (the executor refuses every new order from then on),
every open order is canceled and the halt is latched until an operator resumes.

Latency (`vigil_kill_switch_latency_seconds`, docs/metrics.md) is measured from when the file
appeared to when:
- block: the executor acknowledges the block, i.e. the gate is closed and every send that
  had passed it before has returned: from then on no order can reach the exchange;
- cancel: every open order was canceled, including one that was in flight when the gate
  closed (canceled once its send returned).
"Appeared" is the file's mtime, but never earlier than the watcher's last look that did not
see the file (the wall clock may be stepped; the file may have been written earlier and moved
in). A file already present at the first look counts from that look. Both are therefore real
operator-facing delays: the poll interval, a busy event loop, an order in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from core.clock import Clock
from runner.execution import OrderGate

log = logging.getLogger("vigil.loop")

KILL_POLL_S = 0.05  # how often the kill-switch file is looked for; bounds the block latency


@dataclass
class KillFiles:
    kill: Path
    resume: Path


@dataclass(frozen=True)
class KillControl:
    """What the watcher may do to the engine, and nothing more."""

    gate: OrderGate
    in_flight: Callable[[], int]  # sends that passed the gate and have not returned
    blocked: Callable[[], Awaitable[None]]  # returns once no order can still go out
    engage: Callable[[str, int, str], Awaitable[int]]  # (reason, now_ms, source) -> canceled
    cancel_open: Callable[[int], Awaitable[int]]  # (now_ms) -> canceled
    resume: Callable[[int, str], None]  # (now_ms, source)
    latched: Callable[[], bool]  # the engine's state holds the kill latch


class KillWatcher:
    """Watches for the kill-switch file between cycles too: the moment it appears, new
    orders are blocked and every open order is canceled."""

    def __init__(
        self,
        *,
        control: KillControl,
        clock: Clock,
        files: KillFiles,
        on_latency: Callable[[float, float], None] | None = None,
    ) -> None:
        self._ctl = control
        self._clock = clock
        self._files = files
        self._on_latency = on_latency
        self._absent_at: float | None = None  # monotonic time of the last look without it

    def read_reason(self) -> str:
        try:
            text = self._files.kill.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            text = ""
        return text[:500] or "kill-switch file present"

    def _appeared(self, seen_mono: float) -> float:
        """Monotonic time the file appeared: its mtime, bounded by the last look without it."""
        if self._absent_at is None:
            return seen_mono
        try:
            age = max(0.0, time.time() - self._files.kill.stat().st_mtime)
        except OSError:
            age = 0.0
        return seen_mono - min(age, seen_mono - self._absent_at)

    async def check(self) -> None:
        ctl = self._ctl
        gate = ctl.gate
        now_mono = time.monotonic()
        present = self._files.kill.exists()
        if present and not gate.killed:
            t0 = self._appeared(now_mono)
            gate.close(self.read_reason())  # the executor refuses new orders from here
            blocked_at = asyncio.get_running_loop().create_future()
            if ctl.in_flight():  # acknowledged once those sends return
                ack = asyncio.create_task(self._time_block(blocked_at))
            else:  # nothing past the gate: blocked now
                blocked_at.set_result(time.monotonic())
                ack = None
            # No lock with the cycle: cancels must not wait for a cycle that is mid-flight.
            n = await ctl.engage(gate.reason, self._clock.now_ms(), "file")
            if ack is not None:
                await ack
                # An order that was in flight when the gate closed rests now: cancel it too.
                n += await ctl.cancel_open(self._clock.now_ms())
            canceled = time.monotonic() - t0
            log.warning("KILL SWITCH engaged: %d open order(s) canceled", n)
            if self._on_latency is not None:
                self._on_latency(blocked_at.result() - t0, canceled)
        elif not present and gate.killed and not ctl.latched():
            gate.open()
        if not present:
            self._absent_at = now_mono
        if self._files.resume.exists():
            if present:
                log.error("resume requested but %s still exists; remove it first", self._files.kill)
            else:
                ctl.resume(self._clock.now_ms(), "file")
                log.warning("trading resumed by operator")
            with contextlib.suppress(FileNotFoundError):
                self._files.resume.unlink()

    async def _time_block(self, done: asyncio.Future[float]) -> None:
        await self._ctl.blocked()
        done.set_result(time.monotonic())

    async def run(self, stop: asyncio.Event, on_tick: Callable[[], None] | None = None) -> None:
        while not stop.is_set():
            try:
                await self.check()
                if on_tick is not None:
                    on_tick()
            except Exception:  # the watcher must outlive any single failure
                log.exception("kill-switch watcher error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=KILL_POLL_S)
