"""Regression check of a backtest report against a baseline (`vigil backtest compare`).

Each regression key passes when |current - baseline| <= tolerance_pct * max(|baseline|, 1) / 100:
a relative tolerance, with an absolute floor of tolerance_pct/100 so values near zero (a PnL of
0.01 %) do not fail on noise. A null profit factor (no losing trades) equals only another null.
Unreadable files and missing or malformed keys are errors (ValueError), not failures: the CLI
exits 2 for them, 1 for a failed comparison, 0 for a pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backtest.report import REGRESSION_KEYS

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
NULLABLE = frozenset({"profit_factor"})
COUNTS = frozenset({"total_trades"})  # printed as whole numbers
# Room for binary floating point: 10.5 -> 10.71 at 2 % is a pass, though 10.71 - 10.5 computes
# to 0.21000000000000085.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class CompareRow:
    key: str
    baseline: float | None
    current: float | None
    diff: float | None  # current - baseline; None when either side is null
    allowed: float | None  # largest |diff| that passes; None when either side is null
    ok: bool


@dataclass(frozen=True, slots=True)
class CompareResult:
    ok: bool
    rows: tuple[CompareRow, ...]
    tolerance_pct: float
    warnings: tuple[str, ...] = ()  # the two runs differ in what they tested

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.ok else EXIT_FAIL

    @property
    def failed(self) -> tuple[CompareRow, ...]:
        return tuple(r for r in self.rows if not r.ok)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report and check its regression keys; ValueError says what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such report file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: cannot read the report ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "is it a report written by `vigil backtest --output`?"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a report is a JSON object, found {type(data).__name__}")
    regression_values(data, where=str(p))
    return data


def regression_values(report: Mapping[str, Any], *, where: str = "report") -> dict[str, Any]:
    """The regression keys of a report, checked: numbers, or null where null is allowed."""
    reg = report.get("regression")
    if not isinstance(reg, Mapping):
        raise ValueError(
            f"{where}: no 'regression' section; regenerate it with `vigil backtest --output`"
        )
    missing = [k for k in REGRESSION_KEYS if k not in reg]
    if missing:
        raise ValueError(
            f"{where}: regression keys missing: {', '.join(missing)}; regenerate the report "
            "with this version of vigil"
        )
    out: dict[str, Any] = {}
    for k in REGRESSION_KEYS:
        v = reg[k]
        if v is None and k in NULLABLE:
            out[k] = None
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
        else:
            allowed = "a number or null" if k in NULLABLE else "a number"
            raise ValueError(f"{where}: regression.{k} must be {allowed}, got {v!r}")
    return out


def compare(
    current: Mapping[str, Any], baseline: Mapping[str, Any], tolerance_pct: float
) -> CompareResult:
    """Compare the regression keys of two reports (ValueError on malformed input)."""
    if not math.isfinite(tolerance_pct) or tolerance_pct < 0:
        raise ValueError(f"tolerance must be a percentage >= 0, got {tolerance_pct}")
    cur = regression_values(current, where="current report")
    base = regression_values(baseline, where="baseline report")
    rows = []
    for k in REGRESSION_KEYS:
        b, c = base[k], cur[k]
        if b is None or c is None:
            rows.append(CompareRow(k, b, c, None, None, b is None and c is None))
            continue
        diff = c - b
        allowed = tolerance_pct * max(abs(b), 1.0) / 100.0
        ok = abs(diff) <= allowed + _EPS * max(1.0, allowed)
        rows.append(CompareRow(k, b, c, diff, allowed, ok))
    return CompareResult(
        all(r.ok for r in rows), tuple(rows), tolerance_pct, differences(current, baseline)
    )


def differences(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes two reports measure different things: timeframe, pairs, data range."""
    cm, bm = current.get("metadata") or {}, baseline.get("metadata") or {}
    out = []
    for key, label in (("timeframe", "timeframe"), ("pairs", "pairs"), ("data_range", "range")):
        c, b = _describe(key, cm.get(key)), _describe(key, bm.get(key))
        if c != b:
            out.append(
                f"the reports differ in {label}: current {c}, baseline {b}; the figures may "
                "not be comparable"
            )
    return tuple(out)


def _describe(key: str, value: Any) -> str:
    if value is None:
        return "(not recorded)"
    if key == "pairs" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    if key == "data_range" and isinstance(value, Mapping):
        ends = [value.get(k) for k in ("from", "to")]
        isos = [e.get("iso", "?") if isinstance(e, Mapping) else str(e) for e in ends]
        return f"{isos[0]} .. {isos[1]}"
    return str(value)


def compare_files(
    current_path: str | Path, baseline_path: str | Path, tolerance_pct: float
) -> tuple[int, str]:
    """(exit code, text to print) for the CLI: 0 pass, 1 fail, 2 error."""
    try:
        result = compare(load_report(current_path), load_report(baseline_path), tolerance_pct)
    except ValueError as exc:
        return EXIT_ERROR, f"error: {exc}\n"
    return result.exit_code, format_compare(result)


def _cell(v: float | None, count: bool = False) -> str:
    if v is None:
        return "null"
    if count and float(v).is_integer():
        return f"{int(v):d}"
    return f"{v:.4f}"


def format_compare(result: CompareResult) -> str:
    head = f"{'key':<18}{'baseline':>14}{'current':>14}{'diff':>14}{'allowed':>14}  result"
    lines = [f"warning: {w}" for w in result.warnings]
    lines += [head, "-" * len(head)]
    for r in result.rows:
        n = r.key in COUNTS
        allowed = "both null" if r.allowed is None and r.ok else _cell(r.allowed)
        lines.append(
            f"{r.key:<18}{_cell(r.baseline, n):>14}{_cell(r.current, n):>14}"
            f"{_cell(r.diff, n):>14}{allowed:>14}  {'ok' if r.ok else 'FAIL'}"
        )
    lines.append("-" * len(head))
    verdict = "PASS" if result.ok else f"FAIL ({len(result.failed)} of {len(result.rows)} keys)"
    lines.append(f"{verdict} at tolerance {result.tolerance_pct:g} %")
    return "\n".join(lines) + "\n"
