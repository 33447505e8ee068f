from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.clock import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    WEEK_MS,
    Clock,
    ClockWentBackwards,
    SimClock,
    day_start_ms,
    timeframe_ms,
    week_start_ms,
)


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


MON_2024_01_01 = utc_ms(2024, 1, 1)


# --------------------------------------------------------------------------- SimClock


def test_sim_clock_satisfies_the_port() -> None:
    clock: Clock = SimClock(5)
    assert clock.now_ms() == 5


def test_sim_clock_starts_where_told_and_defaults_to_epoch() -> None:
    assert SimClock().now_ms() == 0
    assert SimClock(MON_2024_01_01).now_ms() == MON_2024_01_01


def test_sim_clock_refuses_negative_start() -> None:
    with pytest.raises(ValueError, match="start_ms"):
        SimClock(-1)


def test_advance_to_moves_forward_and_allows_standing_still() -> None:
    c = SimClock(1_000)
    c.advance_to(1_000)
    assert c.now_ms() == 1_000
    c.advance_to(61_000)
    assert c.now_ms() == 61_000


def test_advance_to_refuses_going_backwards_and_keeps_time() -> None:
    c = SimClock(10_000)
    with pytest.raises(ClockWentBackwards, match="9999 < 10000"):
        c.advance_to(9_999)
    assert c.now_ms() == 10_000


def test_advance_adds_and_refuses_negative() -> None:
    c = SimClock(100)
    c.advance(0)
    c.advance(50)
    assert c.now_ms() == 150
    with pytest.raises(ClockWentBackwards, match="negative"):
        c.advance(-1)
    assert c.now_ms() == 150


def test_clock_went_backwards_is_a_value_error() -> None:
    assert issubclass(ClockWentBackwards, ValueError)


async def test_sleep_advances_simulated_time_at_once() -> None:
    c = SimClock(1_000)
    await c.sleep(2.5)
    assert c.now_ms() == 3_500
    await c.sleep(0)
    assert c.now_ms() == 3_500
    await c.sleep(0.001)
    assert c.now_ms() == 3_501


async def test_sleep_refuses_negative_duration() -> None:
    c = SimClock(1_000)
    with pytest.raises(ClockWentBackwards):
        await c.sleep(-1)
    assert c.now_ms() == 1_000


# --------------------------------------------------------------------------- timeframes


@pytest.mark.parametrize(
    ("tf", "ms"),
    [
        ("1m", MINUTE_MS),
        ("5m", 5 * MINUTE_MS),
        ("15m", 15 * MINUTE_MS),
        ("1h", HOUR_MS),
        ("4h", 4 * HOUR_MS),
        ("1d", DAY_MS),
        ("1w", WEEK_MS),
        ("90m", 90 * MINUTE_MS),
    ],
)
def test_timeframe_ms_parses(tf: str, ms: int) -> None:
    assert timeframe_ms(tf) == ms


def test_unit_constants() -> None:
    assert (MINUTE_MS, HOUR_MS, DAY_MS, WEEK_MS) == (60_000, 3_600_000, 86_400_000, 604_800_000)


@pytest.mark.parametrize(
    "tf", ["", "m", "5", "0m", "00m", "-1m", "1.5h", "5x", "5M", "1S", " 5m", "5m ", "h1", "5mm"]
)
def test_timeframe_ms_rejects_with_accepted_forms(tf: str) -> None:
    with pytest.raises(ValueError, match=r"bad timeframe .*1s, 1m, 5m, 1h, 1d"):
        timeframe_ms(tf)


@pytest.mark.parametrize("tf", ["²m", "٥m"])
def test_timeframe_ms_rejects_non_ascii_digits_clearly(tf: str) -> None:
    with pytest.raises(ValueError, match="bad timeframe"):
        timeframe_ms(tf)


# --------------------------------------------------------------------------- day / week starts


def test_2024_01_01_is_a_monday() -> None:
    assert datetime.fromtimestamp(MON_2024_01_01 / 1000, tz=UTC).isoweekday() == 1


@pytest.mark.parametrize(
    ("ts", "day"),
    [
        (MON_2024_01_01, MON_2024_01_01),
        (MON_2024_01_01 + 1, MON_2024_01_01),
        (MON_2024_01_01 + DAY_MS - 1, MON_2024_01_01),
        (MON_2024_01_01 + DAY_MS, MON_2024_01_01 + DAY_MS),
        (utc_ms(2024, 2, 29, 23, 59, 59), utc_ms(2024, 2, 29)),
        (0, 0),
    ],
)
def test_day_start_ms(ts: int, day: int) -> None:
    assert day_start_ms(ts) == day


@pytest.mark.parametrize(
    ("ts", "week"),
    [
        (MON_2024_01_01, MON_2024_01_01),  # Monday 00:00 is its own week start
        (MON_2024_01_01 - 1, utc_ms(2023, 12, 25)),  # Sunday 23:59:59.999 belongs to last week
        (utc_ms(2024, 1, 3, 12), MON_2024_01_01),  # Wednesday
        (utc_ms(2024, 1, 7, 23, 59, 59), MON_2024_01_01),  # Sunday
        (utc_ms(2024, 1, 8), utc_ms(2024, 1, 8)),  # next Monday
        (utc_ms(2024, 12, 31, 8), utc_ms(2024, 12, 30)),  # ISO week 1 of 2025 starts in 2024
        (0, utc_ms(1969, 12, 29)),  # the epoch was a Thursday
    ],
)
def test_week_start_ms(ts: int, week: int) -> None:
    assert week_start_ms(ts) == week


def test_week_start_is_always_a_monday_midnight_within_seven_days() -> None:
    for k in range(0, 30 * DAY_MS, 7 * HOUR_MS + 13):
        ts = MON_2024_01_01 + k
        w = week_start_ms(ts)
        assert 0 <= ts - w < WEEK_MS
        assert day_start_ms(w) == w
        assert datetime.fromtimestamp(w / 1000, tz=UTC).isoweekday() == 1
