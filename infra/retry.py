"""Retries with capped exponential backoff and full jitter, and idempotent order submission.

`call_with_retries` is for requests that are safe to repeat (reads, cancels, lookups): it
retries what the classifier calls retryable (by default the errors in core.errors marked
`retryable`: RateLimited, ExchangeUnavailable and its RequestTimeout, BadResponse), sleeping
`uniform(0, min(cap, base * 2**attempt))` between attempts (full jitter, so many clients that
failed together do not come back together) and at least a RateLimited's Retry-After. Anything
else is raised at once; when the attempts run out the last error is raised.

Order submission is not a read, and a blind retry can double a position. `submit_idempotent`
follows these rules, in this order:

1. Classify the failure of `send()` (see `classify_send`):
   - FAILED: the venue answered and refused (InvalidOrder, InsufficientFunds, auth, ...).
     Nothing was created; raise.
   - REFUSED: the venue turned the request away unprocessed (429 RateLimited). Nothing was
     created; send again after the backoff (and the Retry-After). An IP ban (418) is raised
     instead: the rate limiter pauses everything and the cycle ends.
   - NOT_SENT: the request never left this host (connection refused, DNS failure; the adapter
     marks these as ConnectFailed). Nothing can have been created.
   - UNKNOWN: timeout, dropped connection, 5xx, unparsable answer. The venue may have created
     the order and we lost the answer (Binance documents 5xx as "execution status UNKNOWN").
2. For NOT_SENT and UNKNOWN, ask the venue first: `lookup()` by client order id. If the order
   is there, return it: no resend.
3. NOT_SENT with no earlier UNKNOWN attempt: resend (nothing of ours can be in flight).
4. UNKNOWN (now or on an earlier attempt): a venue can take a moment to show an order it just
   accepted, so one "not found" proves little. Look up again after backoff until
   `confirm_lookups` answers in a row have said OrderNotFound; only then send again. If the
   lookups themselves keep failing we cannot know, so the send's error is raised and
   reconciliation settles the order later by its client order id; we never guess.
5. A resend reuses the same client order id. If the venue says the id is taken
   (DuplicateOrder), our order exists after all: look it up and return it. The same holds for
   DuplicateOrder on the first send (e.g. after a restart).

Why the lookup and not the venue's duplicate check is the guard: Binance only rejects a
newClientOrderId that is in use by an *open* order; once the first order has filled, the same
id would be accepted again and double the position. The confirmed OrderNotFound of step 4 is
what makes the resend safe; the duplicate check is a second line of defence.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import aiohttp

from core.errors import (
    BadResponse,
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    IpBanned,
    OrderNotFound,
    RateLimited,
)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class ConnectFailed(ExchangeUnavailable):
    """The request never reached the venue (connection refused, DNS failure, TLS handshake):
    repeating it cannot create a duplicate."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1 (got {self.max_attempts!r})")
        if not (math.isfinite(self.base_s) and math.isfinite(self.cap_s)):
            raise ValueError("RetryPolicy.base_s and cap_s must be finite")
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError(
                f"RetryPolicy needs 0 < base_s <= cap_s (got base_s={self.base_s}, "
                f"cap_s={self.cap_s})"
            )

    def ceiling(self, attempt: int) -> float:
        """The largest backoff after failed attempt number `attempt` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0 (got {attempt})")
        # Beyond 2**64 the cap has long been reached; avoid an OverflowError.
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt))."""
        return rng.uniform(0.0, self.ceiling(attempt))


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    min_delay_s: float = 0.0  # e.g. the venue's Retry-After
    reason: str = ""


def classify_error(exc: BaseException) -> RetryDecision:
    """The default: retry what core.errors marks retryable, honouring Retry-After. An IP ban is
    not retried in-call: its pause is minutes long, the rate limiter holds every request back
    meanwhile and the cycle should end rather than sleep."""
    if isinstance(exc, IpBanned):
        return RetryDecision(False, reason="ip banned")
    if isinstance(exc, RateLimited):
        after = exc.retry_after_s if _seconds(exc.retry_after_s) else 0.0
        return RetryDecision(True, min_delay_s=after or 0.0, reason="rate limited")
    if isinstance(exc, ExchangeError) and exc.retryable:
        return RetryDecision(True, reason=type(exc).__name__)
    return RetryDecision(False, reason=type(exc).__name__)


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Sleep,
    classify: Callable[[BaseException], RetryDecision] = classify_error,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Await `fn()` up to `policy.max_attempts` times. `on_retry(attempt, error, delay_s)` is
    called before each sleep (attempt counts from 1). Cancellation is never retried."""
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            decision = classify(exc)
            if not decision.retry or attempt + 1 >= policy.max_attempts:
                raise
            delay = max(policy.backoff(attempt, rng), decision.min_delay_s)
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc, delay)
        await sleep(delay)


class SendOutcome(StrEnum):
    FAILED = "failed"  # refused by the venue's rules; nothing was created
    REFUSED = "refused"  # turned away unprocessed (429); nothing was created
    NOT_SENT = "not_sent"  # never left this host
    UNKNOWN = "unknown"  # may or may not have been created


def classify_send(exc: BaseException) -> SendOutcome:
    """What a failed order submit tells us about the order's existence."""
    if isinstance(exc, IpBanned):
        return SendOutcome.FAILED
    if isinstance(exc, RateLimited):
        return SendOutcome.REFUSED
    if isinstance(exc, ConnectFailed) or never_connected(exc):
        return SendOutcome.NOT_SENT
    if isinstance(exc, ExchangeUnavailable | BadResponse | asyncio.TimeoutError | OSError):
        return SendOutcome.UNKNOWN
    return SendOutcome.FAILED


