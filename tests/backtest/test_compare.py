"""`vigil backtest compare`: pass, fail and error cases, tolerance edges, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backtest.compare import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_PASS,
    compare,
    compare_files,
    format_compare,
    load_report,
)

BASE = {
    "total_trades": 100,
    "win_rate_pct": 50.0,
    "total_pnl_pct": 10.5,
    "max_drawdown_pct": 8.0,
    "profit_factor": 1.5,
}


def report(**over: Any) -> dict[str, Any]:
    return {"metadata": {"seed": 1}, "regression": {**BASE, **over}}


def row(result: Any, key: str) -> Any:
    return next(r for r in result.rows if r.key == key)


def test_identical_reports_pass() -> None:
    res = compare(report(), report(), 0)
    assert res.ok and res.exit_code == EXIT_PASS
    assert [r.key for r in res.rows] == list(BASE)
    assert all(r.diff == 0 for r in res.rows)


def test_relative_tolerance_edges() -> None:
    at_edge = compare(report(total_trades=102), report(), 2)  # |2| <= 2 % of 100
    assert at_edge.ok
    r = row(at_edge, "total_trades")
    assert (r.baseline, r.current, r.diff, r.allowed) == (100.0, 102.0, 2.0, 2.0)
    over = compare(report(total_trades=103), report(), 2)
    assert not over.ok and over.exit_code == EXIT_FAIL
    assert [r.key for r in over.failed] == ["total_trades"]
    assert compare(report(total_trades=98), report(), 2).ok  # either direction
    assert not compare(report(total_trades=97), report(), 2).ok


def test_float_edge_is_not_failed_by_rounding_noise() -> None:
    # 10.71 - 10.5 computes to 0.21000000000000085, against 2 % of 10.5 = 0.21.
    assert compare(report(total_pnl_pct=10.71), report(), 2).ok
    assert not compare(report(total_pnl_pct=10.72), report(), 2).ok


def test_values_near_zero_use_an_absolute_floor() -> None:
    base = report(total_pnl_pct=0.0)
    assert compare(report(total_pnl_pct=0.02), base, 2).ok  # allowed 2 * max(0, 1) / 100
    assert compare(report(total_pnl_pct=-0.02), base, 2).ok
    assert not compare(report(total_pnl_pct=0.03), base, 2).ok
    small = compare(report(total_pnl_pct=0.5), report(total_pnl_pct=0.49), 2)
    assert row(small, "total_pnl_pct").allowed == pytest.approx(0.02)


def test_negative_baseline_uses_its_magnitude() -> None:
    base = report(total_pnl_pct=-20.0)
    assert compare(report(total_pnl_pct=-20.4), base, 2).ok
    assert not compare(report(total_pnl_pct=-20.5), base, 2).ok


def test_zero_tolerance_fails_any_change() -> None:
    assert not compare(report(win_rate_pct=50.000001), report(), 0).ok


def test_null_profit_factor_equals_only_null() -> None:
    both = compare(report(profit_factor=None), report(profit_factor=None), 2)
    assert both.ok
    r = row(both, "profit_factor")
    assert (r.diff, r.allowed) == (None, None)
    assert not compare(report(profit_factor=1.5), report(profit_factor=None), 2).ok
    assert not compare(report(profit_factor=None), report(profit_factor=1.5), 2).ok


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"metadata": {}}, "no 'regression' section"),
        ({"regression": {k: v for k, v in BASE.items() if k != "win_rate_pct"}}, "win_rate_pct"),
        (report(total_trades=None), "regression.total_trades must be a number"),
        (report(total_pnl_pct="3.0"), "must be a number"),
        (report(max_drawdown_pct=True), "must be a number"),
        (report(profit_factor="inf"), "a number or null"),
    ],
)
def test_malformed_reports_are_errors(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare(bad, report(), 2)
    with pytest.raises(ValueError, match="baseline report"):
        compare(report(), bad, 2)


def test_negative_tolerance_is_an_error() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        compare(report(), report(), -1)


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_load_report_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such report file"):
        load_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"regression": ')
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON \(line 1"):
        load_report(bad)
    with pytest.raises(ValueError, match="a report is a JSON object, found list"):
        load_report(write(tmp_path / "list.json", [1, 2]))
    old = {"regression": {k: v for k, v in BASE.items() if k != "profit_factor"}}
    with pytest.raises(ValueError, match="regression keys missing: profit_factor"):
        load_report(write(tmp_path / "old.json", old))
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="cannot read the report"):
        load_report(binary)
    good = write(tmp_path / "good.json", report())
    assert load_report(good)["regression"] == BASE


def test_compare_files_exit_codes(tmp_path: Path) -> None:
    base = write(tmp_path / "base.json", report())
    same = write(tmp_path / "same.json", report(total_trades=101))
    worse = write(tmp_path / "worse.json", report(max_drawdown_pct=12.0))
    code, text = compare_files(same, base, 2)
    assert code == EXIT_PASS and "PASS at tolerance 2 %" in text
    code, text = compare_files(worse, base, 2)
    assert code == EXIT_FAIL and "FAIL (1 of 5 keys)" in text
    assert any(
        line.startswith("max_drawdown_pct") and line.endswith("FAIL") for line in text.splitlines()
    )
    code, text = compare_files(tmp_path / "nope.json", base, 2)
    assert code == EXIT_ERROR and text.startswith("error:") and "nope.json" in text


def test_format_compare_table() -> None:
    text = format_compare(compare(report(profit_factor=None), report(profit_factor=None), 2.5))
    lines = text.splitlines()
    assert lines[0].split() == ["key", "baseline", "current", "diff", "allowed", "result"]
    pf = next(line for line in lines if line.startswith("profit_factor"))
    assert "null" in pf and "both null" in pf and pf.endswith("ok")
    assert lines[-1] == "PASS at tolerance 2.5 %"


def test_counts_print_as_whole_numbers() -> None:
    text = format_compare(compare(report(total_trades=334), report(total_trades=330), 5))
    line = next(x for x in text.splitlines() if x.startswith("total_trades"))
    assert line.split()[1:4] == ["330", "334", "4"]
    assert "334.0000" not in text
    assert "50.0000" in text  # rates keep their decimals


def test_reports_of_different_runs_are_warned_about() -> None:
    def meta(tf: str, pairs: list[str], to: str) -> dict[str, Any]:
        rng = {"from": {"iso": "2024-01-01T00:00:00.000Z"}, "to": {"iso": to}}
        return {"timeframe": tf, "pairs": pairs, "data_range": rng}

    a = {**report(), "metadata": meta("5m", ["BTC/USDT"], "2024-02-01T00:00:00.000Z")}
    b = {**report(), "metadata": meta("1h", ["BTC/USDT", "ETH/USDT"], "2024-03-01T00:00:00.000Z")}
    res = compare(a, b, 2)
    assert res.ok  # same figures: still a pass, but said to be apples and pears
    assert len(res.warnings) == 3
    text = format_compare(res)
    assert "differ in timeframe: current 5m, baseline 1h" in text
    assert "differ in pairs" in text and "differ in range" in text
    assert compare(a, a, 2).warnings == ()
