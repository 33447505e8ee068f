"""Download historical candles from an exchange into freqtrade-style files, resumably.

`download_candles` pages forward with `fetch_ohlcv(symbol, timeframe, since, limit)` (ccxt's
async signature), merges with what the file already holds and writes atomically. Running it
again continues where the file ends; asking for an earlier start fetches the missing head.
The exchange is any object with that method: a ccxt.async_support exchange from
`make_ccxt_exchange`, or a fake in tests.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.candles import CandleSeries, RawCandles, check_symbol, iso
from core.clock import DAY_MS, timeframe_ms
from core.errors import DataError
from infra.candle_checks import alignment_offset_ms
from infra.candle_files import DataReport, load_candles, validate_raw
from infra.candle_formats import candle_filename, check_format, rows_to_raw, write_raw

log = logging.getLogger(__name__)


class OhlcvSource(Protocol):
    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[list[Any]]: ...


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    symbol: str
    timeframe: str
    rows_fetched: int  # this run, so far
    cursor_ms: int  # the next candle open time to ask for
    until_ms: int


@dataclass(frozen=True, slots=True)
class DownloadResult:
    symbol: str
    path: Path
    rows_before: int  # candles the file held before this run
    rows_added: int
    report: DataReport  # the final file, read back: gaps show here
    # What the exchange sent this run, judged like a file: bad ticks, duplicates and
    # out-of-order rows it lists were kept out of the file. Its gaps are left empty.
    fetched: DataReport | None = None


def download_window(now_ms: int, days: float, timeframe: str) -> tuple[int, int]:
    """(since_ms, until_ms) for the last `days` of closed candles as of now_ms.

    until_ms is the open time of the candle still forming, so it is left out.
    """
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    tf = timeframe_ms(timeframe)
    until = now_ms - (now_ms - alignment_offset_ms(timeframe)) % tf
    return until - round(days * DAY_MS), until


async def download_candles(
    exchange: OhlcvSource,
    symbol: str,
    timeframe: str,
    *,
    since_ms: int,
    until_ms: int,
    out_dir: str | Path,
    fmt: str = "feather",
    page_limit: int = 1000,
    progress: Callable[[DownloadProgress], None] | None = None,
) -> DownloadResult:
    """Fetch candles with since_ms <= ts < until_ms into out_dir/<BASE>_<QUOTE>-<tf>.<fmt>.

    Resumes from the file's last candle; fetches the head too when since_ms is earlier than
    the file's first candle. An existing file with problems other than gaps is copied to
    out_dir/quarantine/ and refused (DataError), never rewritten. If fetching fails midway,
    the candles that extend the file without a hole are saved before the error propagates.
    """
    check_symbol(symbol)
    check_format(fmt)
    tf = timeframe_ms(timeframe)
    if until_ms <= since_ms:
        raise ValueError(f"until_ms ({until_ms}) must be after since_ms ({since_ms})")
    if page_limit < 1:
        raise ValueError(f"page_limit must be at least 1, got {page_limit}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / candle_filename(symbol, timeframe, fmt)
    existing = _load_existing(path, symbol, timeframe)  # None when absent or empty
    rows_before = len(existing) if existing is not None else 0

    fetch = _Fetcher(exchange, symbol, timeframe, page_limit, progress, until_ms)
    head: list[RawCandles] = []
    tail: list[RawCandles] = []
    head_done = False
    try:
        if existing is None:
            await fetch.range(since_ms, until_ms, tail)
        else:
            if since_ms < existing.first_ts:
                await fetch.range(since_ms, existing.first_ts, head)
            head_done = True
            if existing.last_ts + tf < until_ms:
                await fetch.range(existing.last_ts + tf, until_ms, tail)
    except BaseException:
        # Save only progress that continues the file: an unfinished head would leave a hole
        # that resuming (which continues after the last candle) would never fill.
        parts = [*head, *tail] if head_done else tail
        if parts:
            _save_partial(path, existing, parts, symbol, timeframe)
        raise

    fetched_series, fetched_report = _clean(head + tail, symbol, timeframe, exchange)
    rows_added = len(fetched_series)
    if rows_added:
        merged = _merge(existing, fetched_series)
        write_raw(path, merged)
        _, report = load_candles(path, symbol, timeframe)
    elif path.exists():
        _, report = load_candles(path, symbol, timeframe)
    else:
        report = DataReport(symbol, str(path), 0, 0, timeframe=timeframe)
    log.info(
        "%s %s: %d candle(s) added to %s (%d before); %s",
        symbol,
        timeframe,
        rows_added,
        path,
        rows_before,
        report.summary(),
    )
    return DownloadResult(symbol, path, rows_before, rows_added, report, fetched_report)


class _Fetcher:
    def __init__(
        self,
        exchange: OhlcvSource,
        symbol: str,
        timeframe: str,
        page_limit: int,
        progress: Callable[[DownloadProgress], None] | None,
        until_ms: int,
    ) -> None:
        self._exchange = exchange
        self._symbol = symbol
        self._timeframe = timeframe
        self._tf = timeframe_ms(timeframe)
        self._limit = page_limit
        self._progress = progress
        self._until = until_ms
        self.rows = 0

    async def range(self, start: int, end: int, sink: list[RawCandles]) -> None:
        """Page from start until end (exclusive) or until the exchange has nothing newer."""
        cursor = start
        while cursor < end:
            page = await self._exchange.fetch_ohlcv(
                self._symbol, self._timeframe, cursor, self._limit
            )
            source = f"{self._symbol} {self._timeframe} page since {iso(cursor)}"
            raw = rows_to_raw(list(page), source)
            mask = (raw.ts >= cursor) & (raw.ts < end)
            if not mask.any():
                break  # nothing new: the exchange has no more candles in this range
            new = raw.take(mask)
            sink.append(new)
            self.rows += len(new.ts)
            cursor = int(new.ts.max()) + self._tf
            if self._progress is not None:
                self._progress(
                    DownloadProgress(self._symbol, self._timeframe, self.rows, cursor, self._until)
                )


def _load_existing(path: Path, symbol: str, timeframe: str) -> CandleSeries | None:
    if not path.exists():
        return None
    try:
        series, report = load_candles(path, symbol, timeframe)
    except DataError as e:
        copy = _quarantine(path)
        raise DataError(
            f"{e}. The file was copied to {copy} and left as it is; "
            "delete or repair it, then download again"
        ) from e
    if report.duplicates or report.conflicts or report.non_monotonic or report.bad_ticks:
        copy = _quarantine(path)
        raise DataError(
            f"{path} has problems other than gaps ({report.summary()}); refusing to rewrite it. "
            f"It was copied to {copy} and left as it is; delete or repair it, then download again"
        )
    return series if len(series) else None


def _quarantine(path: Path) -> Path:
    """Copy aside under quarantine/, named by content hash so repeats do not pile up."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    target = path.parent / "quarantine" / f"{path.name}.{digest}"
    target.parent.mkdir(exist_ok=True)
    if not target.exists():
        shutil.copy2(path, target)
    log.error("quarantined a copy of %s at %s", path, target)
    return target


