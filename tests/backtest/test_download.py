"""download_candles: paging, resume, head fill, interruption, refusal of bad files, real ccxt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from backtest.download import (
    DownloadProgress,
    download_candles,
    download_window,
    make_ccxt_exchange,
)
from backtest.synthetic import generate_candles
from core.candles import CandleSeries
from core.clock import DAY_MS
from infra.candle_files import FORMATS, DataError, load_candles, write_candles

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
M5 = 300_000
SYMBOL = "BTC/USDT"


def source(bars: int = 1_000, seed: int = 9) -> CandleSeries:
    return generate_candles(SYMBOL, "5m", T0, bars, seed=seed)


def rows_of(s: CandleSeries) -> list[list[Any]]:
    return [
        [int(s.ts[i]), *(float(c[i]) for c in (s.open, s.high, s.low, s.close, s.volume))]
        for i in range(len(s))
    ]


class FakeExchange:
    """ccxt's fetch_ohlcv over a fixed list of rows: candles with ts >= since, up to limit."""

    id = "fake"

    def __init__(self, rows: list[list[Any]], *, fail_on_call: int | None = None) -> None:
        self.rows = rows
        self.calls: list[tuple[int | None, int | None]] = []
        self.fail_on_call = fail_on_call

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[list[Any]]:
        assert (symbol, timeframe) == (SYMBOL, "5m")
        self.calls.append((since, limit))
        if self.fail_on_call is not None and len(self.calls) >= self.fail_on_call:
            raise ConnectionError("exchange went away")
        after = [r for r in self.rows if since is None or r[0] >= since]
        return [list(r) for r in after[: limit or 500]]


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("fmt", FORMATS)
async def test_resume_continues_from_the_last_candle(tmp_path: Path, fmt: str) -> None:
    src = source()
    ex = FakeExchange(rows_of(src))
    first = await download_candles(
        ex,
        SYMBOL,
        "5m",
        since_ms=T0,
        until_ms=T0 + 500 * M5,
        out_dir=tmp_path,
        fmt=fmt,
        page_limit=100,
    )
    assert (first.rows_before, first.rows_added) == (0, 500)
    assert first.path == tmp_path / f"BTC_USDT-5m.{fmt}"
    assert [c[0] for c in ex.calls] == [T0 + k * 100 * M5 for k in range(5)]
    assert first.report.ok and first.report.rows_kept == 500

    ex.calls.clear()
    second = await download_candles(
        ex,
        SYMBOL,
        "5m",
        since_ms=T0,
        until_ms=T0 + 1_000 * M5,
        out_dir=tmp_path,
        fmt=fmt,
        page_limit=100,
    )
    assert (second.rows_before, second.rows_added) == (500, 500)
    assert ex.calls[0] == (T0 + 500 * M5, 100)  # resumed, did not start over
    assert len(ex.calls) == 5
    series, report = load_candles(second.path, strict=True)
    assert series.equals(src)  # continuous, no duplicates, exact values
    assert report.ok and second.report == report
    assert leftovers(tmp_path) == []


async def test_up_to_date_file_is_not_touched(tmp_path: Path) -> None:
    ex = FakeExchange(rows_of(source(300)))
    done = await download_candles(
        ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + 300 * M5, out_dir=tmp_path
    )
    before = done.path.stat().st_mtime_ns, done.path.read_bytes()
    ex.calls.clear()
    again = await download_candles(
        ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + 300 * M5, out_dir=tmp_path
    )
    assert ex.calls == []
    assert (again.rows_before, again.rows_added) == (300, 0) and again.report.ok
    assert (done.path.stat().st_mtime_ns, done.path.read_bytes()) == before


async def test_earlier_start_fetches_the_missing_head(tmp_path: Path) -> None:
    src = source(600)
    write_candles(tmp_path / "BTC_USDT-5m.feather", src.slice(T0 + 200 * M5, T0 + 400 * M5))
    ex = FakeExchange(rows_of(src))
    res = await download_candles(
        ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + 600 * M5, out_dir=tmp_path, page_limit=150
    )
    assert (res.rows_before, res.rows_added) == (200, 400)
    assert ex.calls[0][0] == T0 and (T0 + 400 * M5, 150) in ex.calls
    assert res.fetched is not None and res.fetched.ok  # the file's span is not a "gap"
    series, report = load_candles(res.path)
    assert series.equals(src) and report.ok


async def test_stops_when_the_exchange_has_nothing_newer(tmp_path: Path) -> None:
    ex = FakeExchange(rows_of(source(250)))
    res = await download_candles(
        ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + 1_000 * M5, out_dir=tmp_path, page_limit=100
    )
    assert res.rows_added == 250
    assert [c[0] for c in ex.calls] == [T0, T0 + 100 * M5, T0 + 200 * M5, T0 + 250 * M5]


