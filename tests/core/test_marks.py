"""Marks behind the bad-tick guard: an outlier never raises the price a position is valued at."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import OutlierGuard, TriggerConfig
from core.features import FeatureBank
from core.marks import guarded_marks
from core.triggers import is_outlier
from infra.candle_checks import spikes
from tests.core.helpers import make_features, quote

CFG = TriggerConfig()
MED, VAVG = CFG.feature_keys[:2]
SYM = "SOL/USDT"


def feats(close: float, *, volume: float = 10.0, med: float | None = 100.0) -> dict:
    values = {MED: med, VAVG: 10.0}
    return {SYM: make_features(SYM, close=close, volume=volume, values=values)}


def test_the_guard_is_the_triggers_definition() -> None:
    g = OutlierGuard()  # 8% from the median without 2x volume
    assert not is_outlier(108.0, 1.0, 100.0, 10.0, g)  # exactly at the limit: accepted
    assert is_outlier(108.01, 1.0, 100.0, 10.0, g)
    assert is_outlier(91.0, 1.0, 100.0, 10.0, g)
    assert not is_outlier(150.0, 20.0, 100.0, 10.0, g)  # volume confirms the move
    assert is_outlier(150.0, 20.0, 100.0, None, g)  # no volume history: cannot confirm


def test_a_1000x_print_is_valued_at_the_median() -> None:
    marks = guarded_marks([SYM], {SYM: quote(SYM, 100_000)}, feats(100_000.0), CFG)
    assert marks.prices == {SYM: Decimal("100.0")}
    assert marks.guarded and SYM in marks.guarded[0]


def test_the_candle_close_is_guarded_when_there_is_no_quote() -> None:
    marks = guarded_marks([SYM], {}, feats(100_000.0), CFG)
    assert marks.prices == {SYM: Decimal("100.0")}


def test_a_fall_is_never_hidden_from_stops_and_loss_breakers() -> None:
    # Below the median the lower price stands, outlier or not: a real crash often comes
    # without the volume the guard asks for.
    marks = guarded_marks([SYM], {SYM: quote(SYM, 50)}, feats(50.0), CFG)
    assert marks.prices == {SYM: Decimal("50")} and not marks.guarded


def test_confirmed_moves_warm_up_and_normal_prices_pass() -> None:
    assert guarded_marks([SYM], {}, feats(150.0, volume=25.0), CFG).prices[SYM] == Decimal("150.0")
    assert guarded_marks([SYM], {}, feats(150.0, med=None), CFG).prices[SYM] == Decimal("150.0")
    assert guarded_marks([SYM], {}, feats(103.0), CFG).prices[SYM] == Decimal("103.0")
    assert guarded_marks([SYM], {}, {}, CFG).prices == {}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    spike_at=st.integers(25, 70),
    factor=st.sampled_from([0.001, 0.5, 1.2, 3.0, 1000.0]),
)
def test_the_data_check_flags_only_bars_the_guard_flags(
    seed: int, spike_at: int, factor: float
) -> None:
    """The data check's spikes are a subset of what the pipeline's guard sees on the same
    bars (the one definition), and a one-bar spike of any real size is among them."""
    rng = np.random.default_rng(seed)
    n = 80
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    volume = rng.uniform(5, 15, n)
    close[spike_at] *= factor
    bank = FeatureBank([MED, VAVG], history=0)
    flagged_by_guard = set()
    for i in range(n):
        f = bank.push(SYM, i * 300_000, close[i], close[i], close[i], close[i], volume[i])
        med = f.values[MED]
        if med is not None and is_outlier(close[i], volume[i], med, f.values[VAVG], CFG.outlier):
            flagged_by_guard.add(i * 300_000)
    ts = np.arange(n, dtype=np.int64) * 300_000
    found = {t for t, _ in spikes(ts, close, volume, CFG.outlier)}
    assert found <= flagged_by_guard
    if factor in (0.001, 0.5, 3.0, 1000.0):
        assert found == {spike_at * 300_000}


def _spikes_by_definition(close: np.ndarray, volume: np.ndarray, g: OutlierGuard) -> set[int]:
    """The documented definition, bar by bar, with no shortcut."""
    import math

    w, d, out = g.median_lookback, g.max_deviation_pct / 100.0, set()
    for i in range(w, len(close) - 1):
        med = float(np.median(close[i - w : i]))
        avg = math.fsum(volume[i - w : i].tolist()) / w
        if not is_outlier(float(close[i]), float(volume[i]), med, avg, g):
            continue
        band = d * med
        if abs(close[i] - close[i - 1]) > band and abs(close[i + 1] - close[i]) > band:
            out.add(i)
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(0, 120),
    vol=st.sampled_from([0.002, 0.03, 0.08]),
    lookback=st.integers(3, 25),
    shocks=st.lists(st.tuples(st.integers(0, 119), st.floats(0.05, 20.0)), max_size=6),
)
def test_the_spike_shortcuts_find_exactly_the_definition(
    seed: int, n: int, vol: float, lookback: int, shocks: list[tuple[int, float]]
) -> None:
    """The vectorised prefilter in infra.candle_checks.spikes only skips bars that cannot
    be spikes: on volatile walks with shocks it finds exactly what the definition finds."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    volume = rng.uniform(1, 30, n)
    for at, factor in shocks:
        if at < n:
            close[at] *= factor
    g = OutlierGuard(median_lookback=lookback)
    ts = np.arange(n, dtype=np.int64) * 300_000
    found = {int(t // 300_000) for t, _ in spikes(ts, close, volume, g)}
    assert found == _spikes_by_definition(close, volume, g)
