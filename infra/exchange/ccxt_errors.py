"""ccxt's exceptions translated into the project's error tree (core.errors), with secrets removed.

| ccxt (most specific first)                       | core.errors                           |
|--------------------------------------------------|---------------------------------------|
| DDoSProtection / RateLimitExceeded, 418 or ban   | IpBanned (retry_after_s when known)   |
| DDoSProtection / RateLimitExceeded               | RateLimited (retry_after_s when known)|
| RequestTimeout                                   | RequestTimeout                        |
| InvalidNonce (timestamp outside recvWindow)      | ExchangeUnavailable + clock-skew hint |
| ChecksumError (order book checksum)              | BadResponse                           |
| NetworkError / ExchangeNotAvailable / OnMaint.   | ExchangeUnavailable, or ConnectFailed |
|                                                  | when the connection was never made    |
| AccountSuspended / AuthenticationError           | AuthenticationFailed                  |
| PermissionDenied                                 | PermissionDenied                      |
| InsufficientFunds                                | InsufficientFunds                     |
| DuplicateOrderId, Binance "Duplicate order sent" | DuplicateOrder                        |
| OrderNotFound / OrderNotCached                   | OrderNotFound                         |
| OrderImmediatelyFillable (post-only would take)   | PostOnlyWouldTake (an InvalidOrder)   |
| InvalidOrder (other)                             | InvalidOrder                          |
| MarketClosed                                     | InvalidOrder (the venue refused it)   |
| BadRequest saying "Filter failure" (Binance -1013)| InvalidOrder                          |
| BadSymbol                                        | BadSymbol                             |
| BadResponse / NullResponse                       | BadResponse                           |
| other OperationFailed (Binance 5xx, -1001)       | ExchangeUnavailable                   |
| any other ccxt error                             | ExchangeError                         |
| asyncio/built-in TimeoutError                    | RequestTimeout                        |
| connection refused / DNS / aiohttp connect error | ConnectFailed                         |
| other aiohttp.ClientError / ConnectionError      | ExchangeUnavailable                   |

ccxt messages can carry the full request URL, including `signature=...`, and sometimes request
headers such as X-MBX-APIKEY. `translate` strips query strings, key/secret/signature values
and long key-like tokens from the message it builds, and scrubs the ccxt exception (and its
causes) in place, because it stays attached as `__cause__` and a traceback printed later would
show it.
"""

from __future__ import annotations

import email.utils
import functools
import math
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Literal, ParamSpec, TypeVar

import aiohttp
import ccxt

from core.errors import (
    AuthenticationFailed,
    BadResponse,
    BadSymbol,
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    IpBanned,
    OrderNotFound,
    PermissionDenied,
    PostOnlyWouldTake,
    RateLimited,
    RequestTimeout,
)
from infra.retry import ConnectFailed, never_connected

P = ParamSpec("P")
R = TypeVar("R")

MAX_MESSAGE = 400
REDACTED = "<redacted>"
CLOCK_SKEW_HINT = (
    "the venue rejected the request timestamp (clock skew or recvWindow too small): "
    "check the host's clock sync (NTP) and the exchange recvWindow setting"
)

# Ordered most specific first: isinstance picks the first match.
_TABLE: tuple[tuple[type[BaseException], type[ExchangeError]], ...] = (
    (ccxt.RequestTimeout, RequestTimeout),
    (ccxt.ChecksumError, BadResponse),
    (ccxt.InvalidNonce, ExchangeUnavailable),
    (ccxt.NetworkError, ExchangeUnavailable),  # incl. ExchangeNotAvailable, OnMaintenance
    (ccxt.AccountSuspended, AuthenticationFailed),
    (ccxt.PermissionDenied, PermissionDenied),
    (ccxt.AuthenticationError, AuthenticationFailed),
    (ccxt.InsufficientFunds, InsufficientFunds),
    (ccxt.DuplicateOrderId, DuplicateOrder),
    (ccxt.OrderNotFound, OrderNotFound),
    (ccxt.OrderNotCached, OrderNotFound),
    (ccxt.OrderImmediatelyFillable, PostOnlyWouldTake),
    (ccxt.InvalidOrder, InvalidOrder),
    (ccxt.MarketClosed, InvalidOrder),
    (ccxt.BadSymbol, BadSymbol),
    (ccxt.BadResponse, BadResponse),  # incl. NullResponse
    (ccxt.CancelPending, ExchangeError),
    # Binance answers 5xx / -1001 "Internal error" as a bare OperationFailed: the venue failed.
    (ccxt.OperationFailed, ExchangeUnavailable),
)

