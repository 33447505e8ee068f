"""The daemon's guards around the engine: the cycle boundary (runner/cycle_guard.py), the
clock-drift check (runner/clock_watch.py) and the one test hook. They act on the engine only
through the `GuardControl` it hands out (exits only, the halt, audit records, telemetry).

VIGIL_TEST_FAULT=cycle makes every cycle raise a RuntimeError at its start, so the
integration tests can show from outside that failing cycles are recorded, alerted and latch
a halt while the process stays up. It is read from the environment only, logged loudly and
written to the config_loaded audit record when set; all it can do is stop trading. Any other
value is refused at start-up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from core.clock import Clock
from core.errors import ConfigError
from infra.clock_sync import ClockSkewed, ClockStatus
from infra.settings import Mode, VigilConfig
from runner.clock_watch import ClockReading, ClockWatch
from runner.cycle_guard import CycleGuard, GuardControl

log = logging.getLogger("vigil.guards")

TEST_FAULT_ENV = "VIGIL_TEST_FAULT"
TEST_FAULTS = ("cycle",)


def fault_from_env(env: Mapping[str, str]) -> str:
    """The test fault named in the environment ("" when none); ConfigError on a typo."""
    value = env.get(TEST_FAULT_ENV, "").strip()
    if value and value not in TEST_FAULTS:
        raise ConfigError(
            f"env {TEST_FAULT_ENV}={value!r}: unknown test fault; the only one is "
            f"{', '.join(TEST_FAULTS)} (unset it in production)"
        )
    return value


class InjectedFault(RuntimeError):
    """Raised by the VIGIL_TEST_FAULT hook; never by anything else."""


class Guards:
    def __init__(
        self,
        *,
        control: GuardControl,
        config: VigilConfig,
        clock: Clock,
        scrub: Callable[[str], str],
        fetch_time: Callable[[], Awaitable[int]] | None = None,
        exchange: str = "",
        on_clock: Callable[[ClockReading], None] = lambda r: None,
        on_change: Callable[[], None] = lambda: None,
        env: Mapping[str, str] | None = None,
        check_clock: bool = True,
    ) -> None:
        self._record = control.record
        self.cycle = CycleGuard(
            control=control, limit=config.loop.max_cycle_errors, scrub=scrub, on_change=on_change
        )
        self._refuse_skew = config.mode is Mode.LIVE

        def after_reading(reading: ClockReading) -> None:
            on_clock(reading)
            on_change()  # the exits-only gauge follows at once, not at the cycle's end

        self.clock = (
            None
            if not check_clock or (fetch_time is None and not config.clock.ntp_servers)
            else ClockWatch(
                settings=config.clock,
                clock=clock,
                exits_only=control.exits_only,
                fetch_time=fetch_time,
                exchange=exchange,
                on_reading=after_reading,
            )
        )
        self.fault = fault_from_env(os.environ if env is None else env)
        if self.fault:
            log.warning(
                "%s=%s: every cycle fails on purpose (test hook)", TEST_FAULT_ENV, self.fault
            )

    def clock_status(self) -> ClockStatus | None:
        """The clock check's last result for /health; None when the clock is not checked."""
        return None if self.clock is None else self.clock.status

    def describe(self) -> dict[str, Any]:
        """For the config_loaded audit record."""
        return {"test_fault": self.fault} if self.fault else {}

    async def at_start(self) -> None:
        """Before the first cycle (the exchange is reachable by now)."""
        if self.clock is None:
            return
        try:
            await self.clock.at_start(refuse=self._refuse_skew)
        except ClockSkewed as exc:
            self._record("clock_refused", {"detail": str(exc)}, sync=True)
            raise

    async def before_cycle(self, now_ms: int) -> None:
        if self.clock is not None:
            await self.clock.check(now_ms)
        if self.fault == "cycle":
            raise InjectedFault(f"{TEST_FAULT_ENV}=cycle: injected failure at {now_ms}")
