"""Deterministic scans over the latest closed candle, behind stale and bad-tick guards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.config import OutlierGuard, TriggerConfig
from core.features import SymbolFeatures
from core.models import Exclusion, Trigger
from core.reasons import TriggerReject

BREAKOUT = "breakout"
MOMENTUM = "momentum"
VOLUME_SPIKE = "volume_spike"
RSI_REVERSION = "rsi_reversion"


@dataclass(frozen=True, slots=True)
class TriggerScan:
    triggers: tuple[Trigger, ...]
    rejected: tuple[Exclusion, ...]
    red_flags: tuple[str, ...]  # symbols whose data looked wrong; the cycle bans them


def trigger_keys(cfg: TriggerConfig) -> frozenset[str]:
    keys = {
        f"med:{cfg.outlier.median_lookback}",
        f"vavg:{cfg.outlier.median_lookback}",
    }
    if cfg.breakout.enabled:
        keys |= {f"hh:{cfg.breakout.lookback}", f"vavg:{cfg.breakout.volume_lookback}"}
    if cfg.momentum.enabled:
        keys.add(f"roc:{cfg.momentum.lookback}")
    if cfg.volume_spike.enabled:
        keys.add(f"vavg:{cfg.volume_spike.lookback}")
    if cfg.rsi_reversion.enabled:
        keys.add(f"rsi:{cfg.rsi_reversion.period}")
    return frozenset(keys)


def is_outlier(
    price: float, volume: float, median: float, avg_volume: float | None, guard: OutlierGuard
) -> bool:
    """The bad-tick guard, one definition for triggers, marks and data checks: `price` is
    more than `max_deviation_pct` away from `median` (the median close of the bars before)
    and `volume` is below `volume_confirm_mult` x `avg_volume` (their mean volume)."""
    # Compared as products: `price / median - 1` rounds and would misjudge the exact limit.
    if not abs(price - median) > guard.max_deviation_pct / 100.0 * median:
        return False
    return (
        avg_volume is None or avg_volume <= 0.0 or volume < guard.volume_confirm_mult * avg_volume
    )


def _strength(ratio: float) -> float:
    """0.5 at the threshold, rising linearly to 1.0 at twice the threshold."""
    return min(1.0, 0.5 + 0.5 * (ratio - 1.0))


def scan(
    symbols: Iterable[str],
    features: Mapping[str, SymbolFeatures],
    cfg: TriggerConfig,
    *,
    now_ms: int,
    timeframe_ms: int,
) -> TriggerScan:
    bo, mo, vs, rs, og = (
        cfg.breakout,
        cfg.momentum,
        cfg.volume_spike,
        cfg.rsi_reversion,
        cfg.outlier,
    )
    keys = cfg.scan_keys  # (med, outlier vavg, hh, breakout vavg, roc, spike vavg, rsi)
    max_age = cfg.stale_after_candles * timeframe_ms
    oldest = now_ms - timeframe_ms - max_age  # a candle opened before this is stale
    # Config read once, not per symbol: this loop runs for every eligible symbol every cycle.
    bo_on, bo_mult = bo.enabled, bo.volume_mult
    mo_on, mom_min = mo.enabled, mo.min_return_pct / 100.0
    mom_floor = mom_min - 1e-12  # absorbs float rounding: an exact +1.5% move fires at 1.5%
    vs_on, vs_mult = vs.enabled, vs.mult
    rs_on, oversold = rs.enabled, rs.oversold

    out: list[Trigger] = []
    rejected: list[Exclusion] = []
    flags: list[str] = []
    get = features.get
    for sym in symbols:
        f = get(sym)
        if f is None:
            continue
        ts = f.ts
        if ts < oldest:
            age = now_ms - (ts + timeframe_ms)
            rejected.append(Exclusion(sym, TriggerReject.STALE_CANDLE, f"{age // 1000}s old"))
            continue
        # Every key in one pass (a C loop), rather than one method call per key and symbol.
        med, ovol, hh, bvol, roc, svol, rsi = map(f.values.get, keys)
        close, volume = f.close, f.volume
        if med is None:
            rejected.append(Exclusion(sym, TriggerReject.WARMING_UP, keys[0]))
            continue
        if is_outlier(close, volume, med, ovol, og):
            rejected.append(
                Exclusion(
                    sym,
                    TriggerReject.OUTLIER_PRICE,
                    f"close {close:g} vs median {med:g} without volume",
                )
            )
            flags.append(sym)
            continue

        if (
            bo_on
            and hh is not None
            and bvol
            and bvol > 0.0
            and close > hh
            and volume >= bo_mult * bvol
        ):
            ratio = volume / (bo_mult * bvol)
            out.append(
                Trigger(sym, BREAKOUT, _strength(ratio), ts, f"close>{hh:g} vol x{ratio:.2f}")
            )
        if mo_on and roc is not None and roc >= mom_floor:
            out.append(Trigger(sym, MOMENTUM, _strength(roc / mom_min), ts, f"roc {roc:.4f}"))
        if vs_on and close > f.open and svol and svol > 0.0 and volume >= vs_mult * svol:
            ratio = volume / (vs_mult * svol)
            out.append(Trigger(sym, VOLUME_SPIKE, _strength(ratio), ts, f"vol x{ratio:.2f}"))
        if rs_on and rsi is not None and rsi <= oversold:
            depth = (oversold - rsi) / oversold
            out.append(Trigger(sym, RSI_REVERSION, min(1.0, 0.5 + depth), ts, f"rsi {rsi:.1f}"))
    return TriggerScan(tuple(out), tuple(rejected), tuple(flags))
