"""vigil_rate_limit_headroom_ratio reads the limiter at scrape time: spent weight lowers it,
refill raises it again, a 429 pause reads 0; without a limiter there is no series."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from core.clock import SimClock
from infra.metrics_limits import RateLimitMetrics
from infra.ratelimit import Budget, RateLimiter

NAME = "vigil_rate_limit_headroom_ratio"


def value(reg: CollectorRegistry, budget: str) -> float | None:
    return reg.get_sample_value(NAME, {"budget": budget})


def test_headroom_follows_the_limiter() -> None:
    reg = CollectorRegistry()
    metrics = RateLimitMetrics(reg)
    assert value(reg, "weight") is None
    assert f"# TYPE {NAME} gauge" in generate_latest(reg).decode()

    clock = SimClock(1_000_000)
    budgets = {"weight": Budget(100, 60), "orders": Budget(10, 10)}
    limiter = RateLimiter(clock=clock, budgets=budgets)
    metrics.watch(limiter.state)
    assert value(reg, "weight") == 1.0 and value(reg, "orders") == 1.0

    asyncio.run(limiter.acquire({"weight": 50, "orders": 1}))
    assert value(reg, "weight") == 0.5 and value(reg, "orders") == 0.9
    clock.advance(30_000)  # half a minute refills 50 weight
    assert value(reg, "weight") == 1.0

    limiter.penalize(5, ban=False)
    assert value(reg, "weight") == 0.0 and value(reg, "orders") == 0.0
    clock.advance(5_000)
    weight = value(reg, "weight")
    assert weight is not None and 0.1 <= weight < 0.2
