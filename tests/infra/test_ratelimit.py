"""The rate limiter: thresholds, pauses, Retry-After, 418 bans and the venue's weight header."""

from __future__ import annotations

import asyncio

import pytest

from core.clock import SimClock
from infra.ratelimit import Budget, RateLimiter, TokenBucket

START = 1_700_000_000_000


def limiter(clock: SimClock, **budgets: Budget) -> RateLimiter:
    if not budgets:
        # 100 units per 100 s: one unit refills per second, so delays are easy to read.
        budgets = {"weight": Budget(capacity=100, per_seconds=100)}
    return RateLimiter(clock=clock, budgets=budgets, sleep=clock.sleep)


async def test_below_80_percent_goes_at_once() -> None:
    clock = SimClock(START)
    rl = limiter(clock)
    for _ in range(79):
        await rl.acquire("weight")
    assert clock.now_ms() == START
    assert rl.state().used["weight"] == pytest.approx(0.79)


async def test_between_80_and_90_percent_slows_down_proportionally() -> None:
    clock = SimClock(START)
    rl = limiter(clock)
    await rl.acquire("weight", 80)
    assert clock.now_ms() == START  # exactly 80% after the request: still free

    await rl.acquire("weight")  # lands at 81%: a tenth of the way to the pause line
    assert clock.now_ms() - START == 100  # 0.1 of the 1 s it takes to refill one unit

    clock2 = SimClock(START)
    rl2 = limiter(clock2)
    rl2.observe_headers({"X-MBX-USED-WEIGHT-1M": "84"})
    await rl2.acquire("weight")  # lands at 85%: half way, half of a refill interval
    assert clock2.now_ms() - START == 500


async def test_sustained_load_converges_to_the_refill_rate_without_pausing() -> None:
    clock = SimClock(START)
    rl = limiter(clock)
    peak = 0.0
    stamps = []
    for _ in range(600):
        await rl.acquire("weight")
        stamps.append(clock.now_ms())
        peak = max(peak, rl.state().used["weight"])
    assert peak < 0.9  # never reached the pause line
    # Over the last 200 requests, one request per refill interval (1 s) within 2%.
    span_s = (stamps[-1] - stamps[-201]) / 1000
    assert span_s == pytest.approx(200, rel=0.02)


async def test_at_90_percent_pauses_until_back_under_80() -> None:
    clock = SimClock(START)
    rl = limiter(clock)
    rl.observe_headers({"X-MBX-USED-WEIGHT-1M": "90"})
    await rl.acquire("weight")
    # 90 used + 1 requested must drop to 80: 11 units at one unit per second.
    assert clock.now_ms() - START == 11_000
    assert rl.state().used["weight"] == pytest.approx(0.80)


async def test_heavy_request_that_would_cross_90_waits() -> None:
    clock = SimClock(START)
    rl = limiter(clock)
    await rl.acquire("weight", 50)
    await rl.acquire("weight", 45)  # would land at 95%: wait until 50 + 45 <= 80 -> 15 s
    assert clock.now_ms() - START == 15_000
    assert rl.state().used["weight"] == pytest.approx(0.80)


async def test_budgets_are_independent_and_multi_key_requests_charge_each() -> None:
    clock = SimClock(START)
    rl = limiter(
        clock,
        weight=Budget(capacity=1200, per_seconds=60),
        orders=Budget(capacity=10, per_seconds=10),
    )
    await rl.acquire({"weight": 1, "orders": 1})
    await rl.acquire(["weight", "orders"], 2)
    used = rl.state().used
    assert used["weight"] == pytest.approx(3 / 1200)
    assert used["orders"] == pytest.approx(0.3)
    for _ in range(5):
        await rl.acquire("orders")
    assert clock.now_ms() == START  # 8 of 10: still below 80%
    await rl.acquire("orders")  # 9 of 10 is at the pause line
    assert clock.now_ms() > START
    assert rl.state().used["weight"] < 0.01  # the weight budget was never the bottleneck


async def test_retry_after_blocks_every_key_until_it_passes() -> None:
    clock = SimClock(START)
    rl = limiter(
        clock,
        weight=Budget(capacity=1200, per_seconds=60),
        orders=Budget(capacity=50, per_seconds=10),
    )
    assert rl.penalize(30, ban=False) == 30
    assert rl.state().paused_until_ms == START + 30_000
    await rl.acquire("orders")
    assert clock.now_ms() >= START + 30_000
    t = clock.now_ms()
    await rl.acquire("weight")
    assert clock.now_ms() >= t
    assert rl.state().paused_until_ms == 0  # over


async def test_retry_after_missing_uses_the_default_and_never_shortens_a_pause() -> None:
    clock = SimClock(START)
    rl = limiter(clock)
    rl.penalize(60, ban=False)
    rl.penalize(None, ban=False)  # default 1 s must not cut the 60 s short
    assert rl.paused_until_ms == START + 60_000
    rl.penalize(float("nan"), ban=False)
    assert rl.paused_until_ms == START + 60_000


