"""Issue 12 section 6: bad candle files stop `vigil backtest` and `vigil run --replay` with a
named data error and exit 2 before any cycle runs; never a traceback, never a 0-trade "OK"."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from core.candles import CandleSeries
from infra.candle_files import load_candles, write_candles
from runner import exit_codes
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration

ETH = "ETH_USDT-5m"


def _empty(d: Path) -> None:
    write_candles(d / f"{ETH}.feather", CandleSeries.empty("ETH/USDT", "5m"))


def _header_only_csv(d: Path) -> None:
    (d / f"{ETH}.feather").unlink()
    (d / f"{ETH}.csv").write_text("date,open,high,low,close,volume\n")


def _as_csv(d: Path, edit: Callable[[list[str]], None]) -> None:
    series, _ = load_candles(d / f"{ETH}.feather")
    (d / f"{ETH}.feather").unlink()
    write_candles(d / f"{ETH}.csv", series)
    lines = (d / f"{ETH}.csv").read_text().splitlines()
    edit(lines)
    (d / f"{ETH}.csv").write_text("\n".join(lines) + "\n")


def _huge(lines: list[str]) -> None:
    cells = lines[500].split(",")
    cells[2] = cells[4] = "1e308"  # high and close
    lines[500] = ",".join(cells)


def _text(lines: list[str]) -> None:
    cells = lines[700].split(",")
    cells[4] = "12O.5"  # a letter O in the close
    lines[700] = ",".join(cells)


def _truncated(d: Path) -> None:
    p = d / f"{ETH}.feather"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _missing(d: Path) -> None:
    (d / f"{ETH}.feather").unlink()


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty file": (_empty, "ETH/USDT is required but .* holds no candles"),
    "header only": (_header_only_csv, "ETH/USDT is required but .* holds no candles"),
    "price 1e308": (lambda d: _as_csv(d, _huge), "row 499 .* high 1e\\+308, beyond the largest"),
    "text in a number column": (
        lambda d: _as_csv(d, _text),
        "row 699 \\(line 701\\), column close: '12O.5' is not a number",
    ),
    "truncated feather": (_truncated, "ETH_USDT-5m.feather: cannot read as feather candles"),
    "no header": (lambda d: _as_csv(d, lambda lines: lines.pop(0)), "no header line"),
    "pair file missing": (_missing, "pair ETH/USDT is required but has no candle file"),
}


def _broken(ws: Workspace, tmp_path: Path, case: str) -> Path:
    data = tmp_path / "candles"
    shutil.copytree(ws.candles, data)
    CASES[case][0](data)
    return data


def _assert_data_error(res: object, pattern: str) -> None:
    import re

    out = res.stdout + res.stderr  # type: ignore[attr-defined]
    assert res.returncode == exit_codes.CONFIG, out[-3000:]  # type: ignore[attr-defined]
    assert "Traceback" not in out
    assert "data error:" in res.stderr, out[-3000:]  # type: ignore[attr-defined]
    assert re.search(pattern, res.stderr), res.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", sorted(CASES))
def test_backtest_stops_with_a_named_data_error(ws: Workspace, tmp_path: Path, case: str) -> None:
    data = _broken(ws, tmp_path, case)
    out = tmp_path / "report.json"
    res = ws.vigil("backtest", "--data", str(data), "--output", str(out), "--no-progress")
    _assert_data_error(res, CASES[case][1])
    assert not out.exists(), "no report for a run that never ran"


@pytest.mark.parametrize("case", ["pair file missing", "empty file", "truncated feather"])
def test_replay_stops_before_any_cycle(ws: Workspace, tmp_path: Path, case: str) -> None:
    data = _broken(ws, tmp_path, case)
    res = ws.vigil("run", "--replay", str(data), "--speed", "1000000000")
    _assert_data_error(res, CASES[case][1])
    assert not [r for r in ws.records() if r["kind"] == "cycle"]


def test_data_check_names_each_problem(ws: Workspace, tmp_path: Path) -> None:
    data = _broken(ws, tmp_path, "price 1e308")
    res = ws.vigil("data", "check", str(data))
    assert res.returncode == exit_codes.CONFIG, res.stdout + res.stderr
    assert "ETH_USDT-5m.csv: ERROR:" in res.stdout and "1e+308" in res.stdout
    assert "BTC_USDT-5m.feather: BTC/USDT 5m" in res.stdout and "OK" in res.stdout
    _empty(data)
    (data / f"{ETH}.csv").unlink()
    res = ws.vigil("data", "check", str(data))
    assert res.returncode == exit_codes.FAILURE, res.stdout + res.stderr
    assert "EMPTY" in res.stdout