def _clean(
    parts: Sequence[RawCandles], symbol: str, timeframe: str, exchange: object
) -> tuple[CandleSeries, DataReport]:
    """Validate what the exchange sent; only clean rows reach the file, the rest are reported."""
    raw = RawCandles.concat(parts)
    name = getattr(exchange, "id", type(exchange).__name__)
    series, report, _ = validate_raw(
        raw, symbol=symbol, timeframe=timeframe, path=f"{name}:fetch_ohlcv"
    )
    # Gaps belong to the final file's report; here they would also count the span between a
    # fetched head and tail that the file already holds.
    report = replace(report, gaps=())
    if report.duplicates or report.conflicts or report.non_monotonic or report.bad_ticks:
        log.warning("%s %s from %s: %s", symbol, timeframe, name, report.summary())
    return series, report


def _merge(existing: CandleSeries | None, fetched: CandleSeries) -> RawCandles:
    if existing is None:
        return fetched.to_raw()
    both = RawCandles.concat([existing.to_raw(), fetched.to_raw()])
    order = np.argsort(both.ts, kind="stable")
    merged = both.take(order)
    # The fetched ranges lie outside the file's span, so a repeat here is a bug, not data.
    if len(merged.ts) > 1 and not bool(np.all(np.diff(merged.ts) > 0)):
        raise AssertionError("download produced overlapping candles")
    return merged


def _save_partial(
    path: Path,
    existing: CandleSeries | None,
    parts: Sequence[RawCandles],
    symbol: str,
    timeframe: str,
) -> None:
    try:
        fetched, _ = _clean(parts, symbol, timeframe, "partial")
        if len(fetched):
            write_raw(path, _merge(existing, fetched))
            log.warning("download interrupted: saved %d new candle(s) to %s", len(fetched), path)
    except Exception:
        log.exception("download interrupted and saving the partial result to %s failed", path)


def make_ccxt_exchange(exchange_id: str, *, base_url: str | None = None) -> Any:
    """A ccxt.async_support client for public candle downloads (spot markets only), with
    ccxt's own throttle on: downloads are bursty and have no rate limiter of ours.

    base_url (tests only) points every REST endpoint at a local fake. Close the exchange with
    `await exchange.close()`.
    """
    from infra.exchange.ccxt_factory import make_ccxt

    exchange = make_ccxt(exchange_id, base_url=base_url)
    exchange.enableRateLimit = True
    return exchange
