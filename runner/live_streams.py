"""Runs the WebSocket streams beside the daemon's cycle, and the fast exits they feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from core.clock import Clock
from runner.engine import Engine
from runner.fast_exits import FastExits

log = logging.getLogger("vigil.live")


class RunningStreams:
    def __init__(self, task: asyncio.Task[None] | None, stop: asyncio.Event, exits: Any) -> None:
        self._task = task
        self._stop = stop
        self._exits = exits

    async def stop(self) -> None:
        self._stop.set()
        if self._exits is not None:
            await self._exits.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=10)


def start_streams(parts: Any, engine: Engine, clock: Clock, metrics: Any) -> RunningStreams:
    stop = asyncio.Event()
    stream = parts.stream
    if stream is None:
        log.info("streams off (stream.enabled: false): candles polled over REST every cycle")
        return RunningStreams(None, stop, None)
    exits = None
    if engine.config.stream.fast_exits and parts.prices is not None:  # type: ignore[attr-defined]
        exits = FastExits(engine=engine, now_ms=clock.now_ms, on_exit=metrics.observe_fast_exit)
        parts.prices.target = exits.on_price
    metrics.watch_streams(stream.stats)
    task = asyncio.create_task(_after_start(engine, stream, stop), name="streams")
    return RunningStreams(task, stop, exits)


async def _after_start(engine: Engine, stream: Any, stop: asyncio.Event) -> None:
    """Subscribe once the engine has started (markets loaded, warm-up done): until then the
    exchange may be unreachable, and the start-up retries already say so."""
    while not engine.health.started and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.2)
    if not stop.is_set():
        await stream.run(stop)
