"""Issue 14 section 3: CSV exports from common free sources load (or fail naming the cause).

The corpus in tests/resources/csv/ is written by tools/gen_csv_corpus.py: the same 48 hourly
candles in each source's layout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infra.candle_files import DataError, load_candles, write_candles
from tools.gen_csv_corpus import OUT, candles, corpus

ROOT = Path(__file__).resolve().parents[2]

# file -> words its report must carry (how it was read)
LOADS = {
    "cdd_banner_unix_ms_newest_first.csv": [
        "newest-first",
        "skipped 1 line(s) above the header",
        "time from 'unix'",
        "volume from 'Volume BTC' (base asset)",
        "ignored column(s) date, symbol, Volume USDT, tradecount",
    ],
    "cdd_banner_12h_ampm_epoch_seconds.csv": [
        "newest-first",
        "time from 'Unix Timestamp'",
        "epoch seconds",
        "volume from 'Volume BTC' (base asset)",
    ],
    "cdd_banner_12h_date_only.csv": ["newest-first", "skipped 1 line(s) above the header"],
    "us_dates_12h_ampm.csv": [],
    "epoch_seconds.csv": ["epoch seconds"],
    "epoch_milliseconds.csv": [],
    "binance_klines_extra_columns.csv": ["time from 'open_time'", "ignored column(s) close_time"],
    "quote_volume_only.csv": ["volume from 'Volume USDT' (quote asset, divided by close)"],
    "mixed_epoch_units.csv": ["epoch seconds and milliseconds"],
}


def test_the_committed_corpus_is_what_the_generator_writes() -> None:
    files = corpus()
    assert set(files) == {p.name for p in OUT.glob("*.csv")}
    for name, text in files.items():
        assert (OUT / name).read_text() == text, f"{name} is stale: run tools/gen_csv_corpus.py"


@pytest.mark.parametrize("name", sorted(LOADS))
def test_each_layout_gives_back_the_same_candles(name: str) -> None:
    want = candles()
    series, report = load_candles(OUT / name, "BTC/USDT", "1h")
    assert report.ok and report.rows_kept == report.rows_read == len(want)
    summary = report.summary()
    for words in LOADS[name]:
        assert words in summary, summary
    assert np.array_equal(series.ts, want.ts)
    for got, exp in zip(series.columns()[1:5], want.columns()[1:5], strict=True):
        assert np.array_equal(got, exp)  # prices are stored as their shortest exact text
    if "quote" in name:
        assert np.allclose(series.volume, want.volume, rtol=1e-12)  # quote / close
    else:
        assert np.array_equal(series.volume, want.volume)


def test_a_file_without_a_header_says_so() -> None:
    with pytest.raises(DataError, match="no header line: line 1 is already data"):
        load_candles(OUT / "no_header.csv", "BTC/USDT", "1h")


def test_a_long_newest_first_file_keeps_every_row(tmp_path: Path) -> None:
    """Before: a newest-first file of 33,000 rows kept 1 and blamed the warm-up length."""
    from backtest.synthetic import generate_candles

    s = generate_candles("ETH/USDT", "5m", 1_704_067_200_000, 33_000, seed=4)
    path = write_candles(tmp_path / "ETH_USDT-5m.csv", s)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    series, report = load_candles(path)
    assert report.rows_kept == 33_000 and report.newest_first and report.ok
    assert series.equals(s)
    assert "newest-first file, sorted oldest first" in report.summary()


def test_volume_columns_for_another_pair_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("date,open,high,low,close,Volume ETH\n2024-01-01,1,1,1,1,1\n")
    with pytest.raises(DataError, match="'Volume BTC' or 'Volume USDT'"):
        load_candles(path, "BTC/USDT", "1d")


def test_data_convert_writes_freqtrade_feather_and_check_reads_it(tmp_path: Path) -> None:
    src = OUT / "cdd_banner_unix_ms_newest_first.csv"
    out = tmp_path / "ohlcv"
    run = [sys.executable, "-m", "runner.cli", "data"]
    res = subprocess.run(
        [*run, "convert", str(src), "--symbol", "BTC/USDT", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert "timeframe" not in res.stderr
    target = out / "BTC_USDT-1h.feather"
    import pyarrow.feather as feather

    table = feather.read_table(target)
    assert table.column_names == ["date", "open", "high", "low", "close", "volume"]
    assert str(table.schema.field("date").type) == "timestamp[ns, tz=UTC]"
    assert load_candles(target)[0].equals(candles())
    check = subprocess.run(
        [*run, "check", str(out), "--timeframe", "1h"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "BTC_USDT-1h.feather: BTC/USDT 1h, 48 rows, 48 kept" in check.stdout
    assert "OK" in check.stdout
