"""Regime: classification from the index's features, hysteresis, multipliers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.config import RegimeConfig, RegimeMultipliers
from core.features import SymbolFeatures
from core.models import Regime, RegimeState
from core.regime import classify, multiplier, regime_keys, update_regime
from tests.core.helpers import T0, TF, features_of, make_features

CFG = RegimeConfig()  # ema 50/200, atr 14, peak 288, bear 5%, crash 10% or ATR 3%


def index(
    *,
    close: float = 100.0,
    fast: float | None = 100.0,
    slow: float | None = 100.0,
    atr: float | None = 1.0,
    peak: float | None = 100.0,
    cfg: RegimeConfig = CFG,
) -> SymbolFeatures:
    return make_features(
        "BTC/USDT",
        close=close,
        values={
            f"ema:{cfg.ema_fast}": fast,
            f"ema:{cfg.ema_slow}": slow,
            f"atr:{cfg.atr_period}": atr,
            f"peak:{cfg.drawdown_lookback}": peak,
        },
    )


def test_regime_keys() -> None:
    assert regime_keys(CFG) == {"ema:50", "ema:200", "atr:14", "peak:288"}


# --------------------------------------------------------------------------- classify


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"close": 106, "fast": 105, "slow": 100, "peak": 106}, Regime.BULL),
        # down trend: fast under slow and price under slow, barely off the peak
        ({"close": 97, "fast": 98, "slow": 100, "peak": 99}, Regime.BEAR),
        # up trend but 6% off the peak
        ({"close": 104, "fast": 105, "slow": 100, "peak": 110.64}, Regime.BEAR),
        # mixed signals are chop
        ({"close": 99, "fast": 105, "slow": 100, "peak": 101}, Regime.CHOP),
        ({"close": 101, "fast": 98, "slow": 100, "peak": 102}, Regime.CHOP),
        ({"close": 101, "fast": 100, "slow": 100, "peak": 102}, Regime.CHOP),
        # crash by drawdown, whatever the trend
        ({"close": 89, "fast": 105, "slow": 80, "peak": 100}, Regime.CRASH),
        # crash by volatility: ATR 3% of price
        ({"close": 100, "fast": 105, "slow": 90, "atr": 3.0, "peak": 100}, Regime.CRASH),
    ],
)
def test_classify(kw: dict[str, float], expected: Regime) -> None:
    assert classify(index(**kw), CFG) is expected


def test_atr_just_below_the_crash_level_is_not_a_crash() -> None:
    assert classify(index(close=106, fast=105, slow=100, atr=3.17, peak=106), CFG) is Regime.BULL
    assert classify(index(close=106, fast=105, slow=100, atr=3.2, peak=106), CFG) is Regime.CRASH


def test_drawdown_just_short_of_the_crash_level_is_bear() -> None:
    assert classify(index(close=90.01, fast=105, slow=80, peak=100), CFG) is Regime.BEAR


def test_a_drawdown_of_exactly_the_crash_level_is_a_crash() -> None:
    assert classify(index(close=90, fast=105, slow=80, peak=100), CFG) is Regime.CRASH


@pytest.mark.parametrize("missing", ["fast", "slow", "atr", "peak"])
def test_none_while_any_indicator_warms_up(missing: str) -> None:
    assert classify(index(**{missing: None}), CFG) is None  # type: ignore[arg-type]


def test_none_without_index_features() -> None:
    assert classify(None, CFG) is None


SMALL = RegimeConfig(ema_fast=3, ema_slow=6, atr_period=3, drawdown_lookback=10)


def small(closes: list[float]) -> Regime | None:
    return classify(features_of(closes, regime_keys(SMALL)), SMALL)


def test_classify_from_a_real_feature_bank() -> None:
    up = [100 + 0.5 * i for i in range(30)]
    down = [100 - 0.5 * i for i in range(30)]
    assert small(up) is Regime.BULL
    assert small(down) is Regime.BEAR
    assert small([*up, up[-1] * 0.85]) is Regime.CRASH
    assert small(up[:5]) is None  # ema:6 is not warm yet


# --------------------------------------------------------------------------- hysteresis

C3 = RegimeConfig(confirm_cycles=3)


def step(state: RegimeState, observed: Regime | None, candle: int) -> RegimeState:
    return update_regime(state, observed, C3, T0 + candle * TF + 1, T0 + candle * TF)


def test_a_new_regime_needs_confirm_cycles_distinct_candles() -> None:
    s = RegimeState()  # chop
    s = step(s, Regime.BULL, 1)
    assert (s.regime, s.candidate, s.candidate_count) == (Regime.CHOP, Regime.BULL, 1)
    s = step(s, Regime.BULL, 2)
    assert (s.regime, s.candidate_count) == (Regime.CHOP, 2)
    s = step(s, Regime.BULL, 3)
    assert (s.regime, s.candidate, s.candidate_count) == (Regime.BULL, None, 0)
    assert s.since_ms == T0 + 3 * TF + 1 and s.candle_ts == T0 + 3 * TF


def test_the_same_candle_counts_once_however_many_cycles_see_it() -> None:
    s = step(RegimeState(), Regime.BULL, 1)
    for _ in range(10):
        again = update_regime(s, Regime.BULL, C3, T0 + 2 * TF, T0 + TF)
        assert again is s
    s = step(s, Regime.BULL, 2)
    assert s.regime is Regime.CHOP and s.candidate_count == 2


def test_confirm_cycles_one_adopts_at_once() -> None:
    cfg = RegimeConfig(confirm_cycles=1)
    s = update_regime(RegimeState(), Regime.BEAR, cfg, T0, T0)
    assert s.regime is Regime.BEAR and s.since_ms == T0


def test_crash_is_adopted_at_once_and_left_slowly() -> None:
    s = step(RegimeState(Regime.BULL), Regime.CRASH, 1)
    assert s.regime is Regime.CRASH and s.since_ms == T0 + TF + 1
    s = step(s, Regime.BULL, 2)
    s = step(s, Regime.BULL, 3)
    assert s.regime is Regime.CRASH
    s = step(s, Regime.BULL, 4)
    assert s.regime is Regime.BULL


def test_seeing_the_current_regime_resets_the_candidate() -> None:
    s = step(RegimeState(), Regime.BULL, 1)
    s = step(s, Regime.BULL, 2)
    s = step(s, Regime.CHOP, 3)
    assert (s.regime, s.candidate, s.candidate_count) == (Regime.CHOP, None, 0)
    s = step(s, Regime.BULL, 4)
    assert s.candidate_count == 1


def test_a_different_candidate_restarts_the_count() -> None:
    s = step(RegimeState(), Regime.BULL, 1)
    s = step(s, Regime.BULL, 2)
    s = step(s, Regime.BEAR, 3)
    assert (s.regime, s.candidate, s.candidate_count) == (Regime.CHOP, Regime.BEAR, 1)


@pytest.mark.parametrize(
    "pattern",
    [
        (Regime.BULL, Regime.CHOP),
        (Regime.BULL, Regime.BEAR),
        (Regime.BULL, Regime.BULL, Regime.BEAR),
    ],
)
def test_flapping_input_does_not_flap(pattern: tuple[Regime, ...]) -> None:
    s = RegimeState()
    seen = set()
    for i in range(60):
        s = step(s, pattern[i % len(pattern)], i + 1)
        seen.add(s.regime)
    assert seen == {Regime.CHOP}
    assert s.since_ms == 0


def test_warming_input_changes_nothing() -> None:
    s = step(RegimeState(), Regime.BULL, 1)
    assert step(s, None, 2) is s


def test_since_ms_is_kept_while_the_regime_holds() -> None:
    s = RegimeState(Regime.BULL, since_ms=T0)
    s = step(s, Regime.BULL, 5)
    # Nothing pending: the state object is kept as it is (candle_ts only guards a count).
    assert s.since_ms == T0 and s.regime is Regime.BULL and s.candidate is None


# --------------------------------------------------------------------------- multipliers


def test_default_multipliers() -> None:
    got = {r: multiplier(CFG, r) for r in Regime}
    assert got == {
        Regime.BULL: Decimal(1),
        Regime.CHOP: Decimal("0.5"),
        Regime.BEAR: Decimal("0.25"),
        Regime.CRASH: Decimal(0),
    }


def test_configured_multipliers() -> None:
    m = RegimeMultipliers(bull=Decimal("0.9"), chop=Decimal("0.3"), bear=0, crash=0)
    cfg = RegimeConfig(multipliers=m)
    assert multiplier(cfg, Regime.BULL) == Decimal("0.9")
    assert multiplier(cfg, Regime.CHOP) == Decimal("0.3")
    assert multiplier(cfg, Regime.BEAR) == 0


@pytest.mark.parametrize("bad", [Decimal("-0.1"), Decimal("1.01")])
def test_multipliers_stay_within_zero_and_one(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="bull"):
        RegimeMultipliers(bull=bad)


def test_config_rejects_inverted_periods_and_levels() -> None:
    with pytest.raises(ValueError, match="ema_fast"):
        RegimeConfig(ema_fast=200, ema_slow=50)
    with pytest.raises(ValueError, match="bear_drawdown_pct"):
        RegimeConfig(bear_drawdown_pct=Decimal(12))
