"""CSV candles as free sources export them, read into `RawCandles` plus notes on how.

Handled: banner lines above the header (CryptoDataDownload's URL line), a time column named
unix, timestamp, open_time, date, datetime or time (an epoch column wins over a date one),
epoch seconds, milliseconds, microseconds or nanoseconds (judged per row: some exports
switch midway), ISO-8601 and 12-hour times with AM/PM, extra columns, and volume in the
base asset (`volume`, `Volume BTC`) or, failing that, in the quote asset (`Volume USDT`,
`quote_volume`), which is divided by the close. Rows stay in file order; newest-first files
are turned around by validation (infra.candle_files), which reports it.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.candles import Int64Array, RawCandles
from core.errors import DataError
from infra.candle_formats import PRICE_COLUMNS

HEADER_SEARCH_LINES = 10  # a header further down than this is not a banner's doing

# Preference order: epoch numbers are unambiguous, date text is not.
TIME_COLUMNS = (
    "unix",
    "unix timestamp",
    "timestamp",
    "open_time",
    "open time",
    "date",
    "datetime",
    "time",
)
_QUOTE_VOLUME_NAMES = ("quote_volume", "quote volume", "quote_asset_volume", "quote asset volume")

# Epoch magnitudes, per row: below 1e11 is seconds (until 5138), below 1e14 milliseconds,
# below 1e17 microseconds, else nanoseconds.
_MS_FROM = ((100_000_000_000, 1000, 1), (100_000_000_000_000, 1, 1), (10**17, 1, 1000))
_NUMBER_TEXT = re.compile(r"^\s*-?\d+(\.\d*)?\s*$")

# 12-hour and other non-ISO layouts, tried in order once ISO-8601 fails. Slashes are read
# month/day/year (the US layout these exports use).
_TIME_FORMATS = (
    "%Y-%m-%d %I:%M:%S %p",
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%d %I-%p",
    "%Y-%m-%d %I %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
)


def read_csv_candles(path: Path, symbol: str | None) -> tuple[RawCandles, tuple[str, ...]]:
    """The file's candles in file order, and notes on how it was read (for the report)."""
    head = _first_lines(path)
    at = _header_line(head, str(path))
    header = next(csv.reader([head[at]]))
    notes: list[str] = []
    if at:
        notes.append(f"skipped {at} line(s) above the header")
    time_col, price_cols, vol_col, vol_is_quote = _columns(header, symbol, str(path))
    names = [h.strip().lower() for h in header]
    if (
        time_col.strip().lower() not in ("date", "timestamp")
        or sum(n in TIME_COLUMNS for n in names) > 1
    ):
        notes.append(f"time from '{time_col.strip()}'")
    if vol_col.strip().lower() != "volume":
        notes.append(
            f"volume from '{vol_col.strip()}'"
            + (" (quote asset, divided by close)" if vol_is_quote else " (base asset)")
        )
    wanted = [time_col, *price_cols, vol_col]
    ignored = [h.strip() for h in header if h not in wanted and h.strip()]
    if ignored:
        notes.append(f"ignored column(s) {', '.join(ignored)}")
    numeric = [*price_cols, vol_col]
    try:
        table = _read_table(
            path, at, wanted, {time_col: pa.string()} | dict.fromkeys(numeric, pa.float64())
        )
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: {_bad_number(path, at, wanted, numeric, str(e))}") from None
    ts, unit_note = parse_times(table.column(time_col), str(path), first_line=at + 2)
    if unit_note:
        notes.append(unit_note)
    values = [
        np.ascontiguousarray(table.column(c).to_numpy(), dtype=np.float64)
        for c in [*price_cols, vol_col]
    ]
    if vol_is_quote:
        with np.errstate(divide="ignore", invalid="ignore"):
            values[4] = values[4] / values[3]
    return RawCandles(ts, *values), tuple(notes)


def _first_lines(path: Path) -> list[str]:
    lines: list[str] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line in f:
            if line.strip():
                lines.append(line.rstrip("\r\n"))
            else:
                lines.append("")
            if len(lines) >= HEADER_SEARCH_LINES:
                break
    return lines


def _is_header(fields: list[str]) -> bool:
    names = {f.strip().lower() for f in fields}
    return bool(names & set(TIME_COLUMNS)) and {"open", "high", "low", "close"} <= names


def _header_line(lines: list[str], source: str) -> int:
    if not lines:
        raise DataError(f"{source}: the file is empty (no header, no rows)")
    for i, line in enumerate(lines):
        if _is_header(next(csv.reader([line]), [])):
            return i
    first = next(csv.reader([lines[0]]), [])
    if first and all(_NUMBER_TEXT.match(f) or not f.strip() for f in first[1:]):
        raise DataError(
            f"{source}: no header line: line 1 is already data ({lines[0][:60]!r}). Add a "
            "header naming the columns: date (or unix/timestamp), open, high, low, close, volume"
        )
    raise DataError(
        f"{source}: no header naming a time column ({', '.join(TIME_COLUMNS)}) and open, "
        f"high, low, close in the first {len(lines)} line(s); line 1 is {lines[0][:80]!r}"
    )