_URL_QUERY = re.compile(r"""(\b(?:https?|wss?)://[^\s?#"'<>]+)\?[^\s"'<>]*""", re.IGNORECASE)
_PATH_QUERY = re.compile(r"""(/[\w./-]*)\?[^\s"'<>]*""")
_KEY_VALUE = re.compile(
    r"""\b(signature|api[-_]?key|api[-_]?secret|x-mbx-apikey|secret|passphrase|password"""
    r"""|access[-_]?key|private[-_]?key|token)\b(["']?\s*[:=]\s*["']?)([^\s"'&,;}\]]+)""",
    re.IGNORECASE,
)
# Binance API keys and HMAC-SHA256 hex signatures are 64 characters.
_LONG_TOKEN = re.compile(r"\b[A-Za-z0-9]{48,}\b")
_STATUS_418 = re.compile(r"(?:^|\s)418(?:\s|$)")
_BANNED_UNTIL = re.compile(r"banned until (\d{12,14})", re.IGNORECASE)
_DUPLICATE = re.compile(r"duplicate order", re.IGNORECASE)
_FILTER_FAILURE = re.compile(r"filter failure", re.IGNORECASE)


def scrub(text: str, redact: Iterable[str] = ()) -> str:
    """`text` without query strings, credential values or key-like tokens."""
    for secret in redact:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _URL_QUERY.sub(r"\1", text)
    text = _PATH_QUERY.sub(r"\1", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _LONG_TOKEN.sub(REDACTED, text)


def translate(
    exc: BaseException,
    *,
    headers: Mapping[str, str] | None = None,
    now_ms: int | None = None,
    redact: Iterable[str] = (),
) -> ExchangeError:
    """The core.errors exception for `exc`; raise it as is (its `__cause__` is the scrubbed
    original).

    `headers` are the failed response's headers (ccxt keeps them in `last_response_headers`),
    used for Retry-After; `now_ms` turns Binance's "IP banned until <ms>" into seconds and
    dates an HTTP-date Retry-After; `redact` lists literal secrets (the API key) to remove too.
    """
    if isinstance(exc, ExchangeError):
        return exc
    redact = tuple(redact)
    raw = " ".join(str(a) for a in exc.args) if exc.args else ""
    message = _shorten(scrub(raw, redact))
    label = type(exc).__name__
    text = f"{label}: {message}" if message else label
    err = _build(exc, raw, text, headers=headers, now_ms=now_ms)
    err.__cause__ = _clean_chain(exc, redact)
    return err


def _build(
    exc: BaseException,
    raw: str,
    text: str,
    *,
    headers: Mapping[str, str] | None,
    now_ms: int | None,
) -> ExchangeError:
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        retry_after = _retry_after_s(headers, now_ms)
        banned = _STATUS_418.search(raw) is not None or "banned" in raw.lower()
        if banned:
            until = _BANNED_UNTIL.search(raw)
            if until is not None and now_ms is not None:
                from_message = max(0.0, (int(until.group(1)) - now_ms) / 1000)
                retry_after = max(retry_after or 0.0, from_message)
            return IpBanned(text, retry_after_s=retry_after)
        return RateLimited(text, retry_after_s=retry_after)
    # Binance reports a client order id in use as -2010 "Duplicate order sent." (InvalidOrder).
    invalid = isinstance(exc, ccxt.InvalidOrder) and not isinstance(exc, ccxt.OrderNotFound)
    if invalid and _DUPLICATE.search(raw):
        return DuplicateOrder(text)
    # Binance -1013 "Filter failure: NOTIONAL" arrives as a plain BadRequest.
    if isinstance(exc, ccxt.BadRequest) and _FILTER_FAILURE.search(raw):
        return InvalidOrder(text)
    if isinstance(exc, ccxt.BaseError):
        for ccxt_type, ours in _TABLE:
            if isinstance(exc, ccxt_type):
                if ours is ExchangeUnavailable and never_connected(exc):
                    return ConnectFailed(text)
                if ccxt_type is ccxt.InvalidNonce:
                    return ExchangeUnavailable(f"{text} ({CLOCK_SKEW_HINT})")
                return ours(text)
        return ExchangeError(text)
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is the built-in one since 3.11
        return RequestTimeout(text)
    if never_connected(exc):
        return ConnectFailed(text)
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        return ExchangeUnavailable(text)
    return ExchangeError(f"unexpected error from the exchange client: {text}")


def is_translatable(exc: BaseException) -> bool:
    """Errors that come from talking to a venue; anything else (a bug) should propagate."""
    return isinstance(
        exc,
        ccxt.BaseError | TimeoutError | aiohttp.ClientError | ConnectionError | socket.gaierror,
    )


class _Translating:
    """See `translating`."""

    def __init__(
        self,
        *,
        headers: Callable[[], Mapping[str, str] | None] | None,
        now_ms: Callable[[], int] | None,
        redact: tuple[str, ...],
        on_error: Callable[[ExchangeError], None] | None,
    ) -> None:
        self._headers = headers
        self._now_ms = now_ms
        self._redact = redact
        self._on_error = on_error

    def convert(self, exc: BaseException) -> ExchangeError:
        err = translate(
            exc,
            headers=self._headers() if self._headers is not None else None,
            now_ms=self._now_ms() if self._now_ms is not None else None,
            redact=self._redact,
        )
        if self._on_error is not None:
            self._on_error(err)
        return err

    async def __aenter__(self) -> _Translating:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:  # never swallows: an error leaves translated or as it came
        if exc is None or not is_translatable(exc):
            return False
        err = self.convert(exc)
        raise err from err.__cause__

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if not is_translatable(exc):
                    raise
                err = self.convert(exc)
            # Raised outside the except block so the original is only the (scrubbed) cause.
            raise err

        return wrapper


def translating(
    *,
    headers: Callable[[], Mapping[str, str] | None] | None = None,
    now_ms: Callable[[], int] | None = None,
    redact: Iterable[str] = (),
    on_error: Callable[[ExchangeError], None] | None = None,
) -> _Translating:
    """Translate venue errors raised inside, as a decorator or an async context manager:

        guard = translating(headers=lambda: ex.last_response_headers, now_ms=clock.now_ms,
                            on_error=limiter_feedback)
        @guard
        async def fetch_balances(self) -> ...: ...
        async with guard: await ex.fetch_balance()

    `on_error` sees every translated error first (e.g. to penalize the rate limiter on
    RateLimited). Errors that are not about the venue (bugs) pass through untouched.
    """
    return _Translating(headers=headers, now_ms=now_ms, redact=tuple(redact), on_error=on_error)


def _retry_after_s(headers: Mapping[str, str] | None, now_ms: int | None) -> float | None:
    if not headers:
        return None
    value = next((str(v) for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    if now_ms is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_ms / 1000)


def _clean_chain(exc: BaseException, redact: tuple[str, ...]) -> BaseException:
    """Scrub every exception reachable from `exc` (causes and contexts) in place. A link whose
    text stays dirty after its args are cleaned (aiohttp errors format their URL themselves) is
    replaced by a ScrubbedError stand-in. Returns `exc` or its stand-in."""
    cache: dict[int, BaseException] = {}

    def clean(link: BaseException) -> BaseException:
        done = cache.get(id(link))
        if done is not None:
            return done
        cache[id(link)] = link  # guards against cycles while recursing
        link.args = tuple(scrub(a, redact) if isinstance(a, str) else a for a in link.args)
        try:
            shown = str(link)
        except Exception:
            shown = ""
        result = link
        if scrub(shown, redact) != shown:
            result = ScrubbedError(f"{type(link).__name__}: {scrub(shown, redact)}")
            result.__suppress_context__ = link.__suppress_context__
        cache[id(link)] = result
        for attr in ("__cause__", "__context__"):
            nxt = getattr(link, attr)
            if nxt is not None:
                setattr(result, attr, clean(nxt))
        return result

    return clean(exc)


class ScrubbedError(Exception):
    """Stands in for an exception in a cause chain whose own text would leak a secret."""


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
