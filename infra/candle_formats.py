"""Candle file formats: freqtrade-style names, raw column readers and atomic writers.

Readers return `RawCandles` exactly as stored (no sorting, no dropping); judging the rows is
infra.candle_files' job. A file that cannot be read as candles at all raises `DataError`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

# pyarrow.compute, .csv and .parquet are imported where they are used: together they cost a
# tenth of a second at start-up, and a backtest of feather files (the common case) needs none.
import pyarrow.feather as feather

from core.candles import Int64Array, RawCandles, check_symbol
from core.errors import DataError

# Lookup order of find_candle_file: the fastest formats first.
FORMATS: tuple[str, ...] = ("feather", "parquet", "json", "json.gz", "csv")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

# Largest open/high/low/close and volume a candle may hold. Prices and quantities become
# Decimals quantized to the market's increments (28 significant digits): 1e12 quote per unit
# is far above any real market and still leaves room for 1e-8 increments.
MAX_PRICE = 1e12
MAX_VOLUME = 1e18
_LIMITS = (MAX_PRICE, MAX_PRICE, MAX_PRICE, MAX_PRICE, MAX_VOLUME)

# 1973-03-03 in epoch ms; smaller numeric timestamps are almost surely epoch seconds.
_MIN_PLAUSIBLE_MS = 100_000_000_000

_FILENAME = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)-(?P<tf>\d+[mhdw])"
    r"\.(?P<ext>feather|parquet|json\.gz|json|csv)$"
)
_INT_TEXT = re.compile(r"^-?\d+$")

# -- naming -------------------------------------------------------------------------------------


def candle_filename(symbol: str, timeframe: str, fmt: str = "feather") -> str:
    """'BTC/USDT', '5m', 'feather' -> 'BTC_USDT-5m.feather' (freqtrade's spot naming)."""
    check_format(fmt)
    return f"{check_symbol(symbol).replace('/', '_')}-{timeframe}.{fmt}"


def parse_candle_filename(name: str) -> tuple[str, str, str] | None:
    """'BTC_USDT-5m.json.gz' -> ('BTC/USDT', '5m', 'json.gz'); None if it is not one of ours."""
    m = _FILENAME.match(name)
    if m is None:
        return None
    return f"{m['base']}/{m['quote']}", m["tf"], m["ext"]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unsupported candle format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".json.gz"):
        return "json.gz"
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise DataError(
            f"{path}: unsupported candle file extension; "
            "use .feather, .parquet, .json, .json.gz or .csv"
        )
    return fmt


# -- reading ------------------------------------------------------------------------------------


def read_raw(path: Path) -> RawCandles:
    return read_candle_file(path)[0]


def read_candle_file(path: Path, symbol: str | None = None) -> tuple[RawCandles, tuple[str, ...]]:
    """The file's rows as stored, and notes on how it was read (CSV dialects). symbol (when
    the name does not tell) picks a CSV's base-asset volume column. Raises DataError for a
    file that is not candles, and for a number no price can be (see check_magnitudes)."""
    fmt = detect_format(path)
    notes: tuple[str, ...] = ()
    if symbol is None:
        parsed = parse_candle_filename(path.name)
        symbol = parsed[0] if parsed else None
    try:
        if fmt == "feather":
            raw = _table_to_raw(feather.read_table(path, memory_map=True), path)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            raw = _table_to_raw(pq.read_table(path), path)
        elif fmt == "csv":
            from infra.candle_csv import read_csv_candles

            raw, notes = read_csv_candles(path, symbol)
        else:
            opener = gzip.open if fmt == "json.gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
            raw = rows_to_raw(data, str(path))
    except DataError:
        raise
    except (OSError, EOFError, ValueError, pa.ArrowException) as e:
        # A truncated or foreign file: name it and the reader's complaint.
        raise DataError(f"{path}: cannot read as {fmt} candles: {e}") from e
    check_magnitudes(raw, str(path))
    return raw, notes


def check_magnitudes(raw: RawCandles, source: str) -> None:
    """Refuse the file when a price or volume is beyond what money arithmetic can hold: such a
    number (1e308) is corruption, not a market, and would fail deep inside a cycle. NaN and
    infinity stay row problems (bad ticks): they mean a missing value."""
    for name, col, limit in zip(PRICE_COLUMNS, raw[1:], _LIMITS, strict=True):
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(col) & (np.abs(col) > limit)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: row {i} (ts={int(raw.ts[i])}) has {name} {float(col[i]):g}, beyond "
                f"the largest {name} vigil accepts ({limit:g}); the file is damaged"
            )


def rows_to_raw(rows: Any, source: str) -> RawCandles:
    """[[ms, o, h, l, c, v], ...] (freqtrade JSON, ccxt fetch_ohlcv) -> columns."""
    if not isinstance(rows, list):
        raise DataError(f"{source}: expected a list of [ms, open, high, low, close, volume] rows")
    if not rows:
        return RawCandles.empty()
    try:
        arr = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 6:
        for i, row in enumerate(rows):
            if not isinstance(row, list | tuple) or len(row) != 6:
                raise DataError(
                    f"{source}: row {i} is {row!r}; expected [ms, open, high, low, close, volume]"
                ) from None
            try:
                np.array(row, dtype=np.float64)
            except (ValueError, TypeError):
                raise DataError(f"{source}: row {i} has a non-numeric value: {row!r}") from None
        raise DataError(f"{source}: rows are not a table of 6 numbers each")
    ts_f = arr[:, 0]
    bad = ~np.isfinite(ts_f) | (ts_f != np.floor(ts_f))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: row {i} has timestamp {rows[i][0]!r}; expected integer epoch ms"
        )
    ts = ts_f.astype(np.int64)
    _check_epoch_ms(ts, source)
    return RawCandles(ts, *(np.ascontiguousarray(arr[:, k]) for k in range(1, 6)))


