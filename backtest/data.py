"""Historical candles for backtests and the replay feed: load, validate, find, write.

Policy: problems are reported, never silently fixed. Gaps stay gaps (never forward-filled).
Exact duplicate rows keep their first copy; conflicting duplicates, out-of-order rows and bad
ticks are left out of the returned series and each one is listed in the `DataReport`.
`strict=True` raises `DataError` on the first problem instead. See docs/data.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from backtest.candle_checks import Problem, TickProblem, check_rows, iso
from backtest.candle_formats import (
    FORMATS,
    FloatArray,
    Int64Array,
    RawCandles,
    candle_filename,
    check_symbol,
    parse_candle_filename,
    read_candle_file,
    write_raw,
)
from core.clock import timeframe_ms
from core.config import OutlierGuard
from core.errors import DataError
from core.models import Candle

__all__ = [
    "FORMATS",
    "CandleSeries",
    "DataError",
    "DataReport",
    "Problem",
    "TickProblem",
    "candle_filename",
    "find_candle_file",
    "list_pairs",
    "load_candles",
    "load_many",
    "load_required",
    "validate_raw",
    "write_candles",
]


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CandleSeries:
    """Columns of closed candles, strictly increasing by `ts` (open time, epoch ms).

    Arrays are read-only; `slice` returns views, not copies. Compare with `equals`.
    """

    symbol: str
    timeframe: str
    ts: Int64Array
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        check_symbol(self.symbol)
        timeframe_ms(self.timeframe)
        n = None
        for f in fields(self)[2:]:
            dtype = np.int64 if f.name == "ts" else np.float64
            arr = np.asarray(getattr(self, f.name), dtype=dtype)
            if arr.ndim != 1:
                raise ValueError(f"CandleSeries.{f.name} must be one-dimensional")
            if n is not None and len(arr) != n:
                raise ValueError(f"CandleSeries.{f.name} has {len(arr)} values, ts has {n}")
            n = len(arr)
            view = arr.view()
            view.flags.writeable = False
            object.__setattr__(self, f.name, view)
        if n and n > 1 and not bool(np.all(np.diff(self.ts) > 0)):
            i = int(np.flatnonzero(np.diff(self.ts) <= 0)[0]) + 1
            raise ValueError(
                f"CandleSeries.ts must be strictly increasing; index {i} ({int(self.ts[i])}) "
                f"follows {int(self.ts[i - 1])}"
            )

    @classmethod
    def _trusted(cls, symbol: str, timeframe: str, cols: Sequence[np.ndarray]) -> CandleSeries:
        """Build without re-checking: for data already validated (loader output, slices)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "symbol", symbol)
        object.__setattr__(obj, "timeframe", timeframe)
        for f, arr in zip(fields(cls)[2:], cols, strict=True):
            view = arr.view()
            view.flags.writeable = False
            object.__setattr__(obj, f.name, view)
        return obj

    @classmethod
    def empty(cls, symbol: str, timeframe: str) -> CandleSeries:
        f = np.empty(0, dtype=np.float64)
        return cls(symbol, timeframe, np.empty(0, dtype=np.int64), f, f, f, f, f)

    def __len__(self) -> int:
        return len(self.ts)

    def __repr__(self) -> str:
        span = f", {iso(self.first_ts)} .. {iso(self.last_ts)}" if len(self) else ""
        return f"CandleSeries({self.symbol} {self.timeframe}, {len(self)} bars{span})"

    @property
    def timeframe_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    @property
    def first_ts(self) -> int:
        if not len(self):
            raise ValueError(f"{self.symbol} {self.timeframe}: the series is empty")
        return int(self.ts[0])

    @property
    def last_ts(self) -> int:
        if not len(self):
            raise ValueError(f"{self.symbol} {self.timeframe}: the series is empty")
        return int(self.ts[-1])

    def columns(
        self,
    ) -> tuple[Int64Array, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        return self.ts, self.open, self.high, self.low, self.close, self.volume

    def slice(self, from_ms: int | None = None, to_ms: int | None = None) -> CandleSeries:
        """Candles with from_ms <= ts < to_ms (either bound may be None)."""
        lo = 0 if from_ms is None else int(np.searchsorted(self.ts, from_ms, side="left"))
        hi = len(self) if to_ms is None else int(np.searchsorted(self.ts, to_ms, side="left"))
        hi = max(lo, hi)
        return CandleSeries._trusted(
            self.symbol, self.timeframe, [c[lo:hi] for c in self.columns()]
        )

    def candle(self, i: int) -> Candle:
        """Row i as a domain Candle (Decimal via the float's shortest text)."""
        return Candle(
            ts=int(self.ts[i]),
            open=Decimal(repr(float(self.open[i]))),
            high=Decimal(repr(float(self.high[i]))),
            low=Decimal(repr(float(self.low[i]))),
            close=Decimal(repr(float(self.close[i]))),
            volume=Decimal(repr(float(self.volume[i]))),
        )

    def candles(self) -> Iterator[Candle]:
        for i in range(len(self)):
            yield self.candle(i)

    def equals(self, other: CandleSeries) -> bool:
        return (
            self.symbol == other.symbol
            and self.timeframe == other.timeframe
            and all(
                np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
                for a, b in zip(self.columns(), other.columns(), strict=True)
            )
        )

    def to_raw(self) -> RawCandles:
        return RawCandles(*self.columns())


@dataclass(frozen=True, slots=True)
class DataReport:
    """What loading found. Row indexes are 0-based data rows (CSV line = row + 2).

    gaps: (ts of the last candle before the hole, missing bars) in the returned series; a row
    left out for another problem also leaves a hole, so it shows up here too.
    duplicates: (ts, rows) for identical copies (the first was kept).
    conflicts: (ts, rows) for copies that disagree (all were left out).
    non_monotonic: (row, ts) for rows out of time order (left out).
    bad_ticks: (ts, TickProblem) for rows that are not a sane candle (left out).
    """

    symbol: str
    path: str
    rows_read: int
    rows_kept: int
    gaps: tuple[tuple[int, int], ...] = ()
    duplicates: tuple[tuple[int, int], ...] = ()
    non_monotonic: tuple[tuple[int, int], ...] = ()
    bad_ticks: tuple[tuple[int, str], ...] = ()
    conflicts: tuple[tuple[int, int], ...] = ()
    timeframe: str = ""
    spikes: tuple[tuple[int, str], ...] = ()
    newest_first: bool = False
    notes: tuple[str, ...] = ()  # how the reader interpreted the file (CSV dialects)

    @property
    def ok(self) -> bool:
        return not (
            self.gaps
            or self.duplicates
            or self.non_monotonic
            or self.bad_ticks
            or self.conflicts
            or self.spikes
        )

    @property
    def missing_bars(self) -> int:
        return sum(n for _, n in self.gaps)

    def summary(self) -> str:
        name = Path(self.path).name if self.path else "(memory)"
        head = f"{self.symbol} {self.timeframe} {name}: {self.rows_kept}/{self.rows_read} rows kept"
        if self.newest_first:
            head += " (newest-first file, sorted oldest first)"
        if self.notes:
            head += " (" + "; ".join(self.notes) + ")"
        if self.ok:
            return f"{head}; OK"
        parts = []
        if self.gaps:
            parts.append(
                f"{len(self.gaps)} gap(s), {self.missing_bars} missing bar(s), "
                f"first after {iso(self.gaps[0][0])}"
            )
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} duplicated ts")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflicting duplicate ts")
        if self.non_monotonic:
            parts.append(f"{len(self.non_monotonic)} out-of-order row(s)")
        if self.bad_ticks:
            counts: dict[str, int] = {}
            for _, reason in self.bad_ticks:
                counts[reason] = counts.get(reason, 0) + 1
            detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            parts.append(f"{len(self.bad_ticks)} bad tick(s) ({detail})")
        if self.spikes:
            ts, what = self.spikes[0]
            parts.append(
                f"{len(self.spikes)} price spike(s) kept, first at {iso(ts)}: {what} "
                "(the bad-tick guard keeps it out of marks)"
            )
        return f"{head}; " + "; ".join(parts)


