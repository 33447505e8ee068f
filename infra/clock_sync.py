"""How far the local clock is from true time (NTP) or from an exchange's clock.

Why it matters: exchanges reject signed requests whose timestamp is off. Binance refuses a
request stamped more than 1000 ms ahead of its server time, or older than `recvWindow`
(5000 ms by default), so a drifting host clock turns every order into a rejection.

Sign convention everywhere here: offset_ms = reference time - local time. A positive offset
means the local clock is behind; local_ms + offset_ms estimates the reference clock.

What the daemon does with a `ClockSkew` (the cycle gate):
- offset known and within `max_offset_ms`: ok.
- offset known and too large: ok=False; new orders should be refused in LIVE/PAPER, because the
  exchange would reject them anyway and candle timing is off.
- offset unknown (NTP unreachable, e.g. a firewalled host): ok=False with offset_ms None. The
  daemon treats unknown skew as a warning (alert + health status), not a halt: it cannot tell
  a good clock from a bad one, and the exchange's own /time check (`skew_from_server_time`)
  remains as the stricter guard.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAX_OFFSET_MS = 500.0


class ClockSettings(BaseModel):
    """`clock:` in policy.yaml: how far the host clock may be from true time."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    max_offset_ms: float = Field(
        default=150.0,
        gt=0,
        le=60_000,
        description="Largest accepted offset (ms) of the host clock from the exchange's server "
        "time and from NTP. Above it LIVE refuses to start (exit 7) and a running daemon goes "
        "exits only until the offset is back within it.",
    )
    check_interval_seconds: float = Field(
        default=300,
        ge=1,
        description="How often a running daemon measures the offset again (at a cycle start).",
    )
    ntp_servers: tuple[str, ...] = Field(
        default=("pool.ntp.org",),
        description="NTP servers asked in turn besides the exchange; empty: exchange time only. "
        "Unreachable servers are skipped after ntp_timeout_seconds (the offset stays unknown).",
    )
    ntp_timeout_seconds: float = Field(
        default=1.0, gt=0, le=10, description="Timeout of one NTP request (s)."
    )


Query = Callable[[], float]
"""Returns the offset in milliseconds (reference - local); raises when it cannot tell."""


@dataclass(frozen=True, slots=True)
class ClockSkew:
    offset_ms: float | None
    source: str
    ok: bool
    detail: str

    @property
    def unknown(self) -> bool:
        return self.offset_ms is None


def skew_from_server_time(server_ms: int, local_ms: int, rtt_ms: float) -> float:
    """Offset (server - local, ms) estimated from one request to an exchange's time endpoint.

    `local_ms` is the local wall clock read just before the request was sent, `rtt_ms` the round
    trip measured with a monotonic clock. The server stamped its reply about half-way through
    the round trip (Cristian's algorithm), so the error is at most rtt_ms / 2.
    """
    if not math.isfinite(rtt_ms) or rtt_ms < 0:
        raise ValueError(f"rtt_ms must be a finite number >= 0 (got {rtt_ms!r})")
    return server_ms - (local_ms + rtt_ms / 2)


def _ntp_query(servers: Sequence[str], timeout_s: float) -> tuple[float, str]:
    """Ask each server in turn; the first answer wins. Raises OSError listing every failure."""
    import ntplib

    client = ntplib.NTPClient()
    failures = []
    for server in servers:
        try:
            stats = client.request(server, version=3, timeout=timeout_s)
        except (OSError, ntplib.NTPException) as exc:
            failures.append(f"{server}: {type(exc).__name__}: {exc}")
            continue
        return stats.offset * 1000.0, server
    raise OSError("; ".join(failures) or "no NTP servers configured")


def check_clock_skew(
    query: Query | None = None,
    *,
    servers: Sequence[str] = ("pool.ntp.org",),
    timeout_s: float = 1.0,
    max_offset_ms: float = DEFAULT_MAX_OFFSET_MS,
    source: str | None = None,
) -> ClockSkew:
    """Measure the local clock's offset. Blocking (network I/O): from async code use
    `check_clock_skew_async`. Never raises for an unreachable source; see the module docstring
    for what ok=False means to the daemon.

    `query` replaces NTP (tests, or an exchange-time probe); it returns the offset in ms.
    `source` labels the result (default: the NTP server that answered, or "query").
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 (got {timeout_s})")
    if max_offset_ms <= 0:
        raise ValueError(f"max_offset_ms must be > 0 (got {max_offset_ms})")
    label = source or ("query" if query is not None else ",".join(servers))
    try:
        if query is None:
            offset, answered = _ntp_query(servers, timeout_s)
            label = source or answered
        else:
            offset = float(query())
    except Exception as exc:
        return ClockSkew(
            offset_ms=None,
            source=label,
            ok=False,
            detail=f"NTP unreachable: {type(exc).__name__}: {exc}",
        )
    if not math.isfinite(offset):
        return ClockSkew(
            offset_ms=None, source=label, ok=False, detail=f"NTP unreachable: bad offset {offset}"
        )
    if abs(offset) > max_offset_ms:
        direction = "behind" if offset > 0 else "ahead of"
        return ClockSkew(
            offset_ms=offset,
            source=label,
            ok=False,
            detail=(
                f"local clock is {abs(offset):.0f} ms {direction} {label} (limit "
                f"{max_offset_ms:.0f} ms); fix time sync on the host (chrony/systemd-timesyncd)"
            ),
        )
    return ClockSkew(
        offset_ms=offset, source=label, ok=True, detail=f"offset {offset:+.1f} ms vs {label}"
    )


async def check_clock_skew_async(
    query: Query | None = None,
    *,
    servers: Sequence[str] = ("pool.ntp.org",),
    timeout_s: float = 1.0,
    max_offset_ms: float = DEFAULT_MAX_OFFSET_MS,
    source: str | None = None,
) -> ClockSkew:
    """`check_clock_skew` in a worker thread, so the NTP round trips never block the loop."""
    return await asyncio.to_thread(
        check_clock_skew,
        query,
        servers=servers,
        timeout_s=timeout_s,
        max_offset_ms=max_offset_ms,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class ClockStatus:
    """The daemon's last clock-drift check (runner/clock_watch.py), as /health shows it:
    the verdict over every source, and when it was taken (checked_ms 0: never measured)."""

    offset_ms: float | None = None
    ok: bool = True
    detail: str = "not measured"
    checked_ms: int = 0


class ClockSkewed(Exception):
    """LIVE refused to start: the host clock is too far from the exchange's (exit code 7)."""


# Requests to the exchange's time endpoint per measurement. A single round trip may be slow
# (the first one opens the TCP and TLS connection; a loaded host answers late), and its error
# is up to half of it: with a 150 ms limit one slow request would look like a skewed clock.
TIME_SAMPLES = 3


async def exchange_offset_ms(
    fetch_time: Callable[[], Awaitable[int]],
    now_ms: Callable[[], int],
    monotonic: Callable[[], float] = time.monotonic,
    samples: int = TIME_SAMPLES,
) -> float:
    """Offset (exchange - local, ms) from `samples` requests to the exchange's time endpoint,
    taken from the one with the shortest round trip (the least uncertain, as NTP does): the
    local time comes from the Clock port, the round trip from a monotonic clock."""

    async def sample() -> tuple[float, float]:  # (round trip, offset)
        local = now_ms()
        t0 = monotonic()
        server = await fetch_time()
        rtt = (monotonic() - t0) * 1000.0
        return rtt, skew_from_server_time(int(server), local, rtt)

    best = await sample()
    for _ in range(samples - 1):
        best = min(best, await sample())
    return best[1]