def _check_epoch_ms(ts: Int64Array, source: str) -> None:
    if len(ts) and int(np.abs(ts).max()) < _MIN_PLAUSIBLE_MS:
        raise DataError(
            f"{source}: timestamps look like epoch seconds (first {int(ts[0])}); "
            "store candle open times as epoch milliseconds"
        )


def _column_map(names: list[str], source: str) -> tuple[str, dict[str, str]]:
    """Case-insensitive lookup of the time column (date or timestamp) and the OHLCV columns."""
    lower = {n.strip().lower(): n for n in names}
    time_col = lower.get("date") or lower.get("timestamp")
    missing = [c for c in PRICE_COLUMNS if c not in lower]
    if time_col is None or missing:
        need = (["date|timestamp"] if time_col is None else []) + missing
        raise DataError(
            f"{source}: missing column(s) {', '.join(need)}; found {', '.join(names) or 'none'}. "
            "Expected date (or timestamp), open, high, low, close, volume"
        )
    return time_col, {c: lower[c] for c in PRICE_COLUMNS}


def _table_to_raw(table: pa.Table, path: Path) -> RawCandles:
    time_col, cols = _column_map(table.column_names, str(path))
    ts = _arrow_ts_ms(table.column(time_col), str(path))
    values = []
    for name in PRICE_COLUMNS:
        col = table.column(cols[name])
        t = col.type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
            raise DataError(f"{path}: column {name} has type {t}; expected a number")
        if t != pa.float64():
            import pyarrow.compute as pc

            col = pc.cast(col, pa.float64())
        # Nulls become NaN, which validation reports as a bad tick.
        values.append(np.ascontiguousarray(col.to_numpy(), dtype=np.float64))
    return RawCandles(ts, *values)


_UNIT_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def _arrow_ts_ms(col: pa.ChunkedArray, source: str) -> Int64Array:
    if col.null_count:
        import pyarrow.compute as pc

        row = int(pc.index(pc.is_null(col), True).as_py())
        raise DataError(f"{source}: row {row} has no timestamp (null); every candle needs one")
    t = col.type
    if pa.types.is_timestamp(t):
        # Arrow stores UTC epoch values whatever the tz label says; naive ones are taken as UTC.
        # to_numpy keeps the unit (datetime64[unit]); its int64 view is the stored value.
        mul, div = _UNIT_MS[t.unit]
        raw: Int64Array = col.to_numpy().astype(f"datetime64[{t.unit}]", copy=False).view(np.int64)
        if div > 1:
            ms, rest = np.divmod(raw, div)
            if rest.any():
                row = int(np.flatnonzero(rest)[0])
                raise DataError(f"{source}: row {row} has a sub-millisecond timestamp")
            return ms
        return raw * mul if mul > 1 else raw
    if pa.types.is_date64(t) or pa.types.is_integer(t):
        import pyarrow.compute as pc

        ts = np.asarray(pc.cast(col, pa.int64()).to_numpy(), dtype=np.int64)
        _check_epoch_ms(ts, source)
        return ts
    raise DataError(f"{source}: time column has type {t}; expected a timestamp or epoch ms")


# -- writing ------------------------------------------------------------------------------------


def write_raw(path: Path, raw: RawCandles) -> None:
    """Write atomically (temp file in the same directory, fsync, os.replace)."""
    fmt = detect_format(path)
    writer = _WRITERS[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: writer(tmp, raw))


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _to_table(raw: RawCandles) -> pa.Table:
    # freqtrade's layout: date is timestamp[ns, UTC].
    date = pa.array(raw.ts.astype(np.int64) * 1_000_000, type=pa.timestamp("ns", tz="UTC"))
    cols = [pa.array(np.asarray(c, dtype=np.float64), type=pa.float64()) for c in raw[1:]]
    return pa.Table.from_arrays([date, *cols], names=["date", *PRICE_COLUMNS])


def _write_feather(path: Path, raw: RawCandles) -> None:
    feather.write_feather(_to_table(raw), path)


def _write_parquet(path: Path, raw: RawCandles) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_to_table(raw), path)


def _json_text(raw: RawCandles) -> str:
    rows = zip(raw.ts.tolist(), *(c.tolist() for c in raw[1:]), strict=True)
    return json.dumps([list(r) for r in rows], separators=(",", ":"))


def _write_json(path: Path, raw: RawCandles) -> None:
    path.write_text(_json_text(raw), encoding="utf-8")


def _write_json_gz(path: Path, raw: RawCandles) -> None:
    # mtime=0 keeps the bytes a function of the data alone.
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(_json_text(raw).encode("utf-8"))


def _iso_ms(ts: int) -> str:
    dt = datetime.fromtimestamp(ts // 1000, tz=UTC)
    ms = ts % 1000
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}Z" if ms else "Z")


def _write_csv(path: Path, raw: RawCandles) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["date", *PRICE_COLUMNS])
    # repr() of a float is the shortest text that reads back to the same float.
    cols = [c.tolist() for c in raw[1:]]
    for i, ts in enumerate(raw.ts.tolist()):
        w.writerow([_iso_ms(ts), *(repr(c[i]) for c in cols)])
    path.write_text(buf.getvalue(), encoding="utf-8")


_WRITERS: dict[str, Callable[[Path, RawCandles], None]] = {
    "feather": _write_feather,
    "parquet": _write_parquet,
    "json": _write_json,
    "json.gz": _write_json_gz,
    "csv": _write_csv,
}
