"""The engine's recent API errors and order rejections: what the API-error and rejections
breakers count, and the per-symbol rejection ban; and the exchange's outages (`Outage`)."""

from __future__ import annotations

import logging
from collections import deque

from core.config import PipelineConfig
from core.errors import ExchangeError

log = logging.getLogger("vigil.engine")

MAX_KEPT = 1000


class ErrorWindows:
    def __init__(self, config: PipelineConfig, window_ms: int) -> None:
        self._config = config
        self._window = window_ms
        self.api_errors: deque[int] = deque(maxlen=MAX_KEPT)
        self.rejections: deque[int] = deque(maxlen=MAX_KEPT)
        self._rejected_by: deque[tuple[int, str]] = deque(maxlen=MAX_KEPT)  # (ts, symbol)

    def api_error(self, ts: int, kind: str = "") -> None:
        # Feeds the API-error breaker, which counts every kind alike (`kind` is there for the
        # executor's and reconciler's callback shape). vigil_api_errors_total is counted per
        # failed request by the venue adapter itself (runner/live.py), retries included.
        self.api_errors.append(ts)

    def rejected(self, ts: int, symbol: str) -> tuple[int | None, str]:
        """An order the venue refused. `breakers.rejection_count` of them on one symbol within
        `breakers.rejection_window_seconds` ban that symbol alone for `universe.ban_minutes`
        (its exits still go), and those rejections stop counting toward the rejections
        breaker, which is for refusals spread over symbols (the account, not one product).
        Returns (ban until, why) when the symbol is to be banned, else (None, "")."""
        b = self._config.breakers
        self.rejections.append(ts)
        self._rejected_by.append((ts, symbol))
        lo = ts - b.rejection_window_seconds * 1000
        mine = sum(1 for t, s in self._rejected_by if s == symbol and t > lo)
        if mine < b.rejection_count:
            return None, ""
        kept = [(t, s) for t, s in self._rejected_by if s != symbol]
        self._rejected_by = deque(kept, maxlen=MAX_KEPT)
        self.rejections = deque((t for t, _ in kept), maxlen=MAX_KEPT)
        until = ts + self._config.universe.ban_minutes * 60_000
        return until, f"{mine} orders rejected in {b.rejection_window_seconds}s"

    def recent_api_errors(self, now_ms: int) -> tuple[int, ...]:
        return self._recent(self.api_errors, now_ms)

    def recent_rejections(self, now_ms: int) -> tuple[int, ...]:
        return self._recent(self.rejections, now_ms)

    def _recent(self, dq: deque[int], now_ms: int) -> tuple[int, ...]:
        if not dq:
            return ()
        lo = now_ms - self._window
        while dq and dq[0] <= lo:
            dq.popleft()
        return tuple(dq)


class Outage:
    """The exchange unreachable (ExchangeUnavailable): during the current cycle (what the
    snapshot's `exchange_down` says) and for how many cycles in a row. Logged once when it
    begins and once when it ends, not every cycle."""

    def __init__(self) -> None:
        self.now = False  # an ExchangeUnavailable happened during this cycle
        self._cycles = 0  # cycles in a row that ended with the exchange unreachable

    def cycle_begins(self) -> None:
        self.now = False

    def unreachable(self, exc: ExchangeError) -> None:
        if not self.now and not self._cycles:
            log.error(
                "exchange unreachable (%s: %s); trading nothing, retrying every cycle",
                type(exc).__name__,
                " ".join(str(exc).split())[:200],
            )
        self.now = True

    def cycle_ends(self) -> None:
        if self.now:
            self._cycles += 1
        elif self._cycles:
            log.warning("exchange reachable again after %d cycle(s)", self._cycles)
            self._cycles = 0
