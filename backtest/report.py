"""The backtest report: one JSON document built from a `BacktestResult`, and a terminal table.

Byte stability is the point: the same inputs and seed must give the same file. So money stays
Decimal and is written as strings, floats are rounded to 6 decimals, every mapping is written
with sorted keys, and the only wall-clock values (when the run happened, how long it took) live
under `metadata.run`, which `without_run` removes and which compare and the determinism tests
ignore. Field meanings and formulas: docs/backtesting.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from backtest import stats
from backtest.candle_checks import iso
from backtest.runner import BacktestResult, Trade
from core.clock import Clock

MAX_EQUITY_POINTS = 2_000
REGRESSION_KEYS = (
    "total_trades",
    "win_rate_pct",
    "total_pnl_pct",
    "max_drawdown_pct",
    "profit_factor",
)


def num(x: float | None) -> float | None:
    """A float as the report writes it: 6 decimals, no -0.0, None for NaN/inf."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), 6) + 0.0  # adding 0.0 turns -0.0 into 0.0


def iso_ms(ts: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2024-01-01T00:05:00.000Z."""
    base = iso(ts)
    return f"{base[:-1]}.{ts % 1000:03d}Z" if base.endswith("Z") else base


def _when(ts: int) -> dict[str, Any]:
    return {"iso": iso_ms(ts), "ms": ts}


def _dec(d: Decimal) -> str:
    return str(d)


def build_report(
    result: BacktestResult,
    *,
    version: str,
    wall_clock: bool = True,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """The report as JSON-ready data. With wall_clock=True, metadata.run holds when the run
    happened (from `clock`, default the live clock) and how long it took; nothing else in the
    report depends on the wall clock."""
    report: dict[str, Any] = {
        "metadata": _metadata(result, version),
        "summary": _summary(result),
        "per_pair": _per_pair(result),
        "trades": [_trade(t) for t in result.trades],
        "open_positions": _open_positions(result),
        # symbol -> quantity held at the end; the parity test checks it against the daemon.
        "final_positions": {s: _dec(p.quantity) for s, p in sorted(result.positions.items())},
        "no_trade_reasons": _counts(result.no_trade),
        "rejections": _counts(result.rejections),
        "equity_curve": equity_curve(result.equity_ts, result.equity),
    }
    s = report["summary"]
    report["regression"] = {
        "total_trades": s["trades"],
        "win_rate_pct": s["win_rate_pct"],
        "total_pnl_pct": s["total_pnl_pct"],
        "max_drawdown_pct": s["max_drawdown_pct"],
        "profit_factor": s["profit_factor"],
    }
    if wall_clock:
        if clock is None:
            from infra.clock import LiveClock

            clock = LiveClock()
        wall = result.wall_s
        report["metadata"]["run"] = {
            "generated_at": iso_ms(clock.now_ms()),
            "wall_s": num(wall),
            "candles_per_s": num(result.candles / wall) if wall > 0 else None,
        }
    return report


def without_run(report: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without metadata.run: what must be byte-identical between two runs."""
    out = dict(report)
    if isinstance(out.get("metadata"), Mapping):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != "run"}
    return out