async def test_until_is_exclusive_and_newer_rows_are_ignored(tmp_path: Path) -> None:
    ex = FakeExchange(rows_of(source(100)))
    res = await download_candles(
        ex, SYMBOL, "5m", since_ms=T0 + 10 * M5, until_ms=T0 + 20 * M5, out_dir=tmp_path
    )
    series, _ = load_candles(res.path)
    assert (series.first_ts, series.last_ts, len(series)) == (T0 + 10 * M5, T0 + 19 * M5, 10)
    assert len(ex.calls) == 1


async def test_gaps_at_the_exchange_are_reported_not_filled(tmp_path: Path) -> None:
    rows = rows_of(source(300))
    del rows[100:110]  # the exchange never had these ten candles
    res = await download_candles(
        FakeExchange(rows), SYMBOL, "5m", since_ms=T0, until_ms=T0 + 300 * M5, out_dir=tmp_path
    )
    assert res.rows_added == 290
    assert res.report.gaps == ((T0 + 99 * M5, 10),)
    assert load_candles(res.path)[0].ts.tolist().count(T0 + 100 * M5) == 0


async def test_bad_rows_from_the_exchange_are_reported_and_kept_out(tmp_path: Path) -> None:
    rows = rows_of(source(50))
    rows[7][5] = -3.0  # negative volume
    rows.insert(20, list(rows[19]))  # an exact duplicate inside one page
    res = await download_candles(
        FakeExchange(rows), SYMBOL, "5m", since_ms=T0, until_ms=T0 + 50 * M5, out_dir=tmp_path
    )
    assert res.fetched is not None
    assert res.fetched.bad_ticks == ((T0 + 7 * M5, "NEGATIVE_VOLUME"),)
    assert res.fetched.duplicates == ((T0 + 19 * M5, 2),)
    assert res.rows_added == 49
    # The file holds only sane candles; the left-out one is a visible gap.
    assert res.report.gaps == ((T0 + 6 * M5, 1),) and res.report.bad_ticks == ()


async def test_interrupted_download_keeps_its_progress_and_resumes(tmp_path: Path) -> None:
    src = source(600)
    broken = FakeExchange(rows_of(src), fail_on_call=4)
    with pytest.raises(ConnectionError):
        await download_candles(
            broken,
            SYMBOL,
            "5m",
            since_ms=T0,
            until_ms=T0 + 600 * M5,
            out_dir=tmp_path,
            page_limit=100,
        )
    saved, report = load_candles(tmp_path / "BTC_USDT-5m.feather")
    assert len(saved) == 300 and report.ok
    assert leftovers(tmp_path) == []

    ex = FakeExchange(rows_of(src))
    res = await download_candles(
        ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + 600 * M5, out_dir=tmp_path, page_limit=100
    )
    assert (res.rows_before, res.rows_added) == (300, 300)
    assert load_candles(res.path)[0].equals(src)


async def test_interrupted_head_is_not_saved(tmp_path: Path) -> None:
    src = source(600)
    part = src.slice(T0 + 400 * M5, None)
    path = write_candles(tmp_path / "BTC_USDT-5m.feather", part)
    before = path.read_bytes()
    with pytest.raises(ConnectionError):
        await download_candles(
            FakeExchange(rows_of(src), fail_on_call=2),
            SYMBOL,
            "5m",
            since_ms=T0,
            until_ms=T0 + 600 * M5,
            out_dir=tmp_path,
            page_limit=100,
        )
    # Saving a partial head would leave a hole that resuming could never fill.
    assert path.read_bytes() == before


async def test_unreadable_existing_file_is_quarantined_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-5m.feather"
    path.write_bytes(b"definitely not arrow")
    ex = FakeExchange(rows_of(source(10)))
    with pytest.raises(DataError, match=r"copied to .*quarantine") as e:
        await download_candles(ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + M5, out_dir=tmp_path)
    assert "BTC_USDT-5m.feather" in str(e.value)
    assert path.read_bytes() == b"definitely not arrow"
    copies = list((tmp_path / "quarantine").iterdir())
    assert len(copies) == 1 and copies[0].read_bytes() == b"definitely not arrow"
    assert ex.calls == []


async def test_existing_file_with_duplicates_is_refused(tmp_path: Path) -> None:
    rows = rows_of(source(10))
    rows.insert(5, list(rows[4]))
    path = tmp_path / "BTC_USDT-5m.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match="problems other than gaps"):
        await download_candles(
            FakeExchange(rows),
            SYMBOL,
            "5m",
            since_ms=T0,
            until_ms=T0 + 20 * M5,
            out_dir=tmp_path,
            fmt="json",
        )
    assert len(list((tmp_path / "quarantine").iterdir())) == 1