async def test_ban_backs_off_hard_and_doubles_within_the_hour() -> None:
    clock = SimClock(START)
    rl = RateLimiter(
        clock=clock, budgets={"weight": Budget(1200, 60)}, sleep=clock.sleep, ban_min_s=120
    )
    assert rl.penalize(None, ban=True) == 120
    await rl.acquire("weight")
    assert clock.now_ms() >= START + 120_000
    assert rl.penalize(None, ban=True) == 240
    assert rl.penalize(10, ban=True) == 480  # a short Retry-After does not shorten a ban
    assert rl.state().bans_in_memory == 3
    clock.advance(2 * 3_600_000)  # an hour with no ban: back to the minimum
    assert rl.penalize(None, ban=True) == 120
    assert rl.penalize(7_200, ban=True) == 7_200  # a longer Retry-After always wins


async def test_ban_backoff_is_capped() -> None:
    clock = SimClock(START)
    rl = RateLimiter(clock=clock, budgets={"w": Budget(10, 1)}, ban_min_s=120, ban_max_s=600)
    pauses = [rl.penalize(None, ban=True) for _ in range(6)]
    assert pauses == [120, 240, 480, 600, 600, 600]


async def test_weight_header_is_the_truth_when_above_our_count() -> None:
    clock = SimClock(START)
    rl = limiter(clock, weight=Budget(capacity=1200, per_seconds=60))
    await rl.acquire("weight", 10)
    rl.observe_headers({"X-MBX-USED-WEIGHT-1M": "600"})
    assert rl.state().used["weight"] == pytest.approx(0.5)
    rl.observe_headers({"x-mbx-used-weight-1m": "100"})  # lower than ours: ignored
    assert rl.state().used["weight"] == pytest.approx(0.5)
    rl.observe_headers({"X-MBX-USED-WEIGHT-1m": "1000"})
    assert rl.state().used["weight"] == pytest.approx(1000 / 1200)
    rl.observe_headers({"X-MBX-USED-WEIGHT-1M": "garbage", "Content-Type": "x"})
    rl.observe_headers(None)
    assert rl.state().used["weight"] == pytest.approx(1000 / 1200)
    await rl.acquire("weight")  # 1001/1200 is past 80%: slowed
    assert clock.now_ms() > START


async def test_penalty_arriving_while_a_request_waits_is_honoured() -> None:
    clock = SimClock(START)

    async def yielding_sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        await asyncio.sleep(0)  # let the other task run, as a real sleep would

    rl = RateLimiter(clock=clock, budgets={"weight": Budget(100, 100)}, sleep=yielding_sleep)
    rl.observe_headers({"x-mbx-used-weight-1m": "95"})
    waiter = asyncio.create_task(rl.acquire("weight"))
    await asyncio.sleep(0)  # the waiter computes its 16 s pause and sleeps
    assert clock.now_ms() == START + 16_000
    rl.penalize(500, ban=False)  # a 429 elsewhere while it waits
    await waiter
    assert clock.now_ms() >= START + 516_000


async def test_state_reports_fractions_pause_and_throttling() -> None:
    clock = SimClock(START)
    rl = limiter(clock)
    await rl.acquire("weight", 85)
    state = rl.state()
    assert state.used == {"weight": pytest.approx(0.85)}
    assert state.paused_until_ms == 0
    assert state.throttled_ms["weight"] > 0


def test_bad_configuration_and_requests_are_refused_with_reasons() -> None:
    clock = SimClock(START)
    with pytest.raises(ValueError, match="positive"):
        Budget(capacity=0, per_seconds=60)
    with pytest.raises(ValueError, match="at least one budget"):
        RateLimiter(clock=clock, budgets={})
    rl = limiter(clock)
    with pytest.raises(ValueError, match="unknown rate-limit budget 'orders'"):
        asyncio.run(rl.acquire("orders"))
    with pytest.raises(ValueError, match="exceeds the whole"):
        asyncio.run(rl.acquire("weight", 101))
    with pytest.raises(ValueError, match=">= 0"):
        asyncio.run(rl.acquire("weight", -1))


def test_token_bucket_refills_with_time_and_never_goes_negative() -> None:
    bucket = TokenBucket(Budget(capacity=60, per_seconds=60), now_ms=0)
    bucket.take(30, now_ms=0)
    assert bucket.used_fraction(10_000) == pytest.approx(20 / 60)
    assert bucket.used_fraction(100_000) == 0
    bucket.sync_used(1_000, now_ms=100_000)  # capped at capacity
    assert bucket.used_fraction(100_000) == 1
    assert bucket.delay_s(1, 100_000, slowed=False) == pytest.approx(13)  # 60 + 1 -> 48
