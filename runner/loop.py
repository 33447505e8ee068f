"""The daemon's main loop: pacing with jitter, signals, the watchdog; the kill-switch watcher
(runner/kill.py) runs beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from core.clock import Clock
from runner.cycle_guard import CycleGuard, storage_failure
from runner.engine import Engine
from runner.kill import KillWatcher

log = logging.getLogger("vigil.loop")


class Pacer(Protocol):
    async def next_cycle(self, stop: asyncio.Event) -> int | None:
        """Wait until the next cycle is due and return its time, or None to stop."""
        ...


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if `stop` was set meanwhile."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return stop.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


class LivePacer:
    """Cycles every `interval` seconds, each gap stretched or shrunk by a random jitter so
    many daemons never hit an exchange in lockstep."""

    def __init__(
        self, *, clock: Clock, interval_s: float, jitter_pct: float, rng: random.Random
    ) -> None:
        self._clock = clock
        self._interval = interval_s
        self._jitter = jitter_pct / 100.0
        self._rng = rng
        self._first = True

    def gap(self) -> float:
        return max(0.0, self._interval * (1.0 + self._rng.uniform(-self._jitter, self._jitter)))

    async def next_cycle(self, stop: asyncio.Event) -> int | None:
        if self._first:
            self._first = False
        elif await _wait(stop, self.gap()):
            return None
        return self._clock.now_ms()


class ReplayPacer:
    """One cycle per recorded candle close. Simulated time jumps to each close; wall time
    waits timeframe / speed (with jitter), so a replay can be watched or rushed."""

    def __init__(
        self,
        *,
        clock: ReplayClockLike,
        feed: NextClose,
        start_ms: int,
        end_ms: int,
        speed: float,
        jitter_pct: float,
        rng: random.Random,
    ) -> None:
        self._clock = clock
        self._feed = feed
        self._next = start_ms
        self._end = end_ms
        self._speed = speed
        self._jitter = jitter_pct / 100.0
        self._rng = rng
        self._first = True

    async def next_cycle(self, stop: asyncio.Event) -> int | None:
        if not self._first:
            nxt = self._feed.next_close_ms()
            if nxt is None:
                return None
            gap_s = (nxt - self._next) / 1000.0 / self._speed
            gap_s *= 1.0 + self._rng.uniform(-self._jitter, self._jitter)
            if await _wait(stop, gap_s):
                return None
            self._next = nxt
        self._first = False
        if self._next > self._end:
            return None
        self._clock.advance_to(self._next)
        return self._next


class ReplayClockLike(Protocol):
    def advance_to(self, ts_ms: int) -> None: ...


class NextClose(Protocol):
    def next_close_ms(self) -> int | None: ...


class Progress:
    """Feeds the systemd watchdog only while cycles keep completing: a loop stuck inside a
    cycle stops the petting, and systemd restarts the service."""

    def __init__(self, *, pet: Callable[[], None] | None = None, stall_after_s: float = 0) -> None:
        self._pet = pet
        self._stall = stall_after_s
        self._last = time.monotonic()

    def cycle_done(self) -> None:
        self._last = time.monotonic()
        self.tick()

    def tick(self) -> None:
        if self._pet is not None and time.monotonic() - self._last <= self._stall:
            self._pet()


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def run_loop(
    *,
    engine: Engine,
    pacer: Pacer,
    watcher: KillWatcher,
    stop: asyncio.Event,
    budget_ms: int,
    on_budget_exceeded: object = None,
    progress: Progress | None = None,
    guard: CycleGuard | None = None,
    before_cycle: Callable[[int], Awaitable[None]] | None = None,
) -> int:
    """Cycle until `stop` is set or the pacer ends. Returns the number of cycles run.

    An exception out of a cycle goes to `guard` (record, count, alert, escalate) and the loop
    goes on: a bug must not become a crash loop. `before_cycle(now_ms)` runs the periodic
    checks that live outside the engine (the clock-drift check)."""
    cycles = 0
    progress = progress or Progress()
    guard = guard or CycleGuard(control=engine.guard_control(), limit=3, scrub=lambda text: text)
    watch = asyncio.create_task(watcher.run(stop, progress.tick), name="kill-watcher")
    try:
        while not stop.is_set():
            now = await pacer.next_cycle(stop)
            if now is None:
                break
            await watcher.check()
            t0 = time.monotonic()
            try:
                if before_cycle is not None:
                    await before_cycle(now)
                d = await engine.step(now)
            except Exception as exc:  # the cycle boundary: see runner/cycle_guard.py
                if storage_failure(exc):
                    raise
                try:
                    await guard.failed(now, exc)
                except Exception as again:
                    if storage_failure(again):
                        raise
                    log.exception("recording a failed cycle failed too")
                progress.cycle_done()  # the loop is alive and judging; no watchdog restart
                cycles += 1
                continue
            guard.succeeded()
            progress.cycle_done()
            cycles += 1
            took_ms = (time.monotonic() - t0) * 1000.0
            if took_ms > budget_ms:
                log.warning("cycle took %.0f ms, over its %d ms budget", took_ms, budget_ms)
                if callable(on_budget_exceeded):
                    on_budget_exceeded()
            if engine.kill_active() and engine.book.live():
                # An order that was in flight when the switch flipped: take it down too.
                await engine.cancel_all(now, reason="KILL_SWITCH")
            if d.no_trade_reason:
                log.debug("cycle %d: no trade (%s)", cycles, d.no_trade_reason)
    finally:
        stop.set()
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    return cycles
