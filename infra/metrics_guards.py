"""Metrics of the daemon's own guards: failed cycles, exits-only orders and clock drift.
Registered on the daemon's registry by `infra.metrics.Metrics` (see docs/metrics.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from infra.metrics_labels import _Family

# The causes runner code puts trading exits only for (runner/cycle_guard.py, clock_watch.py).
EXITS_ONLY_CAUSES = ("cycle_errors", "clock_skew")


class GuardMetrics:
    def __init__(self, registry: CollectorRegistry, *, cap: int) -> None:
        self.cycle_errors = _Family(
            Counter(
                "vigil_cycle_errors",
                "Cycles that raised an unexpected exception, by exception class.",
                ["kind"],
                registry=registry,
            ),
            cap=cap,
        )
        self.exits_only = _Family(
            Gauge(
                "vigil_exits_only",
                "1 while a runner guard keeps trading exits only, by cause "
                "(cycle_errors, clock_skew).",
                ["cause"],
                registry=registry,
            ),
            cap=cap,
            known=EXITS_ONLY_CAUSES,
        )
        self.clock_offset = Gauge(
            "vigil_clock_offset_seconds",
            "Largest measured offset of the host clock from the exchange / NTP (reference - "
            "host; positive: the host is behind). NaN until measured or when unknown.",
            registry=registry,
        )
        self.clock_offset.set(math.nan)
        self.clock_checks = Counter(
            "vigil_clock_checks",
            "Clock-drift checks, by result (ok, too_far, unknown).",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "too_far", "unknown"):
            self.clock_checks.labels(result)

    def set_exits_only(self, causes: Mapping[str, str]) -> None:
        child = self.exits_only.child
        for cause in EXITS_ONLY_CAUSES:
            child(cause).set(1 if cause in causes else 0)
        for cause in causes:
            if cause not in EXITS_ONLY_CAUSES:
                child(cause).set(1)

    def clock_reading(self, offset_ms: float | None, ok: bool) -> None:
        self.clock_offset.set(math.nan if offset_ms is None else offset_ms / 1000.0)
        result = "unknown" if offset_ms is None else "ok" if ok else "too_far"
        self.clock_checks.labels(result).inc()
