"""The project's one error tree. Adapters translate venue errors into these at the edge."""

from __future__ import annotations


class VigilError(Exception):
    """Base of every error vigil raises on purpose."""


class ConfigError(VigilError):
    """The configuration is malformed or contradictory; start-up stops (exit code 2)."""


class DataError(VigilError, ValueError):
    """Candle data is unreadable, incomplete or (strict loading) contains a problem; a
    backtest or replay stops before its first cycle (exit code 2)."""


class ExchangeError(VigilError):
    """Base for everything an exchange adapter raises."""

    retryable = False


class ExchangeUnavailable(ExchangeError):
    """Network failure, 5xx, maintenance: the venue cannot be reached right now."""

    retryable = True


# DESIGN.md calls it ExchangeDown; both names mean the same thing.
ExchangeDown = ExchangeUnavailable


class RequestTimeout(ExchangeUnavailable):
    """No answer in time. For order submits the outcome is UNKNOWN: look it up, never resend."""


class RateLimited(ExchangeError):
    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IpBanned(RateLimited):
    """HTTP 418: the venue banned us for ignoring 429s. Back off hard."""


class AuthenticationFailed(ExchangeError):
    pass


class PermissionDenied(AuthenticationFailed):
    pass


class InsufficientFunds(ExchangeError):
    pass


class InvalidOrder(ExchangeError):
    """Rejected by the venue's rules (filters, size, price, post-only would cross)."""


class PostOnlyWouldTake(InvalidOrder):
    """A post-only order refused because the market moved through its price before it
    arrived: nothing is wrong with the order, the symbol or the account, so it does not count
    toward the rejections breaker or a symbol's ban (the next cycle prices it again)."""


class OrderNotFound(ExchangeError):
    pass


class DuplicateOrder(ExchangeError):
    """The client order id is already in use on the venue."""


class BadSymbol(ExchangeError):
    pass


class BadResponse(ExchangeError):
    """The venue answered with something we cannot parse; treated as unavailable."""

    retryable = True


class StateCorrupted(VigilError):
    """The state database failed its integrity check; it was quarantined, trading refused."""


class AuditCorrupted(VigilError):
    """The audit chain does not verify."""


class AlreadyRunning(VigilError):
    """Another live vigil holds the instance lock."""
