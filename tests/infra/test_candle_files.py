"""Candle I/O: real Binance files, format round trips, every bad-data kind, synthetic data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from backtest.synthetic import generate_candles
from core.candles import CandleSeries
from core.clock import DAY_MS
from infra.candle_files import (
    FORMATS,
    DataError,
    DataReport,
    TickProblem,
    candle_filename,
    find_candle_file,
    list_pairs,
    load_candles,
    load_many,
    write_candles,
)
from infra.candle_formats import parse_candle_filename

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
M5 = 300_000


def shared_dir(name: str) -> Path:
    d = SHARED / name
    if not d.is_dir():
        pytest.skip(f"real candles not found at {d} (../shared/data is absent on this machine)")
    return d


def good_rows(n: int = 6, start: int = T0) -> list[list[float]]:
    return [[start + i * M5, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 10.0 + i] for i in range(n)]


def write_json_rows(path: Path, rows: list[list[float]]) -> Path:
    path.write_text(json.dumps(rows))
    return path


# -- real data ----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_2024_btc_5m_loads_clean() -> None:
    series, report = load_candles(shared_dir("binance_spot_2024") / "BTC_USDT-5m.feather")
    assert (series.symbol, series.timeframe) == ("BTC/USDT", "5m")
    assert len(series) == report.rows_read == report.rows_kept == 71_769
    assert series.first_ts == T0
    assert series.last_ts == 1_725_597_600_000  # 2024-09-06T04:40:00Z
    assert report.gaps == ()
    assert report.ok, report.summary()
    assert np.all(np.diff(series.ts) == M5)
    assert series.ts.dtype == np.int64 and series.close.dtype == np.float64


@pytest.mark.shared_data
@pytest.mark.parametrize("pair", ["BTC/USDT", "ETH/USDT"])
def test_real_2023_5m_reports_its_16_missing_bars(pair: str) -> None:
    d = shared_dir("binance_spot_2023")
    series, report = load_candles(d, pair, "5m")
    assert report.rows_read == report.rows_kept == len(series) == 104_816
    # Binance's outage of 2023-03-24: the candles from 12:40 to 13:55 UTC never existed.
    assert report.gaps == ((1_679_661_300_000, 16),)
    assert report.missing_bars == 16
    assert not report.ok
    assert (report.duplicates, report.bad_ticks, report.non_monotonic) == ((), (), ())
    assert "16 missing bar(s)" in report.summary()
    with pytest.raises(DataError, match=r"BTC_USDT-5m.feather|ETH_USDT-5m.feather") as e:
        load_candles(d, pair, "5m", strict=True)
    assert "GAP: 16 bar(s) missing after 2023-03-24T12:35:00Z" in str(e.value)


@pytest.mark.shared_data
def test_real_directory_listing_and_window() -> None:
    d = shared_dir("binance_spot_2024")
    pairs = list_pairs(d, "1h")
    assert len(pairs) == 15 and pairs[:2] == ["ATOM/USDT", "AVAX/USDT"] and "BTC/USDT" in pairs
    got = load_many(d, ["BTC/USDT", "ETH/USDT"], "5m", from_ms=T0 + DAY_MS, to_ms=T0 + 2 * DAY_MS)
    assert list(got) == ["BTC/USDT", "ETH/USDT"]
    for series, report in got.values():
        assert len(series) == 288 and report.ok
        assert (series.first_ts, series.last_ts) == (T0 + DAY_MS, T0 + 2 * DAY_MS - M5)


# -- series -------------------------------------------------------------------------------------


def test_series_slice_is_half_open_and_read_only() -> None:
    s = generate_candles("BTC/USDT", "5m", T0, 10, seed=1)
    part = s.slice(T0 + 2 * M5, T0 + 5 * M5)
    assert part.ts.tolist() == [T0 + 2 * M5, T0 + 3 * M5, T0 + 4 * M5]
    assert (part.first_ts, part.last_ts) == (T0 + 2 * M5, T0 + 4 * M5)
    assert len(s.slice(None, None)) == 10 and len(s.slice(T0 + 99 * M5, None)) == 0
    with pytest.raises(ValueError, match="read-only"):
        s.close[0] = 1.0
    with pytest.raises(ValueError, match="empty"):
        _ = s.slice(T0 + 99 * M5).first_ts
    c = s.candle(3)
    assert c.ts == T0 + 3 * M5 and float(c.close) == s.close[3]


def test_series_rejects_unordered_or_ragged_columns() -> None:
    f = np.ones(3)
    with pytest.raises(ValueError, match="strictly increasing; index 2"):
        CandleSeries("BTC/USDT", "5m", np.array([T0, T0 + M5, T0 + M5]), f, f, f, f, f)
    with pytest.raises(ValueError, match="has 2 values"):
        CandleSeries("BTC/USDT", "5m", np.array([T0, T0 + M5, T0 + 2 * M5]), f, f[:2], f, f, f)
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        CandleSeries.empty("BTCUSDT", "5m")
    with pytest.raises(ValueError, match="bad timeframe"):
        CandleSeries.empty("BTC/USDT", "5x")


# -- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_exactly(tmp_path: Path, fmt: str) -> None:
    original = generate_candles("ETH/USDT", "5m", T0, 500, seed=7, start_price=2345.678)
    path = write_candles(tmp_path / candle_filename("ETH/USDT", "5m", fmt), original)
    assert path.name == f"ETH_USDT-5m.{fmt}"
    back, report = load_candles(path)
    assert back.equals(original)
    assert report.ok and report.rows_read == 500
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_written_feather_is_freqtrade_layout(tmp_path: Path) -> None:
    s = generate_candles("BTC/USDT", "1h", T0, 24, seed=2)
    path = write_candles(tmp_path / "BTC_USDT-1h.feather", s)
    table = feather.read_table(path)
    assert table.column_names == ["date", "open", "high", "low", "close", "volume"]
    assert table.schema.field("date").type == pa.timestamp("ns", tz="UTC")
    assert table.column("date")[0].value == T0 * 1_000_000


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin"])
def test_feather_times_in_any_unit_and_zone_read_as_epoch_ms(
    tmp_path: Path, unit: str, tz: str | None
) -> None:
    """Arrow stores UTC epoch values whatever the zone label; each unit scales to ms."""
    per_ms = {"s": 0.001, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    stamps = [int((T0 + i * 300_000) * per_ms) for i in range(3)]
    table = pa.table(
        {"date": pa.array(stamps, type=pa.timestamp(unit, tz=tz))}
        | {c: pa.array([1.0, 1.0, 1.0]) for c in ("open", "high", "low", "close", "volume")}
    )
    feather.write_feather(table, tmp_path / "BTC_USDT-5m.feather")
    series, _ = load_candles(tmp_path, "BTC/USDT", "5m")
    assert series.ts.tolist() == [T0, T0 + 300_000, T0 + 600_000]


def test_sub_millisecond_feather_times_are_refused(tmp_path: Path) -> None:
    table = pa.table(
        {"date": pa.array([T0 * 1000 + 1], type=pa.timestamp("us"))}
        | {c: pa.array([1.0]) for c in ("open", "high", "low", "close", "volume")}
    )
    feather.write_feather(table, tmp_path / "BTC_USDT-5m.feather")
    with pytest.raises(DataError, match="row 0 has a sub-millisecond timestamp"):
        load_candles(tmp_path, "BTC/USDT", "5m")


def test_json_gz_is_freqtrade_rows(tmp_path: Path) -> None:
    s = generate_candles("BTC/USDT", "5m", T0, 3, seed=2)
    path = write_candles(tmp_path / "BTC_USDT-5m.json.gz", s)
    rows = json.loads(gzip.decompress(path.read_bytes()))
    assert rows[0] == [T0, s.open[0], s.high[0], s.low[0], s.close[0], s.volume[0]]


@pytest.mark.parametrize(
    ("header", "stamps"),
    [
        ("date", ["2024-01-01T00:00:00Z", "2024-01-01T00:05:00+00:00", "2024-01-01 00:10:00"]),
        ("timestamp", [str(T0), str(T0 + M5), str(T0 + 2 * M5)]),
        ("Date", ["2024-01-01T01:00:00+01:00", "2024-01-01T00:05:00Z", "2024-01-01T00:10:00.000Z"]),
    ],
)
def test_csv_reads_iso_and_epoch_ms(tmp_path: Path, header: str, stamps: list[str]) -> None:
    lines = [f"{header},open,high,low,close,volume,extra"]
    lines += [f"{t},1.0,2.0,0.5,1.5,3.0,x" for t in stamps]
    path = tmp_path / "BTC_USDT-5m.csv"
    path.write_text("\n".join(lines) + "\n")
    series, report = load_candles(path)
    assert series.ts.tolist() == [T0, T0 + M5, T0 + 2 * M5]
    assert report.ok


def test_csv_with_epoch_seconds_loads_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-5m.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1704067200,1,2,0.5,1.5,3\n")
    series, report = load_candles(path)
    assert series.ts.tolist() == [T0]
    assert "epoch seconds" in report.summary()


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("BTC_USDT-5m.csv", "when,open,high,low,close,volume\n1,1,1,1,1,1\n", "date|timestamp"),
        ("BTC_USDT-5m.csv", "date,open,high,low,close,volume\nyesterday,1,1,1,1,1\n", "row 0"),
        ("BTC_USDT-5m.json", '{"not": "rows"}', "expected a list"),
        ("BTC_USDT-5m.json", f"[[{T0},1,1,1,1,1],[{T0 + M5},1,1]]", "row 1"),
        ("BTC_USDT-5m.json", f"[[{T0},1,1,1,1,1],[null,1,1,1,1,1]]", "row 1 has timestamp"),
        ("BTC_USDT-5m.feather", "not arrow at all", "cannot read as feather"),
        ("BTC_USDT-5m.json.gz", "not gzip", "cannot read as json.gz"),
        ("BTC_USDT-5m.txt", "", "unsupported candle file extension"),
    ],
)
def test_unreadable_files_raise_naming_the_file(
    tmp_path: Path, name: str, text: str, match: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        load_candles(path, "BTC/USDT", "5m")
    assert name in str(e.value)
    assert isinstance(e.value, ValueError)


# -- bad data: reported and excluded; strict raises ----------------------------------------------

BAD_KINDS = [
    # (row index, field index, value, reason)
    (2, 1, float("nan"), TickProblem.NAN),
    (2, 5, float("inf"), TickProblem.NAN),
    (2, 0, T0 + 2 * M5 + 1000, TickProblem.MISALIGNED_TS),
    (2, 3, 0.0, TickProblem.NON_POSITIVE_PRICE),
    (2, 2, 98.0, TickProblem.HIGH_BELOW_LOW),
    (2, 1, 110.0, TickProblem.OPEN_OUTSIDE_RANGE),
    (2, 4, 90.0, TickProblem.CLOSE_OUTSIDE_RANGE),
    (2, 5, -1.0, TickProblem.NEGATIVE_VOLUME),
]


@pytest.mark.parametrize(("row", "col", "value", "reason"), BAD_KINDS)
def test_bad_tick_is_reported_and_excluded(
    tmp_path: Path, row: int, col: int, value: float, reason: TickProblem
) -> None:
    rows = good_rows()
    rows[row][col] = value
    bad_ts = int(rows[row][0])
    path = write_json_rows(tmp_path / "BTC_USDT-5m.json", rows)
    series, report = load_candles(path)
    assert report.bad_ticks == ((bad_ts, reason),)
    assert report.bad_ticks[0][1] == reason.value  # plain machine-readable strings
    assert bad_ts not in series.ts.tolist()
    assert (report.rows_read, report.rows_kept, len(series)) == (6, 5, 5)
    # The hole it leaves is a gap, not filled in.
    assert report.gaps == ((T0 + M5, 1),)
    assert not report.ok and reason.value in report.summary()
    with pytest.raises(DataError, match=rf"row {row} .*{reason.value}") as e:
        load_candles(path, strict=True)
    assert "BTC_USDT-5m.json" in str(e.value)


def test_null_values_in_feather_are_nan_ticks(tmp_path: Path) -> None:
    dates = pa.array([T0 * 1_000_000, (T0 + M5) * 1_000_000], type=pa.timestamp("ns", tz="UTC"))
    cols = {c: pa.array([1.0, None if c == "close" else 1.0]) for c in ("open", "high", "low")}
    cols["close"] = pa.array([1.0, None])
    cols["volume"] = pa.array([1.0, 1.0])
    feather.write_feather(pa.table({"date": dates, **cols}), tmp_path / "BTC_USDT-5m.feather")
    series, report = load_candles(tmp_path / "BTC_USDT-5m.feather")
    assert report.bad_ticks == ((T0 + M5, "NAN"),) and len(series) == 1


def test_exact_duplicate_keeps_first_and_is_reported(tmp_path: Path) -> None:
    rows = good_rows()
    rows.insert(3, list(rows[2]))
    path = write_json_rows(tmp_path / "BTC_USDT-5m.json", rows)
    series, report = load_candles(path)
    assert report.duplicates == ((T0 + 2 * M5, 2),)
    assert series.ts.tolist() == [T0 + i * M5 for i in range(6)]
    assert report.gaps == () and report.rows_kept == 6 and report.rows_read == 7
    with pytest.raises(DataError, match=r"row 3 .*DUPLICATE of row 2"):
        load_candles(path, strict=True)


def test_conflicting_duplicates_are_all_excluded(tmp_path: Path) -> None:
    rows = good_rows()
    other = list(rows[2])
    other[4] = 102.9  # a different (still sane) close for the same candle
    rows.insert(3, other)
    path = write_json_rows(tmp_path / "BTC_USDT-5m.json", rows)
    series, report = load_candles(path)
    assert report.conflicts == ((T0 + 2 * M5, 2),)
    assert report.duplicates == ()
    assert T0 + 2 * M5 not in series.ts.tolist()
    assert report.gaps == ((T0 + M5, 1),)
    with pytest.raises(DataError, match=r"row 2 .*CONFLICTING_DUPLICATE"):
        load_candles(path, strict=True)


def test_non_monotonic_rows_are_excluded_by_row(tmp_path: Path) -> None:
    rows = good_rows(8)
    rows[3], rows[4] = rows[4], rows[3]  # one swapped pair
    rows.insert(6, good_rows(1, start=T0 + 100 * M5)[0])  # one far-future row in the middle
    path = write_json_rows(tmp_path / "BTC_USDT-5m.json", rows)
    series, report = load_candles(path)
    assert len(report.non_monotonic) == 2
    assert (6, T0 + 100 * M5) in report.non_monotonic  # not everything after it
    assert report.non_monotonic[0][0] in (3, 4)
    assert np.all(np.diff(series.ts) > 0)
    assert report.rows_kept == 7 and len(report.gaps) == 1
    with pytest.raises(DataError, match=r"row [34] .*NON_MONOTONIC"):
        load_candles(path, strict=True)


def test_clean_file_passes_strict(tmp_path: Path) -> None:
    path = write_json_rows(tmp_path / "BTC_USDT-5m.json", good_rows())
    series, report = load_candles(path, strict=True)
    assert len(series) == 6 and report.ok
    assert report.summary() == "BTC/USDT 5m BTC_USDT-5m.json: 6/6 rows kept; OK"


def test_weekly_candles_align_to_monday(tmp_path: Path) -> None:
    monday = T0  # 2024-01-01 was a Monday
    rows = [[monday + i * 7 * DAY_MS, 1.0, 2.0, 0.5, 1.5, 3.0] for i in range(3)]
    rows.append([monday + 3 * 7 * DAY_MS + DAY_MS, 1.0, 2.0, 0.5, 1.5, 3.0])
    path = write_json_rows(tmp_path / "BTC_USDT-1w.json", rows)
    _, report = load_candles(path)
    assert report.bad_ticks == ((monday + 22 * DAY_MS, "MISALIGNED_TS"),)


# -- finding files --------------------------------------------------------------------------------


def test_find_prefers_feather_and_explains_a_miss(tmp_path: Path) -> None:
    s = generate_candles("SOL/USDT", "1h", T0, 5, seed=1)
    write_candles(tmp_path / "SOL_USDT-1h.csv", s)
    assert find_candle_file(tmp_path, "SOL/USDT", "1h").name == "SOL_USDT-1h.csv"
    write_candles(tmp_path / "SOL_USDT-1h.feather", s)
    assert find_candle_file(tmp_path, "SOL/USDT", "1h").name == "SOL_USDT-1h.feather"
    with pytest.raises(FileNotFoundError) as e:
        find_candle_file(tmp_path, "SOL/USDT", "5m")
    msg = str(e.value)
    assert "SOL_USDT-5m.feather" in msg and "SOL_USDT-5m.json.gz" in msg
    assert "SOL_USDT-1h.csv" in msg and "SOL_USDT-1h.feather" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_candle_file(tmp_path / "nope", "SOL/USDT", "5m")


def test_list_pairs_and_names(tmp_path: Path) -> None:
    for sym in ("ETH/USDT", "BTC/USDT"):
        write_candles(
            tmp_path / candle_filename(sym, "5m", "json"),
            generate_candles(sym, "5m", T0, 3, seed=1),
        )
    write_candles(
        tmp_path / "XRP_USDT-1h.json.gz", generate_candles("XRP/USDT", "1h", T0, 3, seed=1)
    )
    (tmp_path / "notes.txt").write_text("hello")
    assert list_pairs(tmp_path, "5m") == ["BTC/USDT", "ETH/USDT"]
    assert list_pairs(tmp_path, "1h") == ["XRP/USDT"]
    assert parse_candle_filename("XRP_USDT-1h.json.gz") == ("XRP/USDT", "1h", "json.gz")
    assert parse_candle_filename("XRP_USDT-1h.json.gz.tmp") is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_pairs(tmp_path / "missing", "5m")


def test_load_needs_names_it_can_read(tmp_path: Path) -> None:
    path = write_json_rows(tmp_path / "candles.json", good_rows())
    with pytest.raises(DataError, match="pass symbol= and timeframe="):
        load_candles(path)
    series, _ = load_candles(path, "BTC/USDT", "5m")
    assert len(series) == 6
    named = write_json_rows(tmp_path / "BTC_USDT-5m.json", good_rows())
    with pytest.raises(DataError, match="not '1h'"):
        load_candles(named, timeframe="1h")
    with pytest.raises(ValueError, match="pass symbol= and timeframe="):
        load_candles(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_candles(tmp_path / "BTC_USDT-1m.json")


def test_load_window_reports_only_the_window(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[8][5] = -5.0  # a bad tick outside the window
    write_json_rows(tmp_path / "BTC_USDT-5m.json", rows)
    got = load_many(tmp_path, ["BTC/USDT"], "5m", from_ms=T0 + M5, to_ms=T0 + 8 * M5)
    series, report = got["BTC/USDT"]
    assert series.ts.tolist() == [T0 + i * M5 for i in range(1, 8)]
    assert report.ok and report.rows_read == 7


def test_window_problems_name_file_rows(tmp_path: Path) -> None:
    rows = good_rows(10)
    rows[6][2] = 1.0  # high below low, inside the window
    path = write_json_rows(tmp_path / "BTC_USDT-5m.json", rows)
    _, report = load_candles(path, from_ms=T0 + 4 * M5)
    assert report.bad_ticks == ((T0 + 6 * M5, "HIGH_BELOW_LOW"),) and report.rows_read == 6
    with pytest.raises(DataError, match=r"row 6 \(ts=1704069000000, 2024-01-01T00:30:00Z\)"):
        load_candles(path, strict=True, from_ms=T0 + 4 * M5)


def test_report_summary_counts_each_kind() -> None:
    r = DataReport(
        "BTC/USDT",
        "/x/BTC_USDT-5m.feather",
        10,
        7,
        gaps=((T0, 2),),
        bad_ticks=((T0 + M5, "NAN"), (T0 + 2 * M5, "NAN")),
        duplicates=((T0 + 3 * M5, 2),),
        timeframe="5m",
    )
    line = r.summary()
    assert "\n" not in line
    assert line.startswith("BTC/USDT 5m BTC_USDT-5m.feather: 7/10 rows kept;")
    assert "1 gap(s), 2 missing bar(s)" in line and "NAN=2" in line and "1 duplicated ts" in line


# -- synthetic ------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed() -> None:
    a = generate_candles("BTC/USDT", "5m", T0, 2_000, seed=42)
    b = generate_candles("BTC/USDT", "5m", T0, 2_000, seed=42)
    c = generate_candles("BTC/USDT", "5m", T0, 2_000, seed=43)
    assert a.equals(b)
    assert not np.array_equal(a.close, c.close)
    assert not np.array_equal(a.volume, c.volume)


@pytest.mark.parametrize("regimes", [True, False])
def test_synthetic_candles_are_valid(tmp_path: Path, regimes: bool) -> None:
    s = generate_candles(
        "BTC/USDT", "5m", T0, 5_000, seed=5, volatility=0.02, drift=0.0001, regimes=regimes
    )
    assert len(s) == 5_000 and s.first_ts == T0 and np.all(np.diff(s.ts) == M5)
    assert np.all(s.low <= np.minimum(s.open, s.close))
    assert np.all(np.maximum(s.open, s.close) <= s.high)
    assert np.all(s.low > 0) and np.all(s.volume > 0)
    # Through the loader's own checks too.
    _, report = load_candles(write_candles(tmp_path / "BTC_USDT-5m.feather", s), strict=True)
    assert report.ok


def test_synthetic_has_trends_both_ways_and_breakout_volume() -> None:
    s = generate_candles("BTC/USDT", "1h", T0, 6_000, seed=11, volatility=0.01)
    closes = s.close
    moves = np.log(closes[240::240] / closes[:-240:240])  # ten-day returns
    assert moves.max() > 0.15 and moves.min() < -0.15
    prior_max = np.array([closes[i - 48 : i].max() for i in range(48, len(closes))])
    breakout = closes[48:] > prior_max
    assert s.volume[48:][breakout].mean() > 1.5 * s.volume[48:][~breakout].mean()


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not aligned"):
        generate_candles("BTC/USDT", "5m", T0 + 1, 10, seed=1)
    with pytest.raises(ValueError, match="positive"):
        generate_candles("BTC/USDT", "5m", T0, 10, seed=1, volatility=0.0)
    assert len(generate_candles("BTC/USDT", "5m", T0, 0, seed=1)) == 0
