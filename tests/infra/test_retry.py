"""Backoff with full jitter, retry classification, and order submission that never doubles."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from core.clock import SimClock
from core.errors import (
    BadResponse,
    DuplicateOrder,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    IpBanned,
    OrderNotFound,
    RateLimited,
    RequestTimeout,
)
from infra.retry import (
    ConnectFailed,
    RetryPolicy,
    SendOutcome,
    call_with_retries,
    classify_send,
    submit_idempotent,
)

POLICY = RetryPolicy(max_attempts=5, base_s=0.5, cap_s=30.0)


class Sleeps:
    """Records every sleep and moves a SimClock, so nothing really waits."""

    def __init__(self) -> None:
        self.clock = SimClock(0)
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await self.clock.sleep(seconds)


def test_backoff_is_full_jitter_within_the_capped_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        samples = [POLICY.backoff(attempt, rng) for _ in range(300)]
        assert all(0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(samples) < 0.1 * ceiling
        assert max(samples) > 0.9 * ceiling
    assert POLICY.ceiling(100) == 30.0
    assert POLICY.ceiling(10_000) == 30.0


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    a = [POLICY.backoff(i, random.Random(3)) for i in range(6)]
    b = [POLICY.backoff(i, random.Random(3)) for i in range(6)]
    assert a == b


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_s <= cap_s"):
        RetryPolicy(base_s=5, cap_s=1)


async def test_retryable_errors_are_retried_until_success() -> None:
    sleeps = Sleeps()
    errors = [ExchangeUnavailable("502"), BadResponse("garbled"), RequestTimeout("slow")]
    seen: list[tuple[int, str, float]] = []

    async def fn() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    result = await call_with_retries(
        fn,
        policy=POLICY,
        rng=random.Random(1),
        sleep=sleeps,
        on_retry=lambda n, e, d: seen.append((n, type(e).__name__, d)),
    )
    assert result == "ok"
    assert [s[:2] for s in seen] == [
        (1, "ExchangeUnavailable"),
        (2, "BadResponse"),
        (3, "RequestTimeout"),
    ]
    assert sleeps.calls == [s[2] for s in seen]


@pytest.mark.parametrize(
    "error",
    [InvalidOrder("LOT_SIZE"), InsufficientFunds("-2010"), IpBanned("418"), KeyError("bug")],
)
async def test_non_retryable_errors_are_raised_at_once(error: BaseException) -> None:
    sleeps = Sleeps()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await call_with_retries(fn, policy=POLICY, rng=random.Random(1), sleep=sleeps)
    assert calls == 1
    assert sleeps.calls == []


async def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    sleeps = Sleeps()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise ExchangeUnavailable(f"down #{calls}")

    with pytest.raises(ExchangeUnavailable, match="down #5"):
        await call_with_retries(fn, policy=POLICY, rng=random.Random(1), sleep=sleeps)
    assert calls == 5
    assert len(sleeps.calls) == 4
    assert all(s <= min(30.0, 0.5 * 2**i) for i, s in enumerate(sleeps.calls))


async def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    sleeps = Sleeps()
    errors = [RateLimited("429", retry_after_s=42.0)]

    async def fn() -> int:
        if errors:
            raise errors.pop(0)
        return 1

    assert await call_with_retries(fn, policy=POLICY, rng=random.Random(1), sleep=sleeps) == 1
    assert sleeps.calls == [42.0]


# -- submit_idempotent ---------------------------------------------------------------------


@dataclass
class FakeVenue:
    """An exchange that can lose answers, hide new orders for a while, and refuse duplicates."""

    send_script: list[BaseException | None] = field(default_factory=list)  # None = accept
    creates_before_failing: set[int] = field(default_factory=set)  # send numbers that land
    invisible_lookups: int = 0  # lookups that miss an order that exists
    lookup_errors: list[BaseException] = field(default_factory=list)
    orders: dict[str, str] = field(default_factory=dict)
    sends: int = 0
    lookups: int = 0

    async def send(self) -> str:
        self.sends += 1
        if "cid" in self.orders:
            raise DuplicateOrder("client order id in use")
        outcome = self.send_script.pop(0) if self.send_script else None
        if outcome is None or self.sends in self.creates_before_failing:
            self.orders["cid"] = f"order from send {self.sends}"
        if outcome is not None:
            raise outcome
        return self.orders["cid"]

    async def lookup(self) -> str:
        self.lookups += 1
        if self.lookup_errors:
            raise self.lookup_errors.pop(0)
        if "cid" not in self.orders or self.invisible_lookups > 0:
            self.invisible_lookups -= 1
            raise OrderNotFound("cid")
        return self.orders["cid"]


async def submit(venue: FakeVenue, sleeps: Sleeps, notes: list[str] | None = None) -> str:
    return await submit_idempotent(
        venue.send,
        venue.lookup,
        policy=POLICY,
        rng=random.Random(5),
        sleep=sleeps,
        note=notes.append if notes is not None else None,
    )


async def test_plain_success_sends_once_and_never_looks_up() -> None:
    venue = FakeVenue()
    assert await submit(venue, Sleeps()) == "order from send 1"
    assert (venue.sends, venue.lookups) == (1, 0)


async def test_timeout_after_the_order_landed_is_found_and_not_resent() -> None:
    venue = FakeVenue(send_script=[RequestTimeout("no answer")], creates_before_failing={1})
    notes: list[str] = []
    assert await submit(venue, Sleeps(), notes) == "order from send 1"
    assert venue.sends == 1
    assert venue.lookups == 1
    assert len(venue.orders) == 1
    assert any("not resending" in n for n in notes)


async def test_not_sent_and_not_found_is_resent() -> None:
    venue = FakeVenue(send_script=[ConnectFailed("connection refused")])
    assert await submit(venue, Sleeps()) == "order from send 2"
    assert venue.sends == 2
    assert venue.lookups == 1  # asked once, then resent without waiting for confirmations


async def test_unknown_outcome_looks_up_several_times_before_resending() -> None:
    venue = FakeVenue(send_script=[ExchangeUnavailable("502 Bad Gateway")])
    sleeps = Sleeps()
    assert await submit(venue, sleeps) == "order from send 2"
    assert venue.sends == 2
    assert venue.lookups == 3  # three "not found" answers in a row before the resend
    assert len(sleeps.calls) == 3  # two between lookups, one before the resend


async def test_unknown_outcome_order_that_shows_up_late_is_not_resent() -> None:
    venue = FakeVenue(
        send_script=[RequestTimeout("lost")], creates_before_failing={1}, invisible_lookups=2
    )
    assert await submit(venue, Sleeps()) == "order from send 1"
    assert venue.sends == 1
    assert venue.lookups == 3


async def test_duplicate_on_resend_means_it_exists_and_is_fetched() -> None:
    # The lost order stays invisible to three lookups, so the resend goes out; the venue
    # refuses the reused id, and the order is then fetched instead of created twice.
    venue = FakeVenue(
        send_script=[RequestTimeout("lost")], creates_before_failing={1}, invisible_lookups=3
    )
    notes: list[str] = []
    assert await submit(venue, Sleeps(), notes) == "order from send 1"
    assert venue.sends == 2
    assert len(venue.orders) == 1
    assert any("in use" in n for n in notes)


async def test_duplicate_on_first_send_fetches_the_existing_order() -> None:
    venue = FakeVenue(orders={"cid": "placed before a restart"})
    assert await submit(venue, Sleeps()) == "placed before a restart"
    assert venue.sends == 1


async def test_duplicate_that_never_becomes_visible_is_raised_not_resent() -> None:
    venue = FakeVenue(orders={"cid": "hidden"}, invisible_lookups=100)
    with pytest.raises(OrderNotFound):
        await submit(venue, Sleeps())
    assert venue.sends == 1
    assert venue.lookups == POLICY.max_attempts


async def test_unknown_outcome_with_lookups_failing_raises_without_resending() -> None:
    venue = FakeVenue(
        send_script=[RequestTimeout("lost")],
        lookup_errors=[ExchangeUnavailable("down")] * 20,
    )
    with pytest.raises(RequestTimeout, match="lost"):
        await submit(venue, Sleeps())
    assert venue.sends == 1


async def test_rejections_are_raised_without_lookup() -> None:
    venue = FakeVenue(send_script=[InsufficientFunds("-2010")])
    with pytest.raises(InsufficientFunds):
        await submit(venue, Sleeps())
    assert (venue.sends, venue.lookups) == (1, 0)


async def test_rate_limited_send_is_resent_after_retry_after_without_lookup() -> None:
    venue = FakeVenue(send_script=[RateLimited("429", retry_after_s=12.0)])
    sleeps = Sleeps()
    assert await submit(venue, sleeps) == "order from send 2"
    assert venue.lookups == 0
    assert sleeps.calls[0] >= 12.0


async def test_sends_stop_at_max_attempts() -> None:
    venue = FakeVenue(send_script=[ConnectFailed(f"refused {i}") for i in range(10)])
    with pytest.raises(ConnectFailed, match="refused 4"):
        await submit(venue, Sleeps())
    assert venue.sends == POLICY.max_attempts
    assert venue.orders == {}


async def test_raw_connection_refused_counts_as_not_sent() -> None:
    venue = FakeVenue(send_script=[ConnectionRefusedError(111, "refused")])
    assert await submit(venue, Sleeps()) == "order from send 2"
    assert venue.lookups == 1


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ConnectFailed("refused"), SendOutcome.NOT_SENT),
        (RequestTimeout("slow"), SendOutcome.UNKNOWN),
        (ExchangeUnavailable("503"), SendOutcome.UNKNOWN),
        (BadResponse("html"), SendOutcome.UNKNOWN),
        (TimeoutError(), SendOutcome.UNKNOWN),
        (RateLimited("429"), SendOutcome.REFUSED),
        (IpBanned("418"), SendOutcome.FAILED),
        (InvalidOrder("filter"), SendOutcome.FAILED),
        (ValueError("bug"), SendOutcome.FAILED),
    ],
)
def test_classify_send(error: BaseException, outcome: SendOutcome) -> None:
    assert classify_send(error) is outcome


def test_connect_failure_deep_in_the_cause_chain_is_not_sent() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError as inner:
            raise ExchangeUnavailable("binance GET /api/v3/order") from inner
    except ExchangeUnavailable as outer:
        assert classify_send(outer) is SendOutcome.NOT_SENT