def dumps(report: Mapping[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a report."""
    p = Path(path)
    text = dumps(report)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)
    return p


# -- sections -------------------------------------------------------------------------------


def _metadata(r: BacktestResult, version: str) -> dict[str, Any]:
    cfg, inputs = r.config, r.inputs
    fill_model = cfg.sim.model_dump(mode="json")
    fill_model["seed"] = r.seed  # the run may override the configured seed
    strategies = {}
    for name, spec in cfg.enabled_strategies():
        params = spec.resolved_params
        strategies[name] = (
            params.model_dump(mode="json") if hasattr(params, "model_dump") else dict(spec.params)
        )
    return {
        "version": version,
        "config_hash": r.config_hash,
        "seed": r.seed,
        "timeframe": cfg.timeframe,
        "pairs": sorted(inputs.series),
        "data_range": {"from": _when(inputs.start_ms), "to": _when(inputs.end_ms)},
        "cycles": r.cycles,
        "candles": r.candles,
        "bad_ticks": r.bad_ticks,
        "starting_cash": _dec(r.starting_cash),
        "quote_currency": cfg.universe.quote_currency,
        "fill_model": fill_model,
        "strategies": strategies,
        "data_quality": {s: rep.summary() for s, rep in sorted(inputs.reports.items())},
    }


def _summary(r: BacktestResult) -> dict[str, Any]:
    pnls = [float(t.pnl) for t in r.trades]
    pcts = [t.pnl_pct for t in r.trades]
    total_pnl = r.final_equity - r.starting_cash
    total_pnl_pct = float(total_pnl / r.starting_cash * 100) if r.starting_cash else 0.0
    returns = stats.cycle_returns(r.equity)
    tf = r.inputs.timeframe_ms
    return {
        "trades": len(r.trades),
        "win_rate_pct": num(stats.win_rate_pct(pnls)),
        "total_pnl": _dec(total_pnl),
        "total_pnl_pct": num(total_pnl_pct),
        "max_drawdown_pct": num(stats.max_drawdown_pct(r.equity)),
        "profit_factor": num(stats.profit_factor(pnls)),
        "sharpe": num(stats.sharpe(returns, tf)),
        "sortino": num(stats.sortino(returns, tf)),
        "exposure_time_pct": num(stats.exposure_pct(r.exposed)),
        "fees_paid": _dec(sum((Decimal(f["fee"]) for f in r.fills), Decimal(0))),
        "final_equity": _dec(r.final_equity),
        "avg_trade_pct": num(stats.mean(pcts)),
        "best_trade_pct": num(stats.best(pcts)),
        "worst_trade_pct": num(stats.worst(pcts)),
        "avg_holding_minutes": num(
            stats.avg_holding_minutes([(t.entry_ts, t.exit_ts) for t in r.trades])
        ),
        "open_positions": len(r.positions),
    }


def _per_pair(r: BacktestResult) -> dict[str, dict[str, Any]]:
    fees: dict[str, Decimal] = {}
    for f in r.fills:
        fees[f["symbol"]] = fees.get(f["symbol"], Decimal(0)) + Decimal(f["fee"])
    out = {}
    for sym in sorted({*r.inputs.series, *fees, *(t.symbol for t in r.trades)}):
        trades = [t for t in r.trades if t.symbol == sym]
        pnls = [float(t.pnl) for t in trades]
        out[sym] = {
            "trades": len(trades),
            "win_rate_pct": num(stats.win_rate_pct(pnls)),
            "pnl": _dec(sum((t.pnl for t in trades), Decimal(0))),
            "fees": _dec(fees.get(sym, Decimal(0))),
        }
    return out


def _trade(t: Trade) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "strategy": t.strategy,
        "entry_time": iso_ms(t.entry_ts),
        "entry_ts": t.entry_ts,
        "exit_time": iso_ms(t.exit_ts),
        "exit_ts": t.exit_ts,
        "quantity": _dec(t.quantity),
        "entry_price": _dec(t.entry_price),
        "exit_price": _dec(t.exit_price),
        "fees": _dec(t.fees),
        "pnl": _dec(t.pnl),
        "pnl_pct": num(t.pnl_pct),
        "exit_reason": t.exit_reason,
    }


def _open_positions(r: BacktestResult) -> list[dict[str, Any]]:
    return [
        {
            "symbol": p.symbol,
            "strategy": p.strategy,
            "entry_time": iso_ms(p.opened_ms),
            "entry_ts": p.opened_ms,
            "quantity": _dec(p.quantity),
            "avg_entry_price": _dec(p.avg_entry_price),
        }
        for _, p in sorted(r.positions.items())
    ]


def _counts(counter: Mapping[Any, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for k, v in counter.items():
        key = str(k)  # RiskReason is a StrEnum: str() is its value
        merged[key] = merged.get(key, 0) + int(v)
    return dict(sorted(merged.items()))


def equity_curve(
    ts: list[int], equity: list[float], max_points: int = MAX_EQUITY_POINTS
) -> list[tuple[int, float | None]]:
    """[[ts_ms, equity], ...] with at most max_points points, keeping the first and last and
    the max drawdown's peak and trough (see stats.downsample_indices)."""
    _, peak, trough = stats.max_drawdown(equity)
    idx = stats.downsample_indices(equity, max_points, keep=(peak, trough))
    return [(ts[i], num(equity[i])) for i in idx]


# -- terminal -------------------------------------------------------------------------------


def _fmt(v: Any, suffix: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.2f}{suffix}"
    if isinstance(v, str):
        try:
            return f"{Decimal(v):,.2f}{suffix}"
        except ArithmeticError:
            return v
    return f"{v:,}{suffix}" if isinstance(v, int) else f"{v}{suffix}"


def summary_table(report: Mapping[str, Any]) -> str:
    """A fixed-width table for the terminal: the key figures, then one row per pair."""
    m, s = report["metadata"], report["summary"]
    q = m.get("quote_currency", "")
    rng = m["data_range"]
    lines = [
        f"Backtest {', '.join(m['pairs'])}  {m['timeframe']}  "
        f"{rng['from']['iso'][:16]}Z .. {rng['to']['iso'][:16]}Z  seed {m['seed']}",
    ]
    left = [
        ("Trades", _fmt(s["trades"])),
        ("Win rate", _fmt(s["win_rate_pct"], " %")),
        ("Total PnL", f"{_fmt(s['total_pnl'])} {q}".rstrip()),
        ("Total PnL %", _fmt(s["total_pnl_pct"], " %")),
        ("Max drawdown", _fmt(s["max_drawdown_pct"], " %")),
        ("Profit factor", _fmt(s["profit_factor"])),
        ("Sharpe", _fmt(s["sharpe"])),
        ("Sortino", _fmt(s["sortino"])),
    ]
    right = [
        ("Exposure time", _fmt(s["exposure_time_pct"], " %")),
        ("Fees paid", f"{_fmt(s['fees_paid'])} {q}".rstrip()),
        ("Final equity", f"{_fmt(s['final_equity'])} {q}".rstrip()),
        ("Avg trade", _fmt(s["avg_trade_pct"], " %")),
        ("Best trade", _fmt(s["best_trade_pct"], " %")),
        ("Worst trade", _fmt(s["worst_trade_pct"], " %")),
        ("Avg holding", f"{_fmt(s['avg_holding_minutes'])} min"),
        ("Cycles", _fmt(m["cycles"])),
    ]
    width = 72
    lines.append("=" * width)
    for (lk, lv), (rk, rv) in zip(left, right, strict=True):
        lines.append(f"{lk:<14}{lv:>20}  | {rk:<14}{rv:>20}")
    lines.append("-" * width)
    lines.append(f"{'Pair':<14}{'Trades':>8}{'Win %':>10}{'PnL':>20}{'Fees':>20}")
    for sym, p in report["per_pair"].items():
        lines.append(
            f"{sym:<14}{p['trades']:>8}{_fmt(p['win_rate_pct']):>10}"
            f"{_fmt(p['pnl']):>20}{_fmt(p['fees']):>20}"
        )
    lines.append("=" * width)
    return "\n".join(lines) + "\n"
