"""Market regime from the index symbol: trend, volatility and drawdown, with hysteresis."""

from __future__ import annotations

from decimal import Decimal

from core.config import RegimeConfig
from core.features import SymbolFeatures
from core.models import Regime, RegimeState


def regime_keys(cfg: RegimeConfig) -> frozenset[str]:
    return frozenset(cfg.feature_keys)


def classify(f: SymbolFeatures | None, cfg: RegimeConfig) -> Regime | None:
    """The regime the index shows right now, or None while its indicators warm up."""
    if f is None:
        return None
    v = f.values
    k_fast, k_slow, k_atr, k_peak = cfg.feature_keys
    fast, slow, atr, peak = v.get(k_fast), v.get(k_slow), v.get(k_atr), v.get(k_peak)
    if fast is None or slow is None or atr is None or peak is None:
        return None
    close = f.close
    # Thresholds as products, not ratios: an exact 10% fall must count as 10%.
    crash_k, bear_k, crash_atr = cfg.float_limits
    crash_floor = peak * crash_k
    bear_floor = peak * bear_k
    if close <= crash_floor or atr * 100.0 >= crash_atr * close:
        return Regime.CRASH
    trend_down = fast < slow and close < slow
    if trend_down or close <= bear_floor:
        return Regime.BEAR
    if fast > slow and close > slow:
        return Regime.BULL
    return Regime.CHOP


def update_regime(
    state: RegimeState,
    observed: Regime | None,
    cfg: RegimeConfig,
    now_ms: int,
    candle_ts: int,
) -> RegimeState:
    """Adopt a new regime only after it held for `confirm_cycles` index candles in a row.

    Each index candle counts once however many cycles see it, so a daemon cycling every
    minute and a backtest cycling every candle confirm at the same moment. Crash is adopted
    at once: being slow to see a crash costs money, being slow to leave one only costs
    opportunity.
    """
    if observed is None or candle_ts == state.candle_ts:
        return state
    if observed is state.regime:
        if state.candidate is None:
            # Nothing pending: candle_ts may stay behind; it only guards a count in progress.
            return state
        return RegimeState(state.regime, None, 0, state.since_ms, candle_ts)
    if observed is Regime.CRASH:
        return RegimeState(Regime.CRASH, None, 0, now_ms, candle_ts)
    count = state.candidate_count + 1 if observed is state.candidate else 1
    if count >= cfg.confirm_cycles:
        return RegimeState(observed, None, 0, now_ms, candle_ts)
    return RegimeState(state.regime, observed, count, state.since_ms, candle_ts)


def multiplier(cfg: RegimeConfig, regime: Regime) -> Decimal:
    return cfg.multipliers.of(regime)
