"""Seeded synthetic candles for tests, replay fixtures and benchmarks.

A geometric random walk; with `regimes=True` it moves through trend phases (up, chop, down,
chop, ...) of random length, so trend, breakout and regime code all have something to find.
Volume spikes when the close breaks out of the prior range. The same seed gives the same
arrays on every machine: all randomness comes from one `numpy.random.Generator`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.candles import CandleSeries
from core.clock import timeframe_ms

# Per-bar drift of each phase, in units of `volatility`: a 300-bar up phase gains about 24%
# at 1% volatility, against about 17% of noise, so trends are visible but not certain.
_PHASES: tuple[tuple[str, float, float], ...] = (
    # name, drift (x volatility), volatility multiplier
    ("up", 0.08, 1.0),
    ("chop", 0.0, 0.7),
    ("down", -0.08, 1.3),
    ("chop", 0.0, 0.7),
)
_PHASE_BARS = (120, 480)  # uniform range of a phase's length
_CHOP_PULL = 0.05  # mean reversion per bar toward the price the chop phase began at
_BREAKOUT_LOOKBACK = 48


def generate_candles(
    symbol: str,
    timeframe: str,
    start_ms: int,
    bars: int,
    *,
    seed: int,
    start_price: float = 100.0,
    drift: float = 0.0,
    volatility: float = 0.01,
    base_volume: float = 1000.0,
    regimes: bool = True,
) -> CandleSeries:
    """`bars` candles from `start_ms` (aligned to the timeframe); drift/volatility per bar."""
    tf = timeframe_ms(timeframe)
    if start_ms % tf:
        raise ValueError(f"start_ms {start_ms} is not aligned to {timeframe} ({tf} ms)")
    if bars < 0:
        raise ValueError(f"bars must not be negative, got {bars}")
    if start_price <= 0 or volatility <= 0 or base_volume <= 0:
        raise ValueError("start_price, volatility and base_volume must be positive")
    rng = np.random.default_rng(seed)
    phase_drift, phase_vol, chop = _phase_plan(rng, bars, regimes)
    steps = drift + phase_drift * volatility + volatility * phase_vol * rng.standard_normal(bars)
    close = np.exp(_walk(np.log(start_price), steps.tolist(), chop.tolist()))

    open_ = np.empty(bars, dtype=np.float64)
    if bars:
        open_[0] = start_price
        open_[1:] = close[:-1]
    # Wicks beyond the body: half-normal, scaled to the bar's volatility.
    wick = volatility * phase_vol * 0.5
    high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal(bars)) * wick)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal(bars)) * wick)

    move = np.abs(np.log(close / open_)) / volatility if bars else close
    volume = base_volume * rng.lognormal(0.0, 0.35, bars) * (1.0 + 0.5 * move)
    # The bar that breaks the range carries the spike; the bars that follow through stay busy.
    breakout = _breakouts(close)
    fresh = breakout.copy()
    fresh[1:] &= ~breakout[:-1]
    volume *= np.where(fresh, rng.uniform(3.0, 6.0, bars), np.where(breakout, 1.5, 1.0))

    ts = start_ms + tf * np.arange(bars, dtype=np.int64)
    return CandleSeries(symbol, timeframe, ts, open_, high, low, close, volume)


def _walk(log_p: float, steps: list[float], chop: list[bool]) -> npt.NDArray[np.float64]:
    """Log prices; in chop phases pulled back toward where the phase began (mean reversion)."""
    out = [0.0] * len(steps)
    anchor = log_p
    was_chop = False
    for i, step in enumerate(steps):
        if chop[i]:
            if not was_chop:
                anchor = log_p
            step += _CHOP_PULL * (anchor - log_p)
        was_chop = chop[i]
        log_p += step
        out[i] = log_p
    return np.asarray(out, dtype=np.float64)


def _phase_plan(
    rng: np.random.Generator, bars: int, regimes: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    drift = np.zeros(bars, dtype=np.float64)
    vol = np.ones(bars, dtype=np.float64)
    chop = np.zeros(bars, dtype=bool)
    if not regimes:
        return drift, vol, chop
    k = int(rng.integers(len(_PHASES)))
    i = 0
    while i < bars:
        length = int(rng.integers(_PHASE_BARS[0], _PHASE_BARS[1] + 1))
        name, d, v = _PHASES[k % len(_PHASES)]
        drift[i : i + length] = d
        vol[i : i + length] = v
        chop[i : i + length] = name == "chop"
        i += length
        k += 1
    return drift, vol, chop


def _breakouts(close: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Closes above the highest (or below the lowest) close of the prior lookback bars."""
    n = len(close)
    out = np.zeros(n, dtype=bool)
    lb = _BREAKOUT_LOOKBACK
    if n <= lb:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(close[:-1], lb)  # windows[j] = [j, j+lb)
    prior_max = windows.max(axis=1)
    prior_min = windows.min(axis=1)
    out[lb:] = (close[lb:] > prior_max) | (close[lb:] < prior_min)
    return out