def never_connected(exc: BaseException) -> bool:
    """A connect-phase failure (refused, DNS, TLS handshake) anywhere in the cause chain: the
    request cannot have reached the venue."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ConnectionRefusedError | socket.gaierror):
            return True
        if isinstance(link, aiohttp.ClientConnectorError):
            return True
        link = link.__cause__
    return False


async def submit_idempotent(
    send: Callable[[], Awaitable[T]],
    lookup: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Sleep,
    confirm_lookups: int = 3,
    classify: Callable[[BaseException], SendOutcome] = classify_send,
    note: Callable[[str], None] | None = None,
) -> T:
    """Create an order exactly once. See the module docstring for the rules.

    `send()` submits the order with its client order id; `lookup()` fetches it by that id and
    raises core.errors.OrderNotFound when the venue has no such order. At most
    `policy.max_attempts` sends are made. `note` receives one line per decision (for logs and
    the audit trail).
    """
    if confirm_lookups < 1:
        raise ValueError(f"confirm_lookups must be >= 1 (got {confirm_lookups})")
    say = note or (lambda _msg: None)
    waits = 0  # backoff steps taken so far, across sends and lookups

    async def pause(min_s: float = 0.0) -> None:
        nonlocal waits
        delay = max(policy.backoff(waits, rng), min_s)
        waits += 1
        await sleep(delay)

    sends = 0
    while True:
        sends += 1
        min_s = 0.0
        try:
            return await send()
        except DuplicateOrder:
            say("venue reports the client order id in use: fetching that order")
            try:
                return await _fetch_existing(lookup, policy=policy, rng=rng, sleep=sleep)
            except OrderNotFound:
                say("the order the venue says exists never became visible")
                raise
        except Exception as exc:
            outcome = classify(exc)
            say(f"send {sends} failed ({outcome}): {type(exc).__name__}: {exc}")
            if outcome is SendOutcome.FAILED:
                raise
            if outcome is not SendOutcome.REFUSED:
                found: _Probe[T] = await _probe(lookup)
                if found.order is not None:
                    say("order found by client order id: not resending")
                    return found.order
                if outcome is SendOutcome.UNKNOWN:
                    found = await _confirm_absent(
                        lookup,
                        first=found,
                        needed=confirm_lookups,
                        tries=policy.max_attempts,
                        pause=pause,
                        say=say,
                    )
                    if found.order is not None:
                        return found.order
                    if not found.absent:
                        say("cannot tell whether the order exists: giving up without resend")
                        raise
            if sends >= policy.max_attempts:
                raise
            if isinstance(exc, RateLimited) and _seconds(exc.retry_after_s):
                min_s = exc.retry_after_s or 0.0
            say(f"resending with the same client order id (send {sends + 1})")
        await pause(min_s)


@dataclass(frozen=True, slots=True)
class _Probe(Generic[T]):
    order: T | None = None
    absent: bool = False  # the venue answered OrderNotFound


async def _probe(lookup: Callable[[], Awaitable[T]]) -> _Probe[T]:
    try:
        return _Probe(order=await lookup())
    except OrderNotFound:
        return _Probe(absent=True)
    except Exception as exc:
        if classify_error(exc).retry:
            return _Probe()
        raise


async def _confirm_absent(
    lookup: Callable[[], Awaitable[T]],
    *,
    first: _Probe[T],
    needed: int,
    tries: int,
    pause: Callable[[], Awaitable[None]],
    say: Callable[[str], None],
) -> _Probe[T]:
    """Look up until `needed` answers in a row say "absent", the order shows up, or `tries`
    more lookups have been spent. Returns the order, absent=True, or neither (unknown)."""
    streak = 1 if first.absent else 0
    for _ in range(tries):
        if streak >= needed:
            return _Probe(absent=True)
        await pause()
        probe = await _probe(lookup)
        if probe.order is not None:
            say("order found by client order id on a later lookup: not resending")
            return probe
        streak = streak + 1 if probe.absent else 0
    return _Probe(absent=streak >= needed)


async def _fetch_existing(
    lookup: Callable[[], Awaitable[T]], *, policy: RetryPolicy, rng: random.Random, sleep: Sleep
) -> T:
    """The venue says the order exists: it may take a moment to be visible to a lookup, so
    OrderNotFound is retried here too."""

    def classify(exc: BaseException) -> RetryDecision:
        if isinstance(exc, OrderNotFound):
            return RetryDecision(True, reason="not visible yet")
        return classify_error(exc)

    return await call_with_retries(lookup, policy=policy, rng=rng, sleep=sleep, classify=classify)


def _seconds(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