def validate_raw(
    raw: RawCandles,
    *,
    symbol: str,
    timeframe: str,
    path: str = "",
    row_numbers: npt.NDArray[np.intp] | None = None,
    guard: OutlierGuard | None = None,
    notes: tuple[str, ...] = (),
) -> tuple[CandleSeries, DataReport, tuple[Problem, ...]]:
    """Judge rows as stored; returns the clean series, the report and the problems by row.

    row_numbers gives each raw row's row in the file when raw is a window of it. A file
    listed newest first (more steps back in time than forward) is read in reverse, and the
    report says so. guard: the outlier guard for suspect prices (its defaults when None).
    """
    newest_first = _newest_first(raw.ts)
    if newest_first:
        order = np.arange(len(raw.ts))[::-1]
        raw = raw.take(order)
        row_numbers = order if row_numbers is None else row_numbers[order]
    found = check_rows(raw, timeframe, row_numbers, guard)
    n = len(raw.ts)
    kept = raw if len(found.keep) == n else raw.take(found.keep)
    series = CandleSeries._trusted(check_symbol(symbol), timeframe, kept)
    report = DataReport(
        symbol=symbol,
        path=path,
        rows_read=n,
        rows_kept=len(series),
        gaps=found.gaps,
        duplicates=found.duplicates,
        non_monotonic=found.non_monotonic,
        bad_ticks=found.bad_ticks,
        conflicts=found.conflicts,
        timeframe=timeframe,
        spikes=found.spikes,
        newest_first=newest_first,
        notes=notes,
    )
    return series, report, found.problems


