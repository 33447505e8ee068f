"""Rate-limit headroom: how much of each client-side budget (infra/ratelimit.py) is left.
Registered on the daemon's registry by `infra.metrics.Metrics` (see docs/metrics.md).

The value is read from the limiter when Prometheus scrapes, not stored when a request goes
out: a bucket refills continuously, so a value kept from the last request would show an idle
daemon as still busy. A replay has no exchange and no limiter: the family is declared with no
series."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from infra.ratelimit import RateLimiterState


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.headroom = Gauge(
            "vigil_rate_limit_headroom_ratio",
            "Share of each client-side rate-limit budget left, 0..1 (weight: "
            "exchange.weight_per_minute, orders: exchange.orders_per_10s); 0 while a 429 "
            "Retry-After or a 418 ban pauses every request. The limiter slows requests "
            "below 0.2 and pauses them below 0.1.",
            ["budget"],
            registry=registry,
        )

    def watch(self, state: Callable[[], RateLimiterState]) -> None:
        """Read `state()` (the exchange adapter's limiter) at every scrape, one series per
        budget it has."""
        for budget in state().used:
            self.headroom.labels(budget).set_function(_reader(state, budget))


def _reader(state: Callable[[], RateLimiterState], budget: str) -> Callable[[], float]:
    return lambda: headroom(state(), budget)


def headroom(state: RateLimiterState, budget: str) -> float:
    if state.paused_until_ms:
        return 0.0
    return min(1.0, max(0.0, 1.0 - state.used.get(budget, 1.0)))
