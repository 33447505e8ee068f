"""Row checks for candle data: bad ticks, duplicates, out-of-order rows and gaps.

Pure numpy over `RawCandles`; the clean-data path is fully vectorised and only data that is
out of order or duplicated takes the slower per-run path. infra.candle_files turns `Findings`
into a `CandleSeries` and a `DataReport`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from core.candles import FloatArray, Int64Array, RawCandles, iso
from core.clock import DAY_MS, WEEK_MS, timeframe_ms
from core.config import OutlierGuard
from core.triggers import is_outlier

IndexArray = npt.NDArray[np.intp]


class TickProblem(StrEnum):
    """Machine-readable reasons a row is a bad tick; the first that applies is reported."""

    NAN = "NAN"  # a NaN, infinite or missing value
    MISALIGNED_TS = "MISALIGNED_TS"  # open time not on the timeframe grid
    NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"
    HIGH_BELOW_LOW = "HIGH_BELOW_LOW"
    OPEN_OUTSIDE_RANGE = "OPEN_OUTSIDE_RANGE"
    CLOSE_OUTSIDE_RANGE = "CLOSE_OUTSIDE_RANGE"
    NEGATIVE_VOLUME = "NEGATIVE_VOLUME"


_PROBLEM_ORDER = tuple(TickProblem)


class Problem(NamedTuple):
    """One finding, for strict mode's error: the file row, the ts it concerns, what is wrong."""

    row: int
    ts: int
    text: str


class Findings(NamedTuple):
    keep: IndexArray  # rows that make the clean series, in file (= time) order
    gaps: tuple[tuple[int, int], ...]
    duplicates: tuple[tuple[int, int], ...]
    conflicts: tuple[tuple[int, int], ...]
    non_monotonic: tuple[tuple[int, int], ...]
    bad_ticks: tuple[tuple[int, str], ...]
    problems: tuple[Problem, ...]  # sorted by row
    spikes: tuple[tuple[int, str], ...]  # kept rows that look like bad prints


def alignment_offset_ms(timeframe: str) -> int:
    """Candles open at multiples of the timeframe, except weeks, which open on Mondays."""
    return 4 * DAY_MS if timeframe_ms(timeframe) % WEEK_MS == 0 else 0


def check_rows(
    raw: RawCandles,
    timeframe: str,
    row_numbers: IndexArray | None = None,
    guard: OutlierGuard | None = None,
) -> Findings:
    """Judge every row. row_numbers: the file row of each raw row, when raw is a subset.
    guard: the pipeline's outlier guard (its defaults when None) for `spikes`."""
    tf = timeframe_ms(timeframe)
    ts = raw.ts
    codes = _tick_codes(raw, tf, alignment_offset_ms(timeframe))
    problems: list[Problem] = []
    bad_rows = np.flatnonzero(codes)
    bad_ticks = [(int(ts[i]), _PROBLEM_ORDER[codes[i] - 1].value) for i in bad_rows]
    problems += [Problem(int(i), t, r) for i, (t, r) in zip(bad_rows, bad_ticks, strict=True)]

    keep = np.flatnonzero(codes == 0) if len(bad_rows) else np.arange(len(ts))
    duplicates: list[tuple[int, int]] = []
    conflicts: list[tuple[int, int]] = []
    non_monotonic: list[tuple[int, int]] = []
    if len(keep) > 1 and not bool(np.all(np.diff(ts[keep]) > 0)):
        keep = _drop_duplicates(raw, keep, duplicates, conflicts, problems)
        keep = _drop_out_of_order(ts, keep, non_monotonic, problems)

    kept_ts = ts[keep]
    gaps = _gaps(kept_ts, tf)
    all_kept = len(keep) == len(ts)
    spiked = spikes(
        kept_ts,
        raw.close if all_kept else raw.close[keep],
        raw.volume if all_kept else raw.volume[keep],
        guard or OutlierGuard(),
    )
    for after, missing in gaps:
        row = int(keep[int(np.searchsorted(kept_ts, after)) + 1])
        problems.append(
            Problem(row, after + tf, f"GAP: {missing} bar(s) missing after {iso(after)}")
        )
    if row_numbers is not None:
        problems = [p._replace(row=int(row_numbers[p.row])) for p in problems]
        non_monotonic = [(int(row_numbers[r]), t) for r, t in non_monotonic]
    problems.sort(key=lambda p: p.row)
    return Findings(
        keep=keep,
        gaps=gaps,
        duplicates=tuple(duplicates),
        conflicts=tuple(conflicts),
        non_monotonic=tuple(non_monotonic),
        bad_ticks=tuple(bad_ticks),
        problems=tuple(problems),
        spikes=spiked,
    )


