"""The clock-drift guard of the daemon (PAPER, LIVE, DRY_RUN on a real venue; a replay runs
on simulated time and has nothing to check).

Signed requests carry the host's time and an exchange refuses them when it is off; candle
timing and order TTLs are off with it. The offset is measured against the exchange's own
server time (through the adapter, one request) and against NTP when a server answers within
`clock.ntp_timeout_seconds`; the larger known offset counts. At start LIVE refuses to trade
above `clock.max_offset_ms` (exit 7); while running, an offset above it puts trading exits
only until a later check finds it back within the limit. An offset that cannot be measured
(exchange and NTP both unreachable) is reported, never treated as good or bad.

The watch owns its last result (`status`, what /health shows under "clock"); it acts on the
engine only through the exits-only causes it is handed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.clock import Clock
from core.errors import ExchangeError
from infra.clock_sync import (
    ClockSettings,
    ClockSkew,
    ClockSkewed,
    ClockStatus,
    check_clock_skew_async,
    exchange_offset_ms,
)
from runner.exits_only import ExitsOnly

log = logging.getLogger("vigil.clock")

CAUSE = "clock_skew"
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ClockReading:
    """One measurement: each source's result and the verdict over them."""

    skews: tuple[ClockSkew, ...]
    offset_ms: float | None  # the largest known offset by magnitude; None: none known
    ok: bool  # no known offset above the limit
    detail: str


class ClockWatch:
    def __init__(
        self,
        *,
        settings: ClockSettings,
        clock: Clock,
        exits_only: ExitsOnly,
        fetch_time: Callable[[], Awaitable[int]] | None,
        exchange: str,
        on_reading: Callable[[ClockReading], None] = lambda r: None,
    ) -> None:
        """`on_reading(reading)` runs after each measurement has been acted on."""
        self._cfg = settings
        self._clock = clock
        self._exits_only = exits_only
        self._fetch_time = fetch_time
        self._exchange = exchange
        self._on_reading = on_reading
        self._last_ms: int | None = None
        self.last: ClockReading | None = None
        self.status = ClockStatus()

    async def _exchange_skew(self) -> ClockSkew | None:
        if self._fetch_time is None:
            return None
        fetch = self._fetch_time

        def off() -> Awaitable[float]:
            return exchange_offset_ms(fetch, self._clock.now_ms)

        try:
            offset = await asyncio.wait_for(off(), FETCH_TIMEOUT_S)
        except (ExchangeError, TimeoutError) as exc:
            return ClockSkew(None, self._exchange, False, f"server time unknown: {exc}"[:200])
        return _judge(offset, self._exchange, self._cfg.max_offset_ms)

    async def _ntp_skew(self) -> ClockSkew:
        """NTP in a worker thread, bounded as a whole: a host without network may spend far
        longer resolving a name than the per-request timeout, and start-up must not wait."""
        servers = self._cfg.ntp_servers
        budget = self._cfg.ntp_timeout_seconds * len(servers) + 1.0
        try:
            return await asyncio.wait_for(
                check_clock_skew_async(
                    servers=servers,
                    timeout_s=self._cfg.ntp_timeout_seconds,
                    max_offset_ms=self._cfg.max_offset_ms,
                ),
                budget,
            )
        except TimeoutError:
            label = ",".join(servers)
            return ClockSkew(None, label, False, f"NTP unreachable: no answer in {budget:.0f}s")

    async def measure(self) -> ClockReading:
        skews = []
        ex = await self._exchange_skew()
        if ex is not None:
            skews.append(ex)
        if self._cfg.ntp_servers:
            skews.append(await self._ntp_skew())
        reading = _verdict(tuple(skews), self._cfg.max_offset_ms)
        self.last = reading
        self.status = ClockStatus(
            reading.offset_ms, reading.ok, reading.detail, self._clock.now_ms()
        )
        return reading

    async def at_start(self, *, refuse: bool) -> ClockReading:
        """Measure once before trading. `refuse` (LIVE): raise ClockSkewed above the limit."""
        reading = await self.measure()
        self._last_ms = self._clock.now_ms()
        if not reading.ok:
            if refuse:
                raise ClockSkewed(
                    f"{reading.detail}; LIVE does not start with a clock this far off. Fix "
                    "time sync on the host (chronyc tracking / timedatectl), then start again"
                )
            log.error("clock: %s; trading exits only until it is fixed", reading.detail)
            self._exits_only.set(CAUSE, reading.detail, self._clock.now_ms())
        else:
            log.info("clock: %s", reading.detail)
        self._on_reading(reading)
        return reading

    async def check(self, now_ms: int) -> None:
        """At a cycle start: measure again once `check_interval_seconds` have passed."""
        interval_ms = self._cfg.check_interval_seconds * 1000
        if self._last_ms is not None and now_ms - self._last_ms < interval_ms:
            return
        self._last_ms = now_ms
        reading = await self.measure()
        if not reading.ok:
            self._exits_only.set(CAUSE, reading.detail, now_ms)
        elif CAUSE in self._exits_only:
            self._exits_only.clear(CAUSE, now_ms)
        self._on_reading(reading)


def _judge(offset: float, source: str, limit: float) -> ClockSkew:
    if abs(offset) > limit:
        way = "behind" if offset > 0 else "ahead of"
        return ClockSkew(
            offset,
            source,
            False,
            f"host clock is {abs(offset):.0f} ms {way} {source} (limit {limit:.0f} ms)",
        )
    return ClockSkew(offset, source, True, f"offset {offset:+.1f} ms vs {source}")


def _verdict(skews: tuple[ClockSkew, ...], limit: float) -> ClockReading:
    known = [s for s in skews if s.offset_ms is not None]
    if not known:
        detail = "; ".join(s.detail for s in skews) or "no time source configured"
        return ClockReading(skews, None, True, f"offset unknown ({detail})")
    worst = max(known, key=lambda s: abs(s.offset_ms or 0.0))
    bad = [s for s in known if abs(s.offset_ms or 0.0) > limit]
    detail = "; ".join(s.detail for s in (bad or known))
    return ClockReading(skews, worst.offset_ms, not bad, detail)