def _newest_first(ts: Int64Array) -> bool:
    if len(ts) < 2 or ts[0] <= ts[-1]:
        return False
    d = np.diff(ts)
    return int(np.count_nonzero(d < 0)) > int(np.count_nonzero(d > 0))


# -- files --------------------------------------------------------------------------------------


def find_candle_file(directory: str | Path, symbol: str, timeframe: str) -> Path:
    """The first of feather, parquet, json, json.gz, csv that exists for symbol/timeframe."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"candle directory {d} does not exist")
    names = [candle_filename(symbol, timeframe, fmt) for fmt in FORMATS]
    for name in names:
        if (d / name).is_file():
            return d / name
    present = sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
    shown = ", ".join(present[:20]) + (
        f", ... ({len(present) - 20} more)" if len(present) > 20 else ""
    )
    raise FileNotFoundError(
        f"no {symbol} {timeframe} candles in {d}: looked for {', '.join(names)}; "
        f"the directory holds: {shown or 'nothing'}"
    )


def list_pairs(directory: str | Path, timeframe: str) -> list[str]:
    """Symbols with a candle file of `timeframe` in `directory`, sorted."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"candle directory {d} does not exist")
    found = set()
    for p in d.iterdir():
        parsed = parse_candle_filename(p.name)
        if parsed is not None and parsed[1] == timeframe and p.is_file():
            found.add(parsed[0])
    return sorted(found)