def _tick_codes(raw: RawCandles, tf: int, offset: int) -> npt.NDArray[np.int8]:
    ts, o, h, low, c, v = raw
    codes = np.zeros(len(ts), dtype=np.int8)
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & np.isfinite(v)
    with np.errstate(invalid="ignore"):
        checks = (
            ~finite,
            (ts - offset) % tf != 0,
            (o <= 0) | (h <= 0) | (low <= 0) | (c <= 0),
            h < low,
            (o < low) | (o > h),
            (c < low) | (c > h),
            v < 0,
        )
    # Later assignments win, so walk from the least to the most important reason.
    for code in range(len(checks), 0, -1):
        codes[checks[code - 1]] = code
    return codes


def _drop_duplicates(
    raw: RawCandles,
    rows: IndexArray,
    duplicates: list[tuple[int, int]],
    conflicts: list[tuple[int, int]],
    problems: list[Problem],
) -> IndexArray:
    """Exact copies keep their first row; copies that disagree are all left out."""
    ts = raw.ts
    order = rows[np.argsort(ts[rows], kind="stable")]
    st = ts[order]
    starts = np.flatnonzero(np.concatenate(([True], st[1:] != st[:-1])))
    ends = np.append(starts[1:], len(st))
    multi = ends - starts > 1
    drop: list[int] = []
    for s, e in zip(starts[multi].tolist(), ends[multi].tolist(), strict=True):
        same = order[s:e]  # file order within a run: the sort is stable
        first = int(same[0])
        t = int(st[s])
        exact = all(bool(np.all(col[same] == col[first])) for col in raw[1:])
        if exact:
            duplicates.append((t, e - s))
            drop += [int(i) for i in same[1:]]
            problems += [Problem(int(i), t, f"DUPLICATE of row {first}") for i in same[1:]]
        else:
            conflicts.append((t, e - s))
            drop += [int(i) for i in same]
            text = f"CONFLICTING_DUPLICATE ({e - s} rows with this ts disagree)"
            problems += [Problem(int(i), t, text) for i in same]
    if not drop:
        return rows
    return np.setdiff1d(rows, np.asarray(drop, dtype=rows.dtype), assume_unique=True)


def _drop_out_of_order(
    ts: Int64Array,
    rows: IndexArray,
    non_monotonic: list[tuple[int, int]],
    problems: list[Problem],
) -> IndexArray:
    """Keep the longest run of rows in increasing time order; report the rest.

    Comparing each row with its neighbour alone would let one far-future row disqualify
    everything after it; the longest increasing subsequence leaves out the fewest rows.
    """
    values = ts[rows]
    if len(values) < 2 or bool(np.all(np.diff(values) > 0)):
        return rows
    tails: list[int] = []  # smallest last ts of an increasing run of each length
    tail_idx: list[int] = []
    prev = np.full(len(values), -1, dtype=np.int64)
    for i, x in enumerate(values.tolist()):
        k = bisect_left(tails, x)
        if k == len(tails):
            tails.append(x)
            tail_idx.append(i)
        else:
            tails[k] = x
            tail_idx[k] = i
        prev[i] = tail_idx[k - 1] if k else -1
    keep = np.zeros(len(values), dtype=bool)
    i = tail_idx[-1]
    while i >= 0:
        keep[i] = True
        i = int(prev[i])
    for j in np.flatnonzero(~keep).tolist():
        row, t = int(rows[j]), int(values[j])
        non_monotonic.append((row, t))
        problems.append(Problem(row, t, "NON_MONOTONIC (earlier than a row above it)"))
    return rows[keep]


