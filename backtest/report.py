"""The backtest report: one JSON document built from a `BacktestResult`, and a terminal table.

Byte stability is the point: the same inputs and seed must give the same file. So money stays
Decimal and is written as strings, floats are rounded to 6 decimals, every mapping is written
with sorted keys, and the only wall-clock values (when the run happened, how long it took) live
under `metadata.run`, which `without_run` removes and which compare and the determinism tests
ignore. Field meanings and formulas: docs/backtesting.md.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from backtest import stats
from backtest.runner import BacktestResult, Trade
from core.candles import iso
from core.clock import Clock
from strategy.registry import resolve_params

ZERO = Decimal(0)

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
        params = resolve_params(name, spec.params)
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


def last_marks(r: BacktestResult) -> dict[str, Decimal]:
    """Each open position's mark: the close of its last candle closed by the end of the run,
    the price the final equity values it at."""
    tf = r.inputs.timeframe_ms
    out = {}
    for sym in r.positions:
        series = r.inputs.series.get(sym)
        if series is None or not len(series):
            continue
        i = bisect.bisect_right(series.ts, r.inputs.end_ms - tf) - 1
        if i >= 0:
            out[sym] = Decimal(str(series.close[i]))
    return out


def _unrealized(r: BacktestResult) -> dict[str, Decimal]:
    """Mark value minus what was paid (fees included), per open position, as portfolio.value
    counts it; a position without a mark counts at cost (0)."""
    marks = last_marks(r)
    return {
        sym: (p.quantity * marks[sym] - p.cost_basis - p.entry_fees) if sym in marks else ZERO
        for sym, p in r.positions.items()
    }


def _realized(r: BacktestResult) -> dict[str, Decimal]:
    """Realized PnL per symbol from every sell fill, so the partial exits of a position still
    open at the end count too (closed trades alone would leave them out)."""
    out: dict[str, Decimal] = {}
    for f in r.fills:
        out[f["symbol"]] = out.get(f["symbol"], ZERO) + Decimal(f.get("realized", "0"))
    return out


def _summary(r: BacktestResult) -> dict[str, Any]:
    pnls = [float(t.pnl) for t in r.trades]
    pcts = [t.pnl_pct for t in r.trades]
    total_pnl = r.final_equity - r.starting_cash
    total_pnl_pct = float(total_pnl / r.starting_cash * 100) if r.starting_cash else 0.0
    returns = stats.cycle_returns(r.equity)
    tf = r.inputs.timeframe_ms
    realized = sum(_realized(r).values(), ZERO)
    unrealized = sum(_unrealized(r).values(), ZERO)
    return {
        "trades": len(r.trades),
        "win_rate_pct": num(stats.win_rate_pct(pnls)),
        "total_pnl": _dec(total_pnl),
        "realized_pnl": _dec(realized),
        "unrealized_pnl": _dec(unrealized),
        # What the per-pair rows cannot place (0 unless marks and the engine disagree).
        "unattributed_pnl": _dec(total_pnl - realized - unrealized),
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
    realized, unrealized = _realized(r), _unrealized(r)
    out = {}
    for sym in sorted({*r.inputs.series, *fees, *(t.symbol for t in r.trades)}):
        trades = [t for t in r.trades if t.symbol == sym]
        pnls = [float(t.pnl) for t in trades]
        done, held = realized.get(sym, ZERO), unrealized.get(sym, ZERO)
        out[sym] = {
            "trades": len(trades),
            "win_rate_pct": num(stats.win_rate_pct(pnls)),
            "realized_pnl": _dec(done),
            "unrealized_pnl": _dec(held),
            "pnl": _dec(done + held),
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
    marks, unrealized = last_marks(r), _unrealized(r)
    return [
        {
            "symbol": p.symbol,
            "strategy": p.strategy,
            "entry_time": iso_ms(p.opened_ms),
            "entry_ts": p.opened_ms,
            "quantity": _dec(p.quantity),
            "avg_entry_price": _dec(p.avg_entry_price),
            "mark_price": _dec(marks[sym]) if sym in marks else None,
            "unrealized_pnl": _dec(unrealized[sym]),
            "held_minutes": num((r.inputs.end_ms - p.opened_ms) / 60_000),
        }
        for sym, p in sorted(r.positions.items())
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


def duration(minutes: float | None) -> str:
    """Minutes for a person: '45 min', '5.2 h' or '3.1 d', as the HTML report shows them."""
    if minutes is None:
        return "n/a"
    if minutes < 120:
        return f"{minutes:,.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:,.1f} h"
    return f"{minutes / 1440:,.1f} d"


def summary_table(report: Mapping[str, Any]) -> str:
    """A fixed-width table for the terminal: the key figures, one row per pair (realized and
    unrealized PnL), a total row that is the sum of the rows, then the open positions."""
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
        ("Avg holding", duration(s["avg_holding_minutes"])),
        ("Cycles", _fmt(m["cycles"])),
    ]
    width = 80
    lines.append("=" * width)
    for (lk, lv), (rk, rv) in zip(left, right, strict=True):
        lines.append(f"{lk:<14}{lv:>24}  | {rk:<14}{rv:>24}")
    lines.append("-" * width)
    lines.append(
        f"{'Pair':<12}{'Trades':>7}{'Win %':>8}{'Realized':>14}{'Unrealized':>13}"
        f"{'PnL':>14}{'Fees':>12}"
    )
    rows = report["per_pair"]
    for sym, p in rows.items():
        lines.append(_pair_row(sym, p))
    extra = Decimal(s["unattributed_pnl"])
    if extra != 0:  # the engine valued something the pair rows do not explain: show it
        lines.append(f"{'not in a pair':<40}{'':>13}{_fmt(str(extra)):>14}{'':>12}")
    lines.append("-" * width)
    total = {
        "trades": sum(p["trades"] for p in rows.values()),
        "win_rate_pct": s["win_rate_pct"],
        **{
            k: str(sum((Decimal(p[k]) for p in rows.values()), ZERO))
            for k in ("realized_pnl", "unrealized_pnl", "pnl", "fees")
        },
    }
    total["pnl"] = str(Decimal(total["pnl"]) + extra)  # = summary total_pnl
    lines.append(_pair_row("Total", total))
    held = report.get("open_positions") or []
    if held:
        lines.append("-" * width)
        lines.append("Open at the end, valued at the last close:")
        for p in held:
            lines.append(
                f"  {p['symbol']:<12} {p['quantity']} @ {_fmt(p['avg_entry_price'])} -> "
                f"{_fmt(p['mark_price'])}  unrealized {_fmt(p['unrealized_pnl'])} {q}, "
                f"held {duration(p['held_minutes'])}"
            )
    lines.append("=" * width)
    return "\n".join(lines) + "\n"


def _pair_row(name: str, p: Mapping[str, Any]) -> str:
    return (
        f"{name:<12}{p['trades']:>7}{_fmt(p['win_rate_pct']):>8}{_fmt(p['realized_pnl']):>14}"
        f"{_fmt(p['unrealized_pnl']):>13}{_fmt(p['pnl']):>14}{_fmt(p['fees']):>12}"
    )