def _columns(
    header: list[str], symbol: str | None, source: str
) -> tuple[str, list[str], str, bool]:
    """(time column, [open, high, low, close] columns, volume column, volume is quote)."""
    lower = {n.strip().lower(): n for n in header}
    time_col = next(lower[n] for n in TIME_COLUMNS if n in lower)
    price_cols = [lower[c] for c in PRICE_COLUMNS[:4]]
    if "volume" in lower:
        return time_col, price_cols, lower["volume"], False
    base, quote = symbol.split("/") if symbol else ("", "")
    by_asset = {n[len("volume") :].strip(" _").upper(): n for n in lower if n.startswith("volume")}
    if base and base in by_asset:
        return time_col, price_cols, lower[by_asset[base]], False
    quote_cols = [lower[n] for n in _QUOTE_VOLUME_NAMES if n in lower]
    if quote and quote in by_asset:
        quote_cols.insert(0, lower[by_asset[quote]])
    if quote_cols:
        return time_col, price_cols, quote_cols[0], True
    found = ", ".join(h.strip() for h in header)
    hint = f" (for {symbol}: 'Volume {base}' or 'Volume {quote}')" if symbol else ""
    raise DataError(
        f"{source}: no volume column: expected 'volume' or a volume in the base or quote "
        f"asset{hint}; found {found}"
    )


def _read_table(
    path: Path, skip: int, columns: list[str], types: dict[str, pa.DataType]
) -> pa.Table:
    import pyarrow.csv as pa_csv

    return pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(skip_rows=skip, encoding="utf-8"),
        convert_options=pa_csv.ConvertOptions(
            include_columns=columns, column_types=types, strings_can_be_null=True
        ),
    )


def _bad_number(path: Path, skip: int, columns: list[str], numeric: list[str], why: str) -> str:
    """Name the first cell that is not a number (pyarrow's message has no row number)."""
    try:
        table = _read_table(path, skip, columns, dict.fromkeys(columns, pa.string()))
    except pa.ArrowInvalid as e:
        return f"cannot read as CSV candles: {str(e).splitlines()[0]}"
    for row in range(table.num_rows):
        for col in numeric:
            value = table.column(col)[row].as_py()
            if value is None or not value.strip():
                continue
            try:
                float(value)
            except ValueError:
                return (
                    f"row {row} (line {row + skip + 2}), column {col.strip()}: {value!r} is not "
                    "a number"
                )
    return f"cannot read as CSV candles: {why.splitlines()[0]}"


def parse_times(text: pa.ChunkedArray, source: str, *, first_line: int) -> tuple[Int64Array, str]:
    """Open times as epoch ms, and a note naming the epoch unit(s) when the column is numeric.
    first_line: the file line of the first value, for error messages."""
    import pyarrow.compute as pc

    if text.null_count:
        row = int(pc.index(pc.is_null(text), True).as_py())
        raise DataError(f"{source}: row {row} (line {row + first_line}) has an empty time")
    if len(text) and pc.all(pc.match_substring_regex(text, _NUMBER_TEXT.pattern)).as_py():
        return _epoch_ms(np.asarray(pc.cast(pc.utf8_trim_whitespace(text), pa.float64())))
    out = np.empty(len(text), dtype=np.int64)
    fmt: str | None = None
    for i, value in enumerate(text.to_pylist()):
        s = value.strip()
        if _NUMBER_TEXT.match(s):
            out[i] = _epoch_ms(np.array([float(s)]))[0][0]
            continue
        dt, fmt = _parse_time(s, fmt)
        if dt is None:
            raise DataError(
                f"{source}: row {i} (line {i + first_line}) has time {value!r}; use ISO-8601 "
                "(2024-01-01T00:00:00Z), '2024-01-01 01:00 PM', month/day/year, or epoch "
                "seconds or milliseconds"
            )
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)  # documented: a time without an offset is UTC
        if dt.microsecond % 1000:
            raise DataError(f"{source}: row {i} (line {i + first_line}) has a sub-millisecond time")
        out[i] = whole_ms(dt)
    return out, ""


def _parse_time(s: str, fmt: str | None) -> tuple[datetime | None, str | None]:
    """The time, and the strptime layout that read it (tried first on the next row)."""
    if fmt is None:
        try:
            return datetime.fromisoformat(s), None
        except ValueError:
            pass
    for f in ((fmt,) if fmt else ()) + _TIME_FORMATS:
        try:
            return datetime.strptime(s.upper(), f).replace(tzinfo=UTC), f
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(s), None
    except ValueError:
        return None, fmt


def _epoch_ms(values: np.ndarray) -> tuple[Int64Array, str]:
    if not len(values):
        return np.empty(0, dtype=np.int64), ""
    mag = np.abs(values)
    units: list[str] = []
    out = np.empty(len(values), dtype=np.float64)
    rest = np.ones(len(values), dtype=bool)
    for (limit, mul, div), name in zip(
        _MS_FROM, ("seconds", "milliseconds", "microseconds"), strict=True
    ):
        sel = rest & (mag < limit)
        if sel.any():
            units.append(name)
            out[sel] = values[sel] * mul / div
        rest &= ~sel
    if rest.any():
        units.append("nanoseconds")
        out[rest] = values[rest] / 1_000_000
    ms = np.round(out).astype(np.int64)
    note = "epoch " + " and ".join(units) if units != ["milliseconds"] else ""
    return ms, note


def whole_ms(dt: datetime) -> int:
    # Integer arithmetic: float timestamps can be one ms off for some dates.
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