def spikes(
    ts: Int64Array, close: FloatArray, volume: FloatArray, guard: OutlierGuard
) -> tuple[tuple[int, str], ...]:
    """Bad prints in a clean series: (ts, what the guard saw) for each bar the pipeline's
    bad-tick guard (core.triggers.is_outlier, the one definition) calls an outlier and whose
    close jumped away from the previous close and back to the next one by more than the
    guard's band (max_deviation_pct of the median) each way. A real move stays out there or
    gets there over several bars; a bad print is one bar out and straight back (none of the
    ~1.5 million real Binance bars in ../shared/data is one). The last bar cannot be judged.
    The rows are kept: the pipeline never lets such a price raise a mark (core.marks).

    The median is only computed where it could matter: it lies between the window's lowest
    and highest close, so a close within max_deviation of both needs no median at all.
    """
    n, w = len(close), guard.median_lookback
    if n < w + 2:
        return ()
    low, high = _window_bounds(close, w)
    later = close[w:-1]  # bar i = k + w; the last bar has no next bar to judge it by
    d = guard.max_deviation_pct / 100.0
    with np.errstate(invalid="ignore"):
        # Necessary conditions, vectorised: the median lies between the window's lowest and
        # highest close, so the band (d x median) is at least d x the lowest. A hair of slack
        # so rounding here never hides a row the exact test would flag.
        band = d * (1.0 - 1e-9) * low
        maybe = (later > (1.0 + d) * (1.0 - 1e-9) * low) | (later < (1.0 - d) * (1.0 + 1e-9) * high)
        maybe &= np.abs(later - close[w - 1 : -2]) > band
        maybe &= np.abs(close[w + 1 :] - later) > band
    out: list[tuple[int, str]] = []
    for k in np.flatnonzero(maybe).tolist():
        i = k + w
        med = float(np.median(close[k:i]))
        avg = math.fsum(volume[k:i].tolist()) / w
        c, v = float(close[i]), float(volume[i])
        if not is_outlier(c, v, med, avg, guard):
            continue
        jump = d * med
        if abs(c - float(close[i - 1])) <= jump or abs(float(close[i + 1]) - c) <= jump:
            continue  # no jump out and straight back: a move, not a print
        out.append((int(ts[i]), f"close {c:g} vs median {med:g}, volume {v:g} (avg {avg:g})"))
    return tuple(out)


def _window_bounds(close: FloatArray, w: int) -> tuple[FloatArray, FloatArray]:
    """For k = 0 .. n - w - 2, a lower bound of min(close[k : k + w]) and an upper bound of
    its max, in O(n): the window lies within two consecutive blocks of w closes."""
    n = len(close)
    blocks = -(-n // w)
    padded = np.full(blocks * w, np.nan)
    padded[:n] = close
    with np.errstate(invalid="ignore"):
        bmin = np.append(np.nanmin(padded.reshape(blocks, w), axis=1), np.inf)
        bmax = np.append(np.nanmax(padded.reshape(blocks, w), axis=1), -np.inf)
    k = np.arange(n - w - 1) // w
    return np.minimum(bmin[k], bmin[k + 1]), np.maximum(bmax[k], bmax[k + 1])


def _gaps(ts: Int64Array, tf: int) -> tuple[tuple[int, int], ...]:
    if len(ts) < 2:
        return ()
    d = np.diff(ts)
    at = np.flatnonzero(d != tf)
    return tuple((int(ts[i]), int(d[i] // tf) - 1) for i in at)