def load_candles(
    path_or_dir: str | Path,
    symbol: str | None = None,
    timeframe: str | None = None,
    *,
    strict: bool = False,
    from_ms: int | None = None,
    to_ms: int | None = None,
    guard: OutlierGuard | None = None,
) -> tuple[CandleSeries, DataReport]:
    """Load and validate one candle file (or find it in a directory by symbol and timeframe).

    from_ms/to_ms keep only rows with from_ms <= ts < to_ms before validation, so the report
    speaks about that window. strict=True raises DataError on the first problem (suspect
    prices are kept and reported, never raised). guard: see validate_raw.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        if symbol is None or timeframe is None:
            raise ValueError(f"{path} is a directory: pass symbol= and timeframe= to pick a file")
        path = find_candle_file(path, symbol, timeframe)
    elif not path.is_file():
        raise FileNotFoundError(f"candle file {path} does not exist")
    symbol, timeframe = _name_parts(path, symbol, timeframe)
    raw, notes = read_candle_file(path, symbol)
    rows = None
    if from_ms is not None or to_ms is not None:
        mask = np.ones(len(raw.ts), dtype=bool)
        if from_ms is not None:
            mask &= raw.ts >= from_ms
        if to_ms is not None:
            mask &= raw.ts < to_ms
        raw, rows = raw.take(mask), np.flatnonzero(mask)
    series, report, problems = validate_raw(
        raw,
        symbol=symbol,
        timeframe=timeframe,
        path=str(path),
        row_numbers=rows,
        guard=guard,
        notes=notes,
    )
    if strict and problems:
        first = problems[0]
        raise DataError(
            f"{path}: row {first.row} (ts={first.ts}, {iso(first.ts)}): {first.text}"
            f" [{len(problems)} problem(s) in all; load with strict=False to see the report]"
        )
    return series, report


def _name_parts(path: Path, symbol: str | None, timeframe: str | None) -> tuple[str, str]:
    parsed = parse_candle_filename(path.name)
    if parsed is not None:
        if symbol is not None and symbol != parsed[0]:
            raise DataError(
                f"{path} holds {parsed[0]} by its name, but symbol={symbol!r} was asked"
            )
        if timeframe is not None and timeframe != parsed[1]:
            raise DataError(f"{path} holds {parsed[1]} candles by its name, not {timeframe!r}")
        return parsed[0], parsed[1]
    if symbol is None or timeframe is None:
        raise DataError(
            f"{path}: cannot tell symbol and timeframe from the name (expected BASE_QUOTE-5m.ext); "
            "pass symbol= and timeframe="
        )
    timeframe_ms(timeframe)
    return check_symbol(symbol), timeframe


def load_many(
    directory: str | Path,
    symbols: Sequence[str],
    timeframe: str,
    from_ms: int | None = None,
    to_ms: int | None = None,
    *,
    strict: bool = False,
    guard: OutlierGuard | None = None,
) -> dict[str, tuple[CandleSeries, DataReport]]:
    """Load each symbol's file from `directory`, keeping from_ms <= ts < to_ms."""
    return {
        s: load_candles(
            directory, s, timeframe, strict=strict, from_ms=from_ms, to_ms=to_ms, guard=guard
        )
        for s in symbols
    }


def load_required(
    directory: str | Path,
    symbols: Sequence[str],
    timeframe: str,
    from_ms: int | None = None,
    to_ms: int | None = None,
    *,
    guard: OutlierGuard | None = None,
) -> dict[str, tuple[CandleSeries, DataReport]]:
    """load_many for a run that needs every symbol: a missing file, or one without a
    usable candle in the window, is a DataError naming the pair, before anything runs."""
    d = Path(directory)
    out: dict[str, tuple[CandleSeries, DataReport]] = {}
    for s in symbols:
        try:
            series, report = load_candles(
                d, s, timeframe, from_ms=from_ms, to_ms=to_ms, guard=guard
            )
        except FileNotFoundError as exc:
            if not d.is_dir():
                raise
            raise DataError(f"pair {s} is required but has no candle file: {exc}") from None
        if not len(series):
            raise DataError(_empty_reason(d, s, timeframe, report, from_ms, to_ms))
        out[s] = (series, report)
    return out


def _empty_reason(
    d: Path, symbol: str, timeframe: str, report: DataReport, from_ms: int | None, to_ms: int | None
) -> str:
    where = f"pair {symbol} is required but {report.path}"
    if report.rows_read:
        return f"{where} has no usable {timeframe} candle: {report.summary()}"
    if from_ms is None and to_ms is None:
        return f"{where} holds no candles (0 rows); download or convert the data again"
    span = f"{iso(from_ms) if from_ms is not None else 'start'} .. "
    span += iso(to_ms) if to_ms is not None else "end"
    return f"{where} holds no candles in {span} (the window with warm-up); widen --from/--to"


def write_candles(path: str | Path, series: CandleSeries) -> Path:
    """Write atomically in the format the extension names; load_candles reads it back exactly."""
    p = Path(path)
    write_raw(p, series.to_raw())
    return p
