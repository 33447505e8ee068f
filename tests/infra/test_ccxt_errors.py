"""ccxt exceptions become core.errors, with Retry-After, bans, hints, and no secrets left."""

from __future__ import annotations

import json
import socket
import traceback

import aiohttp
import ccxt
import pytest

from core import errors as E
from infra.exchange.ccxt_errors import (
    CLOCK_SKEW_HINT,
    ScrubbedError,
    scrub,
    translate,
    translating,
)
from infra.retry import ConnectFailed, SendOutcome, classify_send

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
URL = (
    "https://api.binance.com/api/v3/order?symbol=BTCUSDT&side=BUY&timestamp=1700000000000"
    f"&recvWindow=5000&signature={SIGNATURE}"
)
SECRETS = (API_KEY, SIGNATURE, "recvWindow=5000", "symbol=BTCUSDT")


@pytest.mark.parametrize(
    ("ccxt_error", "expected"),
    [
        (ccxt.RateLimitExceeded, E.RateLimited),
        (ccxt.DDoSProtection, E.RateLimited),
        (ccxt.RequestTimeout, E.RequestTimeout),
        (ccxt.NetworkError, E.ExchangeUnavailable),
        (ccxt.ExchangeNotAvailable, E.ExchangeUnavailable),
        (ccxt.OnMaintenance, E.ExchangeUnavailable),
        (ccxt.InvalidNonce, E.ExchangeUnavailable),
        (ccxt.ChecksumError, E.BadResponse),
        (ccxt.AuthenticationError, E.AuthenticationFailed),
        (ccxt.PermissionDenied, E.PermissionDenied),
        (ccxt.AccountNotEnabled, E.PermissionDenied),
        (ccxt.AccountSuspended, E.AuthenticationFailed),
        (ccxt.InsufficientFunds, E.InsufficientFunds),
        (ccxt.InvalidOrder, E.InvalidOrder),
        (ccxt.OrderImmediatelyFillable, E.PostOnlyWouldTake),
        (ccxt.OrderNotFillable, E.InvalidOrder),
        (ccxt.DuplicateOrderId, E.DuplicateOrder),
        (ccxt.OrderNotFound, E.OrderNotFound),
        (ccxt.OrderNotCached, E.OrderNotFound),
        (ccxt.MarketClosed, E.InvalidOrder),
        (ccxt.BadSymbol, E.BadSymbol),
        (ccxt.BadResponse, E.BadResponse),
        (ccxt.NullResponse, E.BadResponse),
        (ccxt.OperationFailed, E.ExchangeUnavailable),
        (ccxt.ExchangeError, E.ExchangeError),
        (ccxt.NotSupported, E.ExchangeError),
        (ccxt.BadRequest, E.ExchangeError),
        (ccxt.BaseError, E.ExchangeError),
    ],
)
def test_each_ccxt_class_maps_to_its_core_error(
    ccxt_error: type[Exception], expected: type[E.ExchangeError]
) -> None:
    err = translate(ccxt_error("binance something went wrong"))
    assert type(err) is expected
    assert "something went wrong" in str(err)
    assert ccxt_error.__name__ in str(err)


def test_invalid_nonce_carries_a_clock_skew_hint() -> None:
    err = translate(ccxt.InvalidNonce('binance {"code":-1021,"msg":"Timestamp outside"}'))
    assert CLOCK_SKEW_HINT in str(err)
    assert err.retryable


def test_retry_after_comes_from_the_headers() -> None:
    err = translate(ccxt.RateLimitExceeded("binance 429"), headers={"Retry-After": "7"})
    assert isinstance(err, E.RateLimited) and not isinstance(err, E.IpBanned)
    assert err.retry_after_s == 7.0
    lower = translate(ccxt.DDoSProtection("x 429 y"), headers={"retry-after": " 2.5 "})
    assert isinstance(lower, E.RateLimited)
    assert lower.retry_after_s == 2.5
    dated = translate(
        ccxt.RateLimitExceeded("x"),
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
        now_ms=1445412470000,  # 10 s earlier
    )
    assert isinstance(dated, E.RateLimited)
    assert dated.retry_after_s == pytest.approx(10.0)
    none = translate(ccxt.RateLimitExceeded("x"), headers={"Retry-After": "soon"})
    assert isinstance(none, E.RateLimited)
    assert none.retry_after_s is None


