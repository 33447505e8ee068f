"""Backtest statistics and the JSON report: hand-computed values, byte stability, a real run."""

from __future__ import annotations

import json
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from backtest import stats
from backtest.report import (
    REGRESSION_KEYS,
    build_report,
    dumps,
    equity_curve,
    iso_ms,
    summary_table,
    without_run,
    write_report,
)
from backtest.runner import BacktestResult, Trade, run_backtest
from backtest.synthetic import generate_candles
from core.clock import SimClock
from core.config import UniverseConfig
from core.reasons import RiskReason
from infra.candle_files import DataReport
from infra.exchange.sim_config import SimConfig
from infra.markets import markets_from_series
from infra.settings import VigilConfig, config_hash
from runner.app import ReplayInputs

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
M5 = 300_000
DAY = 86_400_000
PAIRS = ("BTC/USDT", "ETH/USDT")


# -- stats ----------------------------------------------------------------------------------


def test_max_drawdown_takes_the_worst_fall_from_the_running_peak() -> None:
    eq = [100.0, 120.0, 90.0, 130.0, 65.0, 100.0]
    pct, peak, trough = stats.max_drawdown(eq)
    assert pct == pytest.approx(50.0)  # 130 -> 65, not 120 -> 90 (25 %)
    assert (peak, trough) == (3, 4)
    assert stats.max_drawdown_pct(eq) == pytest.approx(50.0)
    expected = [0, 0, -25, 0, -50, (100 / 130 - 1) * 100]
    assert stats.drawdown_pct_series(eq) == pytest.approx(expected)


def test_drawdown_of_a_rising_or_empty_curve_is_zero() -> None:
    assert stats.max_drawdown([1.0, 2.0, 2.0, 3.0]) == (0.0, 0, 0)
    assert stats.max_drawdown([]) == (0.0, 0, 0)


def test_total_return_and_cycle_returns() -> None:
    assert stats.total_return_pct([200.0, 150.0, 250.0]) == pytest.approx(25.0)
    assert stats.total_return_pct([]) == 0.0
    assert stats.cycle_returns([100.0, 110.0, 99.0]) == pytest.approx([0.1, -0.1])


def test_periods_per_year_from_the_timeframe() -> None:
    assert stats.periods_per_year(M5) == 105_120
    assert stats.periods_per_year(DAY) == 365
    with pytest.raises(ValueError, match="positive"):
        stats.periods_per_year(0)


def test_sharpe_and_sortino_by_hand() -> None:
    r = [0.01, -0.01, 0.02, 0.0]
    # mean 0.005; sample variance (0.005² + 0.015² + 0.015² + 0.005²) / 3 = 5e-4 / 3
    assert stats.sharpe(r, DAY) == pytest.approx(0.005 / math.sqrt(5e-4 / 3) * math.sqrt(365))
    # downside deviation sqrt((0 + 0.01² + 0 + 0) / 4) = 0.005
    assert stats.sortino(r, DAY) == pytest.approx(math.sqrt(365))


def test_sharpe_of_a_constant_series_is_zero_not_nan() -> None:
    flat = stats.cycle_returns([100.0] * 50)
    assert stats.sharpe(flat, M5) == 0.0
    assert stats.sortino(flat, M5) == 0.0
    steady = stats.cycle_returns([100.0 * 1.01**i for i in range(50)])  # constant 1 % returns
    assert stats.sharpe(steady, M5) == 0.0  # zero variance: undefined, reported as 0
    assert stats.sortino(steady, M5) == 0.0  # no downside: undefined, reported as 0
    assert stats.sharpe([], M5) == stats.sharpe([0.1], M5) == 0.0