async def test_progress_reports_each_page(tmp_path: Path) -> None:
    seen: list[DownloadProgress] = []
    await download_candles(
        FakeExchange(rows_of(source(250))),
        SYMBOL,
        "5m",
        since_ms=T0,
        until_ms=T0 + 250 * M5,
        out_dir=tmp_path,
        page_limit=100,
        progress=seen.append,
    )
    assert [p.rows_fetched for p in seen] == [100, 200, 250]
    assert seen[-1].cursor_ms == T0 + 250 * M5 == seen[-1].until_ms


async def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    ex = FakeExchange([])
    with pytest.raises(ValueError, match="must be after"):
        await download_candles(ex, SYMBOL, "5m", since_ms=T0, until_ms=T0, out_dir=tmp_path)
    with pytest.raises(ValueError, match="unsupported candle format"):
        await download_candles(
            ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + M5, out_dir=tmp_path, fmt="xlsx"
        )
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        await download_candles(ex, "BTCUSDT", "5m", since_ms=T0, until_ms=T0 + M5, out_dir=tmp_path)
    empty = await download_candles(
        ex, SYMBOL, "5m", since_ms=T0, until_ms=T0 + M5, out_dir=tmp_path
    )
    assert empty.rows_added == 0 and not empty.path.exists()


def test_download_window_leaves_out_the_forming_candle() -> None:
    now = T0 + 3 * M5 + 1_234
    assert download_window(now, 2, "5m") == (T0 + 3 * M5 - 2 * DAY_MS, T0 + 3 * M5)
    with pytest.raises(ValueError, match="positive"):
        download_window(now, 0, "5m")


# -- real ccxt against a local Binance-shaped fake -----------------------------------------------


def _binance_app(src: CandleSeries, seen: list[str]) -> web.Application:
    market = {
        "symbol": "BTCUSDT",
        "status": "TRADING",
        "baseAsset": "BTC",
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }

    async def exchange_info(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"timezone": "UTC", "serverTime": T0, "symbols": [market]})

    async def klines(request: web.Request) -> web.Response:
        seen.append(request.path)
        assert request.query["symbol"] == "BTCUSDT" and request.query["interval"] == "5m"
        start = int(src.ts.searchsorted(int(request.query["startTime"])))
        stop = min(start + int(request.query["limit"]), len(src))
        # Binance sends prices as strings and six more fields ccxt ignores.
        body = [
            [int(src.ts[i])]
            + [repr(float(c[i])) for c in (src.open, src.high, src.low, src.close, src.volume)]
            + [int(src.ts[i]) + M5 - 1, "0", 1, "0", "0", "0"]
            for i in range(start, stop)
        ]
        return web.json_response(body)

    async def anything_else(request: web.Request) -> web.Response:
        seen.append("UNEXPECTED " + request.path)
        return web.json_response({"code": -1, "msg": "not faked"}, status=404)

    app = web.Application()
    app.router.add_get("/api/v3/exchangeInfo", exchange_info)
    app.router.add_get("/api/v3/klines", klines)
    app.router.add_route("*", "/{tail:.*}", anything_else)
    return app


@pytest.mark.integration
async def test_ccxt_binance_against_local_fake(tmp_path: Path) -> None:
    src = source(2_500)
    seen: list[str] = []
    runner = web.AppRunner(_binance_app(src, seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    exchange = make_ccxt_exchange("binance", base_url=f"http://127.0.0.1:{port}")
    try:
        res = await download_candles(
            exchange, SYMBOL, "5m", since_ms=T0, until_ms=T0 + 2_500 * M5, out_dir=tmp_path
        )
    finally:
        await exchange.close()
        await runner.cleanup()
    assert res.rows_added == 2_500 and res.report.ok
    assert load_candles(res.path)[0].equals(src)
    assert seen == ["/api/v3/exchangeInfo"] + ["/api/v3/klines"] * 3


async def test_make_ccxt_exchange_points_every_endpoint_at_base_url() -> None:
    ex = make_ccxt_exchange("binance", base_url="http://127.0.0.1:9/")
    await ex.close()
    api = ex.urls["api"]
    assert api["public"] == api["private"] == "http://127.0.0.1:9/api/v3"
    assert api["sapi"] == "http://127.0.0.1:9/sapi/v1"
    assert all(str(u).startswith("http://127.0.0.1:9/") for u in api.values())
    assert ex.enableRateLimit is True
    assert ex.options["fetchMarkets"]["types"] == ["spot"]
    with pytest.raises(ValueError, match="unknown exchange 'nope'"):
        make_ccxt_exchange("nope")


def test_fake_rows_round_trip_exactly() -> None:
    # Guards the fixtures above: float -> row -> float is exact.
    s = source(5)
    assert np.array_equal(np.array([r[4] for r in rows_of(s)]), s.close)