def binance_error(status: int, reason: str, body: dict[str, object]) -> Exception:
    """Run ccxt's own Binance error handling on a response, return what it raises."""
    ex = ccxt.binance()
    text = json.dumps(body)
    try:
        ex.handle_errors(status, reason, URL, "POST", {}, text, body, {}, None)
        ex.handle_http_status_code(status, reason, URL, "POST", text)
    except Exception as exc:
        return exc
    raise AssertionError("ccxt raised nothing")


def test_binance_418_ban_becomes_ip_banned_with_the_ban_length() -> None:
    exc = binance_error(
        418,
        "I'm a teapot",
        {"code": -1003, "msg": "Way too much request weight used; IP banned until 1700000300000."},
    )
    assert isinstance(exc, ccxt.DDoSProtection)
    err = translate(exc, headers={"Retry-After": "120"}, now_ms=1_700_000_000_000)
    assert isinstance(err, E.IpBanned)
    assert err.retry_after_s == 300.0  # the ban's end is later than the Retry-After


def test_binance_429_becomes_rate_limited_not_banned() -> None:
    exc = binance_error(
        429, "Too Many Requests", {"code": -1003, "msg": "Too much request weight used."}
    )
    err = translate(exc, headers={"Retry-After": "3"})
    assert type(err) is E.RateLimited
    assert err.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"code": -2010, "msg": "Account has insufficient balance for requested action."},
            E.InsufficientFunds,
        ),
        (400, {"code": -2010, "msg": "Duplicate order sent."}, E.DuplicateOrder),
        (400, {"code": -1013, "msg": "Filter failure: NOTIONAL"}, E.InvalidOrder),
        (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"}, E.InvalidOrder),
        (
            400,
            {"code": -2010, "msg": "Order would immediately match and take."},
            E.PostOnlyWouldTake,
        ),
        (400, {"code": -2011, "msg": "Unknown order sent."}, E.OrderNotFound),
        (400, {"code": -2013, "msg": "Order does not exist."}, E.OrderNotFound),
        (
            400,
            {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
            E.ExchangeUnavailable,
        ),
        (
            400,
            {"code": -1022, "msg": "Signature for this request is not valid."},
            E.AuthenticationFailed,
        ),
        (
            401,
            {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
            E.AuthenticationFailed,
        ),
        (400, {"code": -1121, "msg": "Invalid symbol."}, E.BadSymbol),
        (
            503,
            {"code": -1001, "msg": "Internal error; unable to process your request."},
            E.ExchangeUnavailable,
        ),
    ],
)
def test_real_binance_error_bodies_through_ccxt(
    status: int, body: dict[str, object], expected: type[E.ExchangeError]
) -> None:
    err = translate(binance_error(status, "x", body))
    assert type(err) is expected
    assert SIGNATURE not in str(err)


def test_connection_refused_and_dns_failures_are_marked_not_sent() -> None:
    for cause in (ConnectionRefusedError(111, "Connection refused"), socket.gaierror(-2, "DNS")):
        try:
            try:
                raise cause
            except OSError as inner:
                raise ccxt.ExchangeNotAvailable(f"binance GET {URL}") from inner
        except ccxt.ExchangeNotAvailable as exc:
            err = translate(exc)
        assert isinstance(err, ConnectFailed)
        assert classify_send(err) is SendOutcome.NOT_SENT


def test_a_dropped_connection_is_unknown_not_unsent() -> None:
    try:
        try:
            raise aiohttp.ServerDisconnectedError()
        except aiohttp.ClientError as inner:
            raise ccxt.ExchangeNotAvailable(f"binance POST {URL}") from inner
    except ccxt.ExchangeNotAvailable as exc:
        err = translate(exc)
    assert type(err) is E.ExchangeUnavailable
    assert classify_send(err) is SendOutcome.UNKNOWN


def test_non_ccxt_errors() -> None:
    assert type(translate(TimeoutError())) is E.RequestTimeout
    assert type(translate(ConnectionRefusedError(111, "refused"))) is ConnectFailed
    assert type(translate(aiohttp.ServerDisconnectedError())) is E.ExchangeUnavailable
    same = E.OrderNotFound("x")
    assert translate(same) is same
    assert "unexpected" in str(translate(ZeroDivisionError("boom")))


# -- secrets --------------------------------------------------------------------------------


def secret_message() -> str:
    return (
        f"binance POST {URL} 400 Bad Request "
        f"{{'X-MBX-APIKEY': '{API_KEY}'}} apiKey={API_KEY} "
        f'"apiSecret": "hunter2hunter2" /api/v3/account?timestamp=1&signature={SIGNATURE}'
    )


def assert_clean(text: str) -> None:
    for secret in (*SECRETS, "hunter2hunter2"):
        assert secret not in text, f"{secret!r} leaked into: {text}"


def test_scrub_strips_query_strings_keys_and_signatures() -> None:
    cleaned = scrub(secret_message())
    assert_clean(cleaned)
    assert "https://api.binance.com/api/v3/order" in cleaned  # the useful part stays
    assert "400 Bad Request" in cleaned
    assert scrub("token mine", redact=["mine"]) == "token <redacted>"


def test_translated_error_and_its_printed_traceback_hold_no_secret() -> None:
    try:
        try:
            raise ValueError(f"inner detail with signature={SIGNATURE}")
        except ValueError as inner:
            raise ccxt.InsufficientFunds(secret_message()) from inner
    except ccxt.InsufficientFunds as exc:
        err = translate(exc, redact=[API_KEY])
    assert isinstance(err, E.InsufficientFunds)
    assert_clean(str(err))
    printed = "".join(traceback.format_exception(err))
    assert_clean(printed)
    assert "InsufficientFunds" in printed


class LeakyURLError(Exception):
    """Like aiohttp.ClientResponseError: formats a URL it keeps outside its args."""

    def __init__(self, url: str) -> None:
        super().__init__("request failed")
        self.url = url

    def __str__(self) -> str:
        return f"request failed, url={self.url}"


def test_a_cause_that_formats_its_own_url_is_replaced() -> None:
    try:
        try:
            raise LeakyURLError(URL)
        except LeakyURLError as inner:
            raise ccxt.ExchangeError(f"binance POST {URL}") from inner
    except ccxt.ExchangeError as exc:
        err = translate(exc)
    assert isinstance(err.__cause__, ccxt.ExchangeError)
    assert isinstance(err.__cause__.__cause__, ScrubbedError)
    assert "LeakyURLError" in str(err.__cause__.__cause__)
    assert_clean("".join(traceback.format_exception(err)))


# -- translating() ---------------------------------------------------------------------------


async def test_translating_as_a_decorator() -> None:
    seen: list[E.ExchangeError] = []
    guard = translating(
        headers=lambda: {"Retry-After": "9"}, now_ms=lambda: 0, on_error=seen.append
    )

    @guard
    async def fetch() -> None:
        raise ccxt.RateLimitExceeded(f"binance GET {URL} 429")

    with pytest.raises(E.RateLimited) as info:
        await fetch()
    assert info.value.retry_after_s == 9.0
    assert seen == [info.value]
    assert_clean("".join(traceback.format_exception(info.value)))
    assert fetch.__name__ == "fetch"


async def test_translating_as_a_context_manager() -> None:
    with pytest.raises(E.OrderNotFound) as info:
        async with translating():
            raise ccxt.OrderNotFound(f"binance GET {URL} -2013")
    assert_clean("".join(traceback.format_exception(info.value)))
    assert_clean(str(info.value.__context__))


async def test_translating_lets_bugs_and_own_errors_through_untouched() -> None:
    guard = translating()

    @guard
    async def buggy() -> None:
        raise TypeError("a bug, not the venue")

    with pytest.raises(TypeError, match="a bug"):
        await buggy()
    with pytest.raises(E.InvalidOrder, match="ours"):
        async with guard:
            raise E.InvalidOrder("ours")
    async with guard:
        pass  # nothing raised, nothing to do
