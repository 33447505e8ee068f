"""Runs the WebSocket streams beside the daemon's cycle, and the fast exits they feed.

The stream exists before the engine (it is the engine's candle feed), the fast exits need the
engine: so the stream is handed its price listener when it starts running, not when it is
built, and nobody points one object at another after the fact."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from core.clock import Clock
from core.config import ExitConfig
from infra.streams import StreamFeed
from runner.fast_exits import ExitEngine, FastExits

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


def start_streams(
    stream: StreamFeed | None,
    *,
    exits_to: ExitEngine | None,
    rules: ExitConfig,
    started: Callable[[], bool],
    clock: Clock,
    metrics: Any,
) -> RunningStreams:
    """`exits_to`: the engine the fast exits act on (None: stream.fast_exits is off);
    `started()`: the engine has started, so the streams may subscribe."""
    stop = asyncio.Event()
    if stream is None:
        log.info("streams off (stream.enabled: false): candles polled over REST every cycle")
        return RunningStreams(None, stop, None)
    exits = None
    if exits_to is not None:
        exits = FastExits(
            engine=exits_to, rules=rules, now_ms=clock.now_ms, on_exit=metrics.observe_fast_exit
        )
    metrics.watch_streams(stream.stats)
    on_price = None if exits is None else exits.on_price
    task = asyncio.create_task(_after_start(started, stream, stop, on_price), name="streams")
    return RunningStreams(task, stop, exits)


async def _after_start(
    started: Callable[[], bool], stream: StreamFeed, stop: asyncio.Event, on_price: Any
) -> None:
    """Subscribe once the engine has started (markets loaded, warm-up done): until then the
    exchange may be unreachable, and the start-up retries already say so."""
    while not started() and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.2)
    if not stop.is_set():
        await stream.run(stop, on_price=on_price)
