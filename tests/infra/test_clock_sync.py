import dataclasses
import math

import pytest

from infra.clock_sync import (
    ClockSkew,
    check_clock_skew,
    check_clock_skew_async,
    exchange_offset_ms,
    skew_from_server_time,
)

# Every test injects `query`: the real NTP path is never exercised here (no network in tests).


def offline() -> float:
    raise OSError("Network is unreachable")


def test_small_offset_is_ok() -> None:
    skew = check_clock_skew(lambda: 12.5)
    assert skew == ClockSkew(
        offset_ms=12.5, source="query", ok=True, detail="offset +12.5 ms vs query"
    )
    assert not skew.unknown


def test_result_is_frozen() -> None:
    skew = check_clock_skew(lambda: 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        skew.ok = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("offset", "words"), [(1_500.0, "1500 ms behind"), (-2_000.0, "2000 ms ahead of")]
)
def test_large_offset_is_not_ok_and_says_which_way(offset: float, words: str) -> None:
    skew = check_clock_skew(lambda: offset, source="binance", max_offset_ms=1_000)
    assert skew.offset_ms == offset
    assert skew.source == "binance"
    assert not skew.ok
    assert f"local clock is {words} binance (limit 1000 ms)" in skew.detail


def test_offset_at_the_limit_is_ok() -> None:
    assert check_clock_skew(lambda: -500.0, max_offset_ms=500).ok


def test_unreachable_source_gives_unknown_offset_not_an_exception() -> None:
    skew = check_clock_skew(offline)
    assert skew.offset_ms is None
    assert skew.unknown
    assert not skew.ok
    assert skew.detail == "NTP unreachable: OSError: Network is unreachable"


def test_non_finite_offset_is_unknown() -> None:
    skew = check_clock_skew(lambda: math.nan)
    assert skew.offset_ms is None
    assert not skew.ok
    assert skew.detail.startswith("NTP unreachable: bad offset")


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"timeout_s": 0}, "timeout_s"), ({"max_offset_ms": 0}, "max_offset_ms")]
)
def test_bad_arguments_are_rejected(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_clock_skew(lambda: 0.0, **kwargs)  # type: ignore[arg-type]


async def test_async_wrapper_runs_the_query_off_the_loop() -> None:
    import threading

    loop_thread = threading.get_ident()
    seen: list[int] = []

    def query() -> float:
        seen.append(threading.get_ident())
        return -3.0

    skew = await check_clock_skew_async(query, source="fake")
    assert skew == ClockSkew(
        offset_ms=-3.0, source="fake", ok=True, detail="offset -3.0 ms vs fake"
    )
    assert seen and seen[0] != loop_thread
    unknown = await check_clock_skew_async(offline)
    assert unknown.offset_ms is None and not unknown.ok


def test_skew_from_server_time() -> None:
    # Sent at local 1_000, 100 ms round trip: server stamped at local ~1_050.
    assert skew_from_server_time(server_ms=1_050, local_ms=1_000, rtt_ms=100.0) == 0.0
    # Server says 3_050 at that moment: the local clock is 2 s behind.
    assert skew_from_server_time(server_ms=3_050, local_ms=1_000, rtt_ms=100.0) == 2_000.0
    # Local clock ahead: negative offset.
    assert skew_from_server_time(server_ms=1_000, local_ms=1_500, rtt_ms=0.0) == -500.0


@pytest.mark.parametrize("rtt", [-1.0, math.nan, math.inf])
def test_skew_from_server_time_rejects_bad_rtt(rtt: float) -> None:
    with pytest.raises(ValueError, match="rtt_ms"):
        skew_from_server_time(server_ms=0, local_ms=0, rtt_ms=rtt)


def test_server_skew_composes_with_check() -> None:
    skew = check_clock_skew(
        lambda: skew_from_server_time(server_ms=10_000, local_ms=11_200, rtt_ms=40.0),
        source="binance /api/v3/time",
        max_offset_ms=1_000,
    )
    assert skew.offset_ms == -1_220.0
    assert not skew.ok


async def test_exchange_offset_comes_from_the_quickest_round_trip() -> None:
    """The first request is slow (a new connection: 400 ms, the venue stamping its time at
    the end): alone it would put the clock 200 ms off. Two quick ones follow."""
    local = [1_000_000, 2_000_000, 3_000_000]  # wall clock before each request
    trips = [0.400, 0.002, 0.004]  # seconds each request takes
    true_offset = 10  # the venue's clock runs 10 ms ahead
    stamp_at = [1.0, 0.5, 0.5]  # where within its round trip the venue reads its clock
    mono = [0.0]
    i = [-1]

    def now_ms() -> int:
        i[0] += 1
        return local[i[0]]

    async def fetch_time() -> int:
        k = i[0]
        mono[0] += trips[k]
        return int(local[k] + true_offset + trips[k] * 1000 * stamp_at[k])

    offset = await exchange_offset_ms(fetch_time, now_ms, lambda: mono[0])
    assert offset == pytest.approx(true_offset, abs=1)
    assert i[0] == 2  # three requests
    i[0] = -1
    assert await exchange_offset_ms(fetch_time, now_ms, lambda: mono[0], samples=1) > 190