def test_profit_factor_win_rate_and_trade_figures() -> None:
    assert stats.profit_factor([10.0, -5.0, 20.0, -10.0]) == pytest.approx(2.0)
    assert stats.profit_factor([10.0, 20.0]) is None
    assert stats.profit_factor([]) is None
    assert stats.profit_factor([-1.0]) == 0.0
    assert stats.win_rate_pct([10.0, -5.0, 0.0, 1.0]) == pytest.approx(50.0)
    assert stats.win_rate_pct([]) == 0.0
    assert stats.exposure_pct([True, False, False, True]) == 50.0
    assert stats.exposure_pct([]) == 0.0
    assert stats.mean([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    assert (stats.best([1.0, -3.0]), stats.worst([1.0, -3.0])) == (1.0, -3.0)
    assert stats.best([]) == stats.worst([]) == stats.mean([]) == 0.0
    assert stats.avg_holding_minutes([(0, 60_000), (0, 180_000)]) == pytest.approx(2.0)
    assert stats.avg_holding_minutes([]) == 0.0


def test_downsample_keeps_ends_extremes_and_requested_points() -> None:
    values = [math.sin(i / 50) for i in range(10_000)]
    values[4_321] = 5.0  # a one-point spike that striding would drop
    values[7_777] = -5.0
    idx = stats.downsample_indices(values, 500, keep=(1_234,))
    assert len(idx) <= 500
    assert idx == sorted(set(idx))
    assert {0, 9_999, 4_321, 7_777, 1_234} <= set(idx)
    assert stats.downsample_indices([1.0, 2.0], 500) == [0, 1]


# -- report on a hand-built result ----------------------------------------------------------


def make_inputs(bars: int = 400, pairs: tuple[str, ...] = PAIRS) -> ReplayInputs:
    series = {
        p: generate_candles(p, "5m", T0, bars, seed=i + 1, start_price=100.0 * (i + 1))
        for i, p in enumerate(pairs)
    }
    reports = {
        p: DataReport(
            symbol=p,
            path=f"/data/{p.replace('/', '_')}-5m.feather",
            rows_read=bars,
            rows_kept=bars,
            timeframe="5m",
        )
        for p in pairs
    }
    start = T0 + 100 * M5
    return ReplayInputs(series, reports, markets_from_series(series), M5, start, T0 + bars * M5)


def make_trade(symbol: str, entry: int, exit_: int, pnl: str, fees: str = "0.2") -> Trade:
    return Trade(
        symbol=symbol,
        strategy="rules",
        entry_ts=entry,
        exit_ts=exit_,
        quantity=Decimal(2),
        entry_price=Decimal(100),
        exit_price=Decimal(100) + Decimal(pnl) / 2,
        fees=Decimal(fees),
        pnl=Decimal(pnl),
        exit_reason="take_profit" if Decimal(pnl) > 0 else "stop_loss",
    )


def make_result() -> BacktestResult:
    cfg = VigilConfig(universe=UniverseConfig(symbols=PAIRS))
    inputs = make_inputs()
    start = inputs.start_ms
    trades = [
        make_trade("BTC/USDT", start + 2 * M5, start + 14 * M5, "20"),
        make_trade("BTC/USDT", start + 30 * M5, start + 36 * M5, "-10"),
        make_trade("ETH/USDT", start + 40 * M5, start + 100 * M5, "5"),
    ]
    fills = [
        {
            "symbol": t.symbol,
            "fee": str(t.fees / 2),
            "side": side,
            "realized": str(t.pnl) if side == "sell" else "0",
        }
        for t in trades
        for side in ("buy", "sell")
    ]
    # The entry of a position not in `positions`: the 0.3 the pair rows cannot place.
    fills.append({"symbol": "ETH/USDT", "fee": "0.1", "side": "buy", "realized": "0"})
    n = 200
    equity = [10_000.0 + 10 * math.sin(i / 10) for i in range(n)]
    equity[120] = 9_000.0  # the max drawdown's trough
    return BacktestResult(
        config=cfg,
        config_hash="0123456789abcdef",
        seed=7,
        inputs=inputs,
        starting_cash=Decimal(10_000),
        final_cash=Decimal("9915.3"),
        final_equity=Decimal("10015.3"),
        equity_ts=[start + i * M5 for i in range(n)],
        equity=equity,
        exposed=[i % 4 == 0 for i in range(n)],
        trades=trades,
        fills=fills,
        no_trade=Counter({"NO_SIGNAL": 150, "EXITS_ONLY_NOTHING_TO_EXIT": 30}),
        rejections=Counter({RiskReason.COOLDOWN: 2, "ZZ_OTHER": 1}),
        cycles=n,
        candles=800,
        wall_s=1.25,
    )


def test_build_report_sections_and_values() -> None:
    res = make_result()
    rep = build_report(res, version="1.2.3", wall_clock=False)
    assert set(rep) == {
        "metadata", "summary", "per_pair", "trades", "open_positions", "final_positions",
        "no_trade_reasons", "rejections", "equity_curve", "regression",
    }  # fmt: skip
    m = rep["metadata"]
    assert (m["version"], m["config_hash"], m["seed"], m["timeframe"]) == (
        "1.2.3", "0123456789abcdef", 7, "5m"
    )  # fmt: skip
    assert m["pairs"] == list(PAIRS)
    assert m["data_range"]["from"] == {"iso": "2024-01-01T08:20:00.000Z", "ms": T0 + 100 * M5}
    assert m["data_range"]["to"]["ms"] == T0 + 400 * M5
    assert (m["cycles"], m["candles"], m["starting_cash"]) == (200, 800, "10000")
    assert set(m["fill_model"]) == set(SimConfig.model_fields)
    assert m["fill_model"]["seed"] == 7  # the run's seed, not the configured 42
    assert set(m["strategies"]) == {"rules"} and isinstance(m["strategies"]["rules"], dict)
    assert m["data_quality"]["BTC/USDT"] == "BTC/USDT 5m BTC_USDT-5m.feather: 400/400 rows kept; OK"
    assert "run" not in m

    s = rep["summary"]
    assert s["trades"] == 3
    assert s["win_rate_pct"] == pytest.approx(66.666667)
    assert s["profit_factor"] == pytest.approx(2.5)  # (20 + 5) / 10
    assert s["total_pnl"] == "15.3"
    assert s["total_pnl_pct"] == pytest.approx(0.153)
    assert s["fees_paid"] == "0.7"  # every fill, the open position's entry included
    assert s["final_equity"] == "10015.3"
    assert s["max_drawdown_pct"] == pytest.approx(stats.max_drawdown_pct(res.equity), abs=1e-6)
    assert s["max_drawdown_pct"] > 9.0
    assert s["exposure_time_pct"] == 25.0
    assert s["avg_trade_pct"] == pytest.approx((10 - 5 + 2.5) / 3, abs=1e-6)  # pnl / cost
    assert (s["best_trade_pct"], s["worst_trade_pct"]) == (10.0, -5.0)
    assert s["avg_holding_minutes"] == pytest.approx((60 + 30 + 300) / 3, abs=1e-6)

    assert rep["per_pair"] == {
        "BTC/USDT": {
            "trades": 2,
            "win_rate_pct": 50.0,
            "realized_pnl": "10",
            "unrealized_pnl": "0",
            "pnl": "10",
            "fees": "0.4",
        },
        "ETH/USDT": {
            "trades": 1,
            "win_rate_pct": 100.0,
            "realized_pnl": "5",
            "unrealized_pnl": "0",
            "pnl": "5",
            "fees": "0.3",
        },
    }
    assert (s["realized_pnl"], s["unrealized_pnl"], s["unattributed_pnl"]) == ("15", "0", "0.3")
    t0 = rep["trades"][0]
    assert t0["entry_time"] == iso_ms(res.inputs.start_ms + 2 * M5)
    assert (t0["pnl"], t0["pnl_pct"], t0["exit_reason"]) == ("20", 10.0, "take_profit")
    assert (t0["quantity"], t0["entry_price"], t0["exit_price"]) == ("2", "100", "110")
    assert list(rep["no_trade_reasons"]) == ["EXITS_ONLY_NOTHING_TO_EXIT", "NO_SIGNAL"]
    assert rep["rejections"] == {"COOLDOWN": 2, "ZZ_OTHER": 1}
    assert set(rep["regression"]) == set(REGRESSION_KEYS)
    assert rep["regression"]["total_trades"] == 3
    assert rep["regression"]["profit_factor"] == s["profit_factor"]


def test_profit_factor_without_losses_is_written_as_null(tmp_path: Path) -> None:
    res = make_result()
    res.trades = [t for t in res.trades if t.pnl > 0]
    path = write_report(build_report(res, version="x", wall_clock=False), tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["summary"]["profit_factor"] is None
    assert '"profit_factor": null' in path.read_text()


def test_report_is_byte_identical_without_wall_clock(tmp_path: Path) -> None:
    a = write_report(build_report(make_result(), version="1", wall_clock=False), tmp_path / "a")
    b = write_report(build_report(make_result(), version="1", wall_clock=False), tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write cleaned up


def test_wall_clock_fields_live_only_under_metadata_run() -> None:
    res = make_result()
    clock = SimClock(T0 + 5 * DAY + 1)
    timed = build_report(res, version="1", wall_clock=True, clock=clock)
    assert timed["metadata"]["run"] == {
        "generated_at": "2024-01-06T00:00:00.001Z",
        "wall_s": 1.25,
        "candles_per_s": 640.0,
    }
    plain = build_report(res, version="1", wall_clock=False)
    assert dumps(without_run(timed)) == dumps(plain)


def test_equity_curve_downsampling_keeps_drawdown_extremes() -> None:
    n = 50_000
    eq = [10_000.0 + (i % 97) * 0.5 for i in range(n)]
    eq[12_345] = 12_000.0  # the peak ...
    eq[31_000] = 8_000.0  # ... and the trough of the worst fall
    ts = [T0 + i * M5 for i in range(n)]
    curve = equity_curve(ts, eq)
    assert len(curve) <= 2_000
    points = {p[0]: p[1] for p in curve}
    assert points[ts[0]] == eq[0] and points[ts[-1]] == eq[-1]
    assert points[ts[12_345]] == 12_000.0 and points[ts[31_000]] == 8_000.0
    assert [p[0] for p in curve] == sorted(points)
    assert len(equity_curve(ts[:10], eq[:10])) == 10


def test_floats_are_rounded_and_never_nan() -> None:
    res = make_result()
    res.equity = [10_000.123456789] * 200
    rep = build_report(res, version="1", wall_clock=False)
    assert rep["equity_curve"][0][1] == 10_000.123457
    assert rep["summary"]["sharpe"] == 0.0 and rep["summary"]["sortino"] == 0.0
    dumps(rep)  # allow_nan=False: would raise on NaN or inf


def test_summary_table_lists_key_figures_and_pairs() -> None:
    text = summary_table(build_report(make_result(), version="1", wall_clock=False))
    for needle in ("Trades", "Win rate", "Max drawdown", "Profit factor", "Sharpe", "Fees paid"):
        assert needle in text
    assert "15.30 USDT" in text  # total PnL
    assert any(line.startswith("BTC/USDT") and " 2 " in line for line in text.splitlines())
    assert any(line.startswith("ETH/USDT") for line in text.splitlines())
    assert len({len(line) for line in text.splitlines()[1:] if line.strip("=-")}) <= 2


# -- a real run through the daemon's pipeline -----------------------------------------------


def real_setup() -> tuple[VigilConfig, ReplayInputs]:
    cfg = VigilConfig(
        universe=UniverseConfig(symbols=PAIRS, min_quote_volume_24h=Decimal(0)),
    )
    bars = 3_000
    series = {
        p: generate_candles(
            p, "5m", T0, bars, seed=i + 1, start_price=100.0 * (i + 1), base_volume=1e6
        )
        for i, p in enumerate(PAIRS)
    }
    reports = {
        p: DataReport(symbol=p, path="", rows_read=bars, rows_kept=bars, timeframe="5m")
        for p in PAIRS
    }
    start = T0 + M5 + cfg.loop.warmup_candles * M5
    inputs = ReplayInputs(series, reports, markets_from_series(series), M5, start, T0 + bars * M5)
    return cfg, inputs


async def test_real_backtest_report_is_consistent_and_byte_identical(tmp_path: Path) -> None:
    cfg, inputs = real_setup()
    h = config_hash(cfg)
    first = await run_backtest(cfg, inputs, config_hash=h, seed=11)
    second = await run_backtest(cfg, inputs, config_hash=h, seed=11)
    assert first.trades, "the synthetic data should produce trades; the test proves nothing"
    a = write_report(build_report(first, version="t", wall_clock=False), tmp_path / "a.json")
    b = write_report(build_report(second, version="t", wall_clock=False), tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()

    rep = json.loads(a.read_text())
    s = rep["summary"]
    assert s["trades"] == len(first.trades) == len(rep["trades"])
    assert rep["metadata"]["cycles"] == first.cycles == len(first.equity)
    assert sum(p["trades"] for p in rep["per_pair"].values()) == s["trades"]
    assert sum(Decimal(p["fees"]) for p in rep["per_pair"].values()) == Decimal(s["fees_paid"])
    # The rows add up to the total: realized (closed trades and partial exits) plus the
    # open positions at their last close.
    assert sum(Decimal(p["pnl"]) for p in rep["per_pair"].values()) == Decimal(s["total_pnl"])
    assert Decimal(s["unattributed_pnl"]) == 0
    assert (
        sum(Decimal(p["realized_pnl"]) for p in rep["per_pair"].values())
        >= sum(Decimal(t["pnl"]) for t in rep["trades"])
        or first.positions
    )
    assert sum(Decimal(p["unrealized_pnl"]) for p in rep["open_positions"]) == Decimal(
        s["unrealized_pnl"]
    )
    assert Decimal(s["final_equity"]) - Decimal(rep["metadata"]["starting_cash"]) == Decimal(
        s["total_pnl"]
    )
    assert sum(rep["no_trade_reasons"].values()) <= first.cycles
    assert rep["equity_curve"][0][0] == inputs.start_ms
    assert rep["metadata"]["fill_model"]["seed"] == 11
    assert rep["final_positions"] == {s: str(p.quantity) for s, p in first.positions.items()}
    assert [p["symbol"] for p in rep["open_positions"]] == sorted(first.positions)
