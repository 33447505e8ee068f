"""Write tests/resources/csv/: small CSV candle files in the layouts free sources export.

Every file holds the same 48 hourly BTC/USDT candles (a seeded synthetic walk, no downloaded
data), each written the way one source or habit writes them.
tests/infra/test_candle_csv_corpus.py loads each and checks that it gives those candles back, and
that the files are what this script writes.

.venv/bin/python tools/gen_csv_corpus.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backtest.synthetic import generate_candles  # noqa: E402
from core.candles import CandleSeries  # noqa: E402

OUT = ROOT / "tests" / "resources" / "csv"
SYMBOL, TIMEFRAME = "BTC/USDT", "1h"
START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
BARS = 48
BANNER = "https://www.CryptoDataDownload.com"

Row = tuple[int, float, float, float, float, float]


def candles() -> CandleSeries:
    return generate_candles(
        SYMBOL, TIMEFRAME, START_MS, BARS, seed=3, start_price=42_000.0, base_volume=50.0
    )


def _rows() -> list[Row]:
    s = candles()
    return [
        (int(s.ts[i]), *(float(c[i]) for c in (s.open, s.high, s.low, s.close, s.volume)))
        for i in range(len(s))
    ]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _f(x: float) -> str:
    return repr(x)  # the shortest text that reads back to the same float


def _cdd_hourly(rows: list[Row]) -> list[str]:
    # CryptoDataDownload today: banner, unix (ms) beside date, symbol, base and quote volume,
    # trade count, newest first.
    out = [BANNER, "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"]
    for ts, o, h, lo, c, v in reversed(rows):
        date = _dt(ts).strftime("%Y-%m-%d %H:%M:%S")
        out.append(
            f"{ts},{date},BTC/USDT,{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v)},{_f(v * c)},{ts % 997}"
        )
    return out


def _cdd_old(rows: list[Row]) -> list[str]:
    # CryptoDataDownload's older files: 12-hour "2024-01-01 09-PM" dates, epoch seconds.
    out = [BANNER, "Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT"]
    for ts, o, h, lo, c, v in reversed(rows):
        date = _dt(ts).strftime("%Y-%m-%d %I-%p")
        out.append(
            f"{ts // 1000},{date},BTCUSDT,{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v)},{_f(v * c)}"
        )
    return out


def _cdd_date_only(rows: list[Row]) -> list[str]:
    # The 12-hour date as the only time column, with a banner; newest first.
    out = [BANNER, "Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT"]
    for ts, o, h, lo, c, v in reversed(rows):
        date = _dt(ts).strftime("%Y-%m-%d %I-%p")
        out.append(f"{date},BTCUSDT,{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v)},{_f(v * c)}")
    return out


def _ampm_us(rows: list[Row]) -> list[str]:
    # A spreadsheet export: month/day/year with a 12-hour clock, capitalised names.
    out = ["Date,Open,High,Low,Close,Volume"]
    for ts, o, h, lo, c, v in rows:
        d = _dt(ts)
        date = f"{d.month}/{d.day}/{d.year} {d.strftime('%I:%M:%S %p').lstrip('0')}"
        out.append(f'"{date}",{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v)}')
    return out


def _epoch(rows: list[Row], div: int, name: str) -> list[str]:
    out = [f"{name},open,high,low,close,volume"]
    out += [f"{ts // div},{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v)}" for ts, o, h, lo, c, v in rows]
    return out


def _binance_klines(rows: list[Row]) -> list[str]:
    # Binance's kline columns: epoch ms open and close times, quote volume, trade counts.
    out = [
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore"
    ]
    for ts, o, h, lo, c, v in rows:
        out.append(
            f"{ts},{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v)},{ts + 3_599_999},{_f(v * c)},"
            f"{ts % 991},{_f(v / 2)},{_f(v * c / 2)},0"
        )
    return out


def _quote_volume_only(rows: list[Row]) -> list[str]:
    out = ["date,open,high,low,close,Volume USDT"]
    out += [
        f"{_dt(ts).strftime('%Y-%m-%dT%H:%M:%SZ')},{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v * c)}"
        for ts, o, h, lo, c, v in rows
    ]
    return out


def _mixed_epoch_units(rows: list[Row]) -> list[str]:
    # Some exports switched from seconds to milliseconds partway through the history.
    out = ["unix,date,open,high,low,close,volume"]
    for i, (ts, o, h, lo, c, v) in enumerate(rows):
        unix = ts if i >= len(rows) // 2 else ts // 1000
        date = _dt(ts).strftime("%Y-%m-%d %H:%M:%S")
        out.append(f"{unix},{date},{_f(o)},{_f(h)},{_f(lo)},{_f(c)},{_f(v)}")
    return out


def _no_header(rows: list[Row]) -> list[str]:
    return _epoch(rows, 1, "timestamp")[1:]


FILES: dict[str, Callable[[list[Row]], list[str]]] = {
    "cdd_banner_unix_ms_newest_first.csv": _cdd_hourly,
    "cdd_banner_12h_ampm_epoch_seconds.csv": _cdd_old,
    "cdd_banner_12h_date_only.csv": _cdd_date_only,
    "us_dates_12h_ampm.csv": _ampm_us,
    "epoch_seconds.csv": lambda r: _epoch(r, 1000, "timestamp"),
    "epoch_milliseconds.csv": lambda r: _epoch(r, 1, "timestamp"),
    "binance_klines_extra_columns.csv": _binance_klines,
    "quote_volume_only.csv": _quote_volume_only,
    "mixed_epoch_units.csv": _mixed_epoch_units,
    "no_header.csv": _no_header,
}


def corpus() -> dict[str, str]:
    rows = _rows()
    return {name: "\n".join(make(rows)) + "\n" for name, make in FILES.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if the files differ")
    args = ap.parse_args()
    files = corpus()
    if args.check:
        stale = [
            n for n, t in files.items() if not (OUT / n).is_file() or (OUT / n).read_text() != t
        ]
        for n in stale:
            print(f"{OUT / n} is stale; run tools/gen_csv_corpus.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
