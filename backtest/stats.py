"""Performance statistics of a backtest: pure functions over plain floats.

Every function returns a finite float (0.0 when the statistic is undefined, e.g. no trades or
zero variance), except `profit_factor`, which returns None when there are no losing trades.
Percentages are percent numbers (12.5 means 12.5%). The report converts Decimals to float
before calling these; money itself stays Decimal in the report.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

YEAR_MS = 365 * 24 * 3600 * 1000
# Below this a standard deviation is float noise, not risk: dividing by it would print a
# Sharpe of 1e12 for an equity curve that never moved.
_TINY = 1e-12


def _arr(values: Sequence[float]) -> npt.NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64)


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def periods_per_year(timeframe_ms: int) -> float:
    """Cycles in a year: 365 * 24 * 3600 * 1000 / timeframe_ms."""
    if timeframe_ms <= 0:
        raise ValueError(f"timeframe_ms must be positive, got {timeframe_ms}")
    return YEAR_MS / timeframe_ms


def total_return_pct(equity: Sequence[float]) -> float:
    """(last / first - 1) * 100 over the equity curve; 0.0 when it is empty or starts at <= 0."""
    if len(equity) == 0 or equity[0] <= 0:
        return 0.0
    return _finite((equity[-1] / equity[0] - 1.0) * 100.0)


def drawdown_pct_series(equity: Sequence[float]) -> list[float]:
    """Per point: (equity / running peak - 1) * 100, so 0 at a new high and negative below."""
    eq = _arr(equity)
    if eq.size == 0:
        return []
    peak = np.maximum.accumulate(eq)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (eq / peak - 1.0) * 100.0, 0.0)
    return [float(x) for x in dd]


def max_drawdown(equity: Sequence[float]) -> tuple[float, int, int]:
    """The worst peak-to-trough fall: (pct, peak index, trough index).

    pct = max over t of (peak_t - equity_t) / peak_t * 100, where peak_t is the running maximum
    of equity up to t; reported as a positive number (0.0 when equity never falls). The peak
    index is where that running maximum was set (its first occurrence).
    """
    eq = _arr(equity)
    if eq.size == 0:
        return 0.0, 0, 0
    peak = np.maximum.accumulate(eq)
    with np.errstate(divide="ignore", invalid="ignore"):
        fall = np.where(peak > 0, (peak - eq) / peak * 100.0, 0.0)
    trough = int(np.argmax(fall))
    pct = float(fall[trough])
    if pct <= 0.0:
        return 0.0, 0, 0
    peak_i = int(np.argmax(eq[: trough + 1]))  # argmax returns the first maximum
    return _finite(pct), peak_i, trough


def max_drawdown_pct(equity: Sequence[float]) -> float:
    """The positive percentage of `max_drawdown`."""
    return max_drawdown(equity)[0]


def cycle_returns(equity: Sequence[float]) -> list[float]:
    """Simple returns between consecutive cycles: r_t = equity_t / equity_{t-1} - 1.

    A step from a non-positive equity counts as 0 (a return is undefined there).
    """
    eq = _arr(equity)
    if eq.size < 2:
        return []
    prev, cur = eq[:-1], eq[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, cur / prev - 1.0, 0.0)
    return [float(x) for x in r]


def sharpe(returns: Sequence[float], timeframe_ms: int) -> float:
    """Annualised Sharpe ratio, risk-free rate 0.

    mean(r) / std(r) * sqrt(P), with std the sample standard deviation (ddof=1) of the per-cycle
    returns and P = periods_per_year(timeframe_ms). 0.0 with fewer than two returns or zero std.
    """
    r = _arr(returns)
    if r.size < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    if sd < _TINY:
        return 0.0
    return _finite(float(np.mean(r)) / sd * math.sqrt(periods_per_year(timeframe_ms)))


def sortino(returns: Sequence[float], timeframe_ms: int) -> float:
    """Annualised Sortino ratio, target return 0.

    mean(r) / DD * sqrt(P), with the downside deviation DD = sqrt(mean(min(r, 0)^2)) taken over
    all returns and P = periods_per_year(timeframe_ms). 0.0 with fewer than two returns or when
    no return is negative (DD = 0: the ratio is undefined, not infinite).
    """
    r = _arr(returns)
    if r.size < 2:
        return 0.0
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if dd < _TINY:
        return 0.0
    return _finite(float(np.mean(r)) / dd * math.sqrt(periods_per_year(timeframe_ms)))


def profit_factor(pnls: Sequence[float]) -> float | None:
    """Gross profit / gross loss: sum of winning PnLs / |sum of losing PnLs|.

    None when no trade lost (including when there are no trades): the ratio has no value then.
    """
    gross_loss = -sum(p for p in pnls if p < 0)
    if gross_loss <= 0:
        return None
    gross_profit = sum(p for p in pnls if p > 0)
    return _finite(gross_profit / gross_loss)


def win_rate_pct(pnls: Sequence[float]) -> float:
    """Trades with PnL > 0 (after fees) / all trades * 100; 0.0 with no trades."""
    if len(pnls) == 0:
        return 0.0
    return sum(1 for p in pnls if p > 0) / len(pnls) * 100.0


def exposure_pct(exposed: Sequence[bool]) -> float:
    """Cycles that ended holding a position / all cycles * 100; 0.0 with no cycles."""
    if len(exposed) == 0:
        return 0.0
    return sum(1 for e in exposed if e) / len(exposed) * 100.0


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (for the average trade %); 0.0 when empty."""
    if len(values) == 0:
        return 0.0
    return _finite(sum(values) / len(values))


def best(values: Sequence[float]) -> float:
    """max(values) (best trade %); 0.0 when empty."""
    return _finite(max(values)) if len(values) else 0.0


def worst(values: Sequence[float]) -> float:
    """min(values) (worst trade %); 0.0 when empty."""
    return _finite(min(values)) if len(values) else 0.0


def avg_holding_minutes(spans_ms: Sequence[tuple[int, int]]) -> float:
    """mean(exit_ts - entry_ts) / 60,000 over (entry_ts, exit_ts) pairs; 0.0 when empty."""
    if len(spans_ms) == 0:
        return 0.0
    return sum(b - a for a, b in spans_ms) / len(spans_ms) / 60_000.0


def downsample_indices(
    values: Sequence[float], max_points: int, keep: Sequence[int] = ()
) -> list[int]:
    """Indices of at most `max_points` points that keep the curve's shape.

    Always keeps the first and last point and `keep` (e.g. a drawdown's peak and trough); the
    rest of the budget goes to the minimum and maximum of equal-width buckets, so spikes and
    dips survive where plain striding would drop them.
    """
    n = len(values)
    if n <= max_points:
        return list(range(n))
    required = sorted({0, n - 1, *(i for i in keep if 0 <= i < n)})
    if max_points < len(required):
        raise ValueError(f"max_points {max_points} cannot hold the {len(required)} kept points")
    v = _arr(values)
    buckets = (max_points - len(required)) // 2
    chosen = set(required)
    if buckets > 0:
        edges = np.linspace(0, n, buckets + 1).astype(np.int64)
        for lo, hi in itertools.pairwise(edges.tolist()):
            if hi <= lo:
                continue
            seg = v[lo:hi]
            chosen.add(int(lo + np.argmin(seg)))
            chosen.add(int(lo + np.argmax(seg)))
    return sorted(chosen)
