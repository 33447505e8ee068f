import asyncio
import math

import pytest

from core.clock import Clock, ClockWentBackwards
from infra.clock import LiveClock, ReplayClock


def test_live_clock_is_a_clock_in_epoch_ms() -> None:
    clock: Clock = LiveClock()
    now = clock.now_ms()
    assert isinstance(now, int)
    # 2020-01-01 .. 2100-01-01: milliseconds, not seconds or nanoseconds.
    assert 1_577_836_800_000 < now < 4_102_444_800_000


def test_live_clock_never_goes_backwards_between_reads() -> None:
    clock = LiveClock()
    readings = [clock.now_ms() for _ in range(1000)]
    assert readings == sorted(readings)
    monos = [clock.monotonic() for _ in range(1000)]
    assert monos == sorted(monos)


async def test_live_clock_sleep_yields_to_other_tasks() -> None:
    clock = LiveClock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await clock.sleep(0)
    await clock.sleep(-1.0)  # jitter arithmetic may go negative: treated as zero
    assert ran == ["other"]
    await task


@pytest.mark.parametrize("speed", [0, -1, math.nan, math.inf, "fast"])
def test_replay_clock_rejects_bad_speed(speed: object) -> None:
    with pytest.raises(ValueError, match="speed must be a positive finite number"):
        ReplayClock(0, speed)  # type: ignore[arg-type]


def test_replay_clock_rejects_negative_start() -> None:
    with pytest.raises(ValueError, match="start_ms"):
        ReplayClock(-1, 1.0)


def test_replay_clock_advance_to_and_refuses_going_backwards() -> None:
    clock = ReplayClock(1_000, speed=10.0)
    assert clock.now_ms() == 1_000
    clock.advance_to(1_000)
    clock.advance_to(5_000)
    assert clock.now_ms() == 5_000
    with pytest.raises(ClockWentBackwards, match="4999 < 5000"):
        clock.advance_to(4_999)
    assert clock.now_ms() == 5_000


async def test_replay_clock_sleep_advances_simulated_time() -> None:
    clock: Clock = ReplayClock(60_000, speed=1e9)
    await clock.sleep(30)
    assert clock.now_ms() == 90_000
    await clock.sleep(0.25)
    assert clock.now_ms() == 90_250
    await clock.sleep(-5)
    assert clock.now_ms() == 90_250


async def test_replay_clock_high_speed_still_yields_to_the_loop() -> None:
    clock = ReplayClock(0, speed=1e9)
    ticks = 0

    async def counter() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(counter())
    for _ in range(10):
        await clock.sleep(3600)
    task.cancel()
    assert ticks >= 9
    assert clock.now_ms() == 36_000_000


async def test_replay_clock_sleep_does_not_overshoot_a_feed_that_moved_on() -> None:
    clock = ReplayClock(0, speed=1e6)

    async def feed() -> None:
        clock.advance_to(10_000)

    task = asyncio.create_task(feed())
    await clock.sleep(1)  # wake-up time 1_000 is already in the past
    await task
    assert clock.now_ms() == 10_000
    await clock.sleep(1)
    assert clock.now_ms() == 11_000


async def test_replay_clock_time_is_monotonic_across_sleeps_and_feed() -> None:
    clock = ReplayClock(0, speed=1e9)
    seen = [clock.now_ms()]
    for i in range(1, 50):
        if i % 3 == 0:
            clock.advance_to(clock.now_ms() + 7)
        else:
            await clock.sleep(0.5)
        seen.append(clock.now_ms())
    assert seen == sorted(seen)
    assert seen[-1] == 33 * 500 + 16 * 7
