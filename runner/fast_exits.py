"""Fast exits: a streamed price for a held position runs the exit rules at once, between cycles.

The stream calls `FastExits.on_price` for every bookTicker and trade. Cheap in the common case
(the symbol is not held, or no rule fires at this price); when the exit rule fires, one task
per symbol hands it to `Engine.fast_exit`, which takes the engine's lock (so it never
interleaves with a cycle) and runs the cycle's gate, risk check, executor and audit records.
A symbol exited this way is not tried again until the next cycle has reconciled its fills, so
an order that filled at once cannot be followed by a second sell of the same position.
Entries stay on the cycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any, Protocol

from core.config import ExitConfig
from core.exits import evaluate_exit
from core.fast_exit import FastExit
from core.models import CycleDecision, Quote
from core.portfolio import Portfolio
from runner.engine_parts import EngineStatus

log = logging.getLogger("vigil.fast_exits")


class ExitEngine(Protocol):
    """What the fast exits read from the engine, and the one thing they ask of it."""

    @property
    def status(self) -> EngineStatus: ...

    @property
    def portfolio(self) -> Portfolio: ...

    @property
    def last_decision(self) -> CycleDecision | None: ...

    async def fast_exit(
        self, symbol: str, quote: Quote, now_ms: int, high: Decimal | None = None
    ) -> FastExit: ...


class FastExits:
    def __init__(
        self,
        *,
        engine: ExitEngine,
        rules: ExitConfig,
        now_ms: Callable[[], int],
        on_exit: Callable[[float], None] | None = None,
    ) -> None:
        self._engine = engine
        self._rules = rules
        self._now_ms = now_ms
        self._on_exit = on_exit  # seconds from the price's arrival to the order's return
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._fired: dict[str, Any] = {}  # symbol -> engine.last_decision when it fired
        # symbol -> (opened_ms, highest streamed price since): the trailing stop's peak
        # between cycles (the cycle stores peaks only from its own marks)
        self._high: dict[str, tuple[int, Decimal]] = {}
        self.fired = 0

    def on_price(self, symbol: str, quote: Quote) -> None:
        eng = self._engine
        pos = eng.portfolio.positions.get(symbol)
        if pos is None or eng.status is not EngineStatus.STARTED:  # not yet, or stopping
            if pos is None and symbol in self._high:
                del self._high[symbol]
            return
        seen = self._high.get(symbol)
        if seen is None or seen[0] != pos.opened_ms:
            seen = (pos.opened_ms, pos.peak_price)
        if quote.last > seen[1]:
            seen = (pos.opened_ms, quote.last)
        self._high[symbol] = seen
        high = seen[1]
        if symbol in self._busy:
            return
        if symbol in self._fired:
            if self._fired[symbol] is eng.last_decision:
                return  # exited since the last cycle: wait for its fills to be reconciled
            del self._fired[symbol]
        now = self._now_ms()
        # The pure rule first, on the raw price: most prices trigger nothing, and the engine
        # re-checks under its lock with the guarded mark before anything is sent.
        peaked = replace(pos, peak_price=high) if high > pos.peak_price else pos
        if evaluate_exit(peaked, quote.last, now, self._rules) is None:
            return
        self._busy[symbol] = asyncio.get_running_loop().create_task(
            self._run(symbol, quote, now, high, time.perf_counter()), name=f"fast-exit-{symbol}"
        )

    async def _run(self, symbol: str, quote: Quote, now: int, high: Decimal, t0: float) -> None:
        try:
            plan = await self._engine.fast_exit(symbol, quote, now, high)
            if plan.proposal is not None or plan.blocked:
                # tried once (sent, refused or halted): the next cycle takes it from here
                self._fired[symbol] = self._engine.last_decision
            if plan.intents:
                self.fired += 1
                log.warning(
                    "fast exit %s at %s (%s), between cycles",
                    symbol,
                    quote.last,
                    plan.proposal and plan.proposal.reason,
                )
                if self._on_exit is not None:
                    self._on_exit(time.perf_counter() - t0)
        except Exception:  # one bad exit must not take the stream down
            log.exception("fast exit %s failed; the next cycle retries it", symbol)
        finally:
            self._busy.pop(symbol, None)

    async def close(self) -> None:
        tasks = list(self._busy.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
