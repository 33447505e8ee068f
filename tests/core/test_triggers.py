"""Trigger scans: thresholds, strengths, stale and bad-tick guards, disabled scans, keys."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import (
    BreakoutTrigger,
    MomentumTrigger,
    OutlierGuard,
    RsiReversionTrigger,
    TriggerConfig,
    VolumeSpikeTrigger,
)
from core.features import FeatureBank, SymbolFeatures
from core.reasons import TriggerReject
from core.triggers import (
    BREAKOUT,
    MOMENTUM,
    RSI_REVERSION,
    VOLUME_SPIKE,
    TriggerScan,
    scan,
    trigger_keys,
)
from tests.core.helpers import T0, TF, feed, make_features, series

CFG = TriggerConfig()
TS = T0  # open time of the latest closed candle
NOW = TS + TF  # the moment it closed
SYM = "X/USDT"


def tf(
    *,
    close: float = 100.0,
    open: float | None = None,
    volume: float = 100.0,
    symbol: str = SYM,
    ts: int = TS,
    **values: float | None,
) -> SymbolFeatures:
    """Features for the default TriggerConfig that fire nothing unless overridden."""
    base: dict[str, float | None] = {
        "med:20": close,
        "vavg:20": 100.0,
        "hh:20": close * 1.1,
        "roc:12": 0.0,
        "rsi:14": 50.0,
    }
    base.update({k.replace("_", ":"): v for k, v in values.items()})
    return make_features(symbol, ts=ts, close=close, open=open, volume=volume, values=base)


def run(*fs: SymbolFeatures, cfg: TriggerConfig = CFG, now_ms: int = NOW) -> TriggerScan:
    return scan(
        [f.symbol for f in fs], {f.symbol: f for f in fs}, cfg, now_ms=now_ms, timeframe_ms=TF
    )


def kinds(res: TriggerScan) -> list[str]:
    return [t.kind for t in res.triggers]


def strength(res: TriggerScan, kind: str) -> float:
    (t,) = [t for t in res.triggers if t.kind == kind]
    return t.strength


def test_quiet_features_fire_nothing() -> None:
    res = run(tf())
    assert res == TriggerScan((), (), ())


# --------------------------------------------------------------------------- breakout


def test_breakout_fires_at_the_volume_threshold() -> None:
    res = run(tf(close=100.01, hh_20=100.0, volume=150.0))  # 1.5 x the average
    assert kinds(res) == [BREAKOUT]
    t = res.triggers[0]
    assert t.strength == 0.5 and t.symbol == SYM and t.ts == TS


def test_breakout_needs_a_close_above_the_prior_high() -> None:
    assert kinds(run(tf(close=100.0, hh_20=100.0, volume=150.0))) == []


def test_breakout_needs_volume() -> None:
    assert kinds(run(tf(close=100.01, hh_20=100.0, volume=149.99))) == []


def test_breakout_strength_grows_with_volume_and_caps_at_one() -> None:
    assert strength(run(tf(close=101, hh_20=100, volume=225.0)), BREAKOUT) == 0.75
    assert strength(run(tf(close=101, hh_20=100, volume=300.0)), BREAKOUT) == 1.0
    assert strength(run(tf(close=101, hh_20=100, volume=299.0)), BREAKOUT) < 1.0


def test_breakout_without_volume_history_does_not_fire() -> None:
    assert kinds(run(tf(close=101, hh_20=100, volume=1e9, vavg_20=0.0))) == []


# --------------------------------------------------------------------------- momentum


def test_momentum_fires_at_the_threshold() -> None:
    cfg = TriggerConfig(momentum=MomentumTrigger(min_return_pct=1.5))
    res = run(tf(roc_12=1.5 / 100.0), cfg=cfg)
    assert kinds(res) == [MOMENTUM] and strength(res, MOMENTUM) == 0.5


def test_momentum_just_below_the_threshold() -> None:
    assert kinds(run(tf(roc_12=0.01499))) == []


def test_momentum_strength() -> None:
    assert strength(run(tf(roc_12=0.0225)), MOMENTUM) == pytest.approx(0.75)
    assert strength(run(tf(roc_12=0.5)), MOMENTUM) == 1.0


def test_momentum_exactly_at_a_binary_exact_threshold() -> None:
    cfg = TriggerConfig(
        momentum=MomentumTrigger(min_return_pct=25), outlier=OutlierGuard(max_deviation_pct=50)
    )
    fs = feed(series([64] * 25 + [80]), trigger_keys(cfg), symbol=SYM).get(SYM)
    assert fs is not None and fs.values["roc:12"] == 0.25
    assert MOMENTUM in kinds(run(fs, cfg=cfg, now_ms=fs.ts + TF))


def test_momentum_fires_on_an_exact_one_and_a_half_percent_move() -> None:
    fs = feed(series([100] * 25 + [101.5]), trigger_keys(CFG), symbol=SYM).get(SYM)
    assert fs is not None
    assert MOMENTUM in kinds(run(fs, now_ms=fs.ts + TF))


# --------------------------------------------------------------------------- volume spike


def test_volume_spike_fires_at_the_threshold_on_an_up_bar() -> None:
    res = run(tf(close=100.5, open=100.0, med_20=100.0, volume=300.0))
    assert VOLUME_SPIKE in kinds(res) and strength(res, VOLUME_SPIKE) == 0.5


def test_volume_spike_just_below_the_threshold() -> None:
    assert VOLUME_SPIKE not in kinds(run(tf(close=100.5, open=100.0, volume=299.99)))


@pytest.mark.parametrize("open_", [100.5, 101.0], ids=["flat bar", "down bar"])
def test_volume_spike_needs_an_up_bar(open_: float) -> None:
    assert kinds(run(tf(close=100.5, open=open_, volume=1000.0))) == []


def test_volume_spike_strength() -> None:
    assert strength(run(tf(close=100.5, open=100.0, volume=450.0)), VOLUME_SPIKE) == 0.75
    assert strength(run(tf(close=100.5, open=100.0, volume=6000.0)), VOLUME_SPIKE) == 1.0


# --------------------------------------------------------------------------- rsi reversion


def test_rsi_fires_at_the_oversold_level() -> None:
    res = run(tf(rsi_14=30.0))
    assert kinds(res) == [RSI_REVERSION] and strength(res, RSI_REVERSION) == 0.5


def test_rsi_just_above_the_oversold_level() -> None:
    assert kinds(run(tf(rsi_14=30.01))) == []


@pytest.mark.parametrize(("rsi", "expected"), [(22.5, 0.75), (15.0, 1.0), (0.0, 1.0)])
def test_rsi_strength(rsi: float, expected: float) -> None:
    assert strength(run(tf(rsi_14=rsi)), RSI_REVERSION) == pytest.approx(expected)


def test_rsi_from_a_real_falling_series() -> None:
    closes = [100 - 0.1 * i for i in range(30)]
    fs = feed(series(closes), trigger_keys(CFG), symbol=SYM).get(SYM)
    assert fs is not None and fs.values["rsi:14"] == 0.0
    assert RSI_REVERSION in kinds(run(fs, now_ms=fs.ts + TF))


# --------------------------------------------------------------------------- strengths


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    close=st.floats(1.0, 1e6),
    up=st.floats(0.0, 0.05),
    volume=st.floats(0.0, 1e9),
    vavg=st.floats(1e-6, 1e9),
    hh_below=st.floats(0.0, 0.5),
    roc=st.floats(-0.9, 10.0),
    rsi=st.floats(0.0, 100.0),
)
def test_every_strength_is_between_a_half_and_one(
    close: float, up: float, volume: float, vavg: float, hh_below: float, roc: float, rsi: float
) -> None:
    f = tf(
        close=close,
        open=close / (1.0 + up),
        volume=volume,
        vavg_20=vavg,
        hh_20=close * (1.0 - hh_below),
        roc_12=roc,
        rsi_14=rsi,
    )
    for t in run(f).triggers:
        assert 0.5 <= t.strength <= 1.0, t


# --------------------------------------------------------------------------- stale candles


def test_a_candle_exactly_stale_after_candles_old_is_accepted() -> None:
    now = NOW + CFG.stale_after_candles * TF
    assert kinds(run(tf(rsi_14=10.0), now_ms=now)) == [RSI_REVERSION]


def test_a_candle_one_ms_older_is_stale() -> None:
    now = NOW + CFG.stale_after_candles * TF + 1
    res = run(tf(rsi_14=10.0), now_ms=now)
    assert res.triggers == () and res.red_flags == ()
    (rej,) = res.rejected
    assert (rej.symbol, rej.reason) == (SYM, TriggerReject.STALE_CANDLE)
    assert rej.detail == "600s old"


def test_stale_after_candles_is_configurable() -> None:
    cfg = TriggerConfig(stale_after_candles=5)
    assert run(tf(rsi_14=10.0), cfg=cfg, now_ms=NOW + 5 * TF).rejected == ()
    assert run(tf(rsi_14=10.0), cfg=cfg, now_ms=NOW + 5 * TF + 1).rejected != ()


# --------------------------------------------------------------------------- outlier guard


def test_an_outlier_without_volume_is_rejected_and_red_flagged() -> None:
    # A breakout that would fire, were the price believable.
    f = tf(close=150.0, med_20=100.0, hh_20=110.0, volume=150.0)
    res = run(f)
    assert res.triggers == ()
    (rej,) = res.rejected
    assert (rej.symbol, rej.reason) == (SYM, TriggerReject.OUTLIER_PRICE)
    assert res.red_flags == (SYM,)


def test_a_downward_outlier_is_rejected_too() -> None:
    res = run(tf(close=50.0, med_20=100.0, rsi_14=5.0))
    assert res.triggers == () and res.red_flags == (SYM,)


def test_an_outlier_with_volume_confirmation_passes() -> None:
    f = tf(close=150.0, med_20=100.0, hh_20=110.0, volume=200.0)  # 2 x average volume
    res = run(f)
    assert res.rejected == () and res.red_flags == ()
    assert BREAKOUT in kinds(res)


def test_volume_just_short_of_confirmation_is_rejected() -> None:
    res = run(tf(close=150.0, med_20=100.0, volume=199.99))
    assert res.red_flags == (SYM,)


@pytest.mark.parametrize("vavg", [None, 0.0])
def test_an_outlier_without_volume_history_is_rejected(vavg: float | None) -> None:
    res = run(tf(close=150.0, med_20=100.0, volume=1e9, vavg_20=vavg))
    assert res.red_flags == (SYM,)


def test_deviation_exactly_at_the_limit_is_accepted() -> None:
    cfg = TriggerConfig(outlier=OutlierGuard(max_deviation_pct=6.25))
    assert run(tf(close=68.0, med_20=64.0, volume=0.0), cfg=cfg).rejected == ()
    assert run(tf(close=60.0, med_20=64.0, volume=0.0), cfg=cfg).rejected == ()
    assert run(tf(close=68.01, med_20=64.0, volume=0.0), cfg=cfg).red_flags == (SYM,)


def test_a_move_of_exactly_the_default_deviation_is_accepted() -> None:
    assert run(tf(close=108.0, med_20=100.0, volume=0.0)).rejected == ()


def test_a_spike_on_zero_volume_after_a_quiet_spell_is_an_outlier() -> None:
    vols = [42.22, 2.024, 24.3, 48.39, 29.2, 25.23, 7.0, 30.92, 49.363, 49.139]
    vols += [45.11, 4.9, 44.942, 16.51, 5.04, 15.81, 45.651, 23.85, 13.025, 45.8]
    bank = FeatureBank(trigger_keys(CFG))
    candles = series([100.0] * 41, volumes=[*vols, *[0] * 21])
    feed(candles, (), symbol=SYM, bank=bank)
    f = bank.push(SYM, candles[-1].ts + TF, 100.0, 150.0, 100.0, 150.0, 0.0)
    res = run(f, now_ms=f.ts + TF)
    assert res.red_flags == (SYM,)


# --------------------------------------------------------------------------- warming, order


def test_warming_up_until_the_median_exists() -> None:
    res = run(tf(med_20=None, rsi_14=10.0))
    assert res.triggers == ()
    assert [(e.symbol, e.reason) for e in res.rejected] == [(SYM, TriggerReject.WARMING_UP)]


def test_other_cold_indicators_just_do_not_fire() -> None:
    res = run(tf(hh_20=None, roc_12=None, rsi_14=None, close=101, open=100, volume=1000.0))
    assert kinds(res) == [VOLUME_SPIKE] and res.rejected == ()


def test_symbols_without_features_are_skipped() -> None:
    res = scan(["NOPE/USDT"], {}, CFG, now_ms=NOW, timeframe_ms=TF)
    assert res == TriggerScan((), (), ())


def test_a_real_feature_bank_warms_up_then_scans() -> None:
    bank = FeatureBank(trigger_keys(CFG))
    candles = series([100.0] * 20)
    feed(candles, (), symbol=SYM, bank=bank)
    f = bank.get(SYM)
    assert f is not None
    assert run(f, now_ms=f.ts + TF).rejected[0].reason == TriggerReject.WARMING_UP
    f = bank.push(SYM, candles[-1].ts + TF, 100.0, 103.0, 100.0, 103.0, 10.0)
    res = run(f, now_ms=f.ts + TF)
    assert res.rejected == ()
    assert set(kinds(res)) == {BREAKOUT, VOLUME_SPIKE, MOMENTUM}


def test_order_follows_symbols_then_a_fixed_kind_order() -> None:
    loud = {"close": 101.0, "open": 100.0, "hh_20": 100.0, "volume": 1000.0}
    a = tf(symbol="A/USDT", roc_12=0.5, rsi_14=10.0, med_20=100.0, **loud)
    b = tf(symbol="B/USDT", roc_12=0.5, med_20=100.0, **loud)
    res = scan(["B/USDT", "A/USDT"], {"A/USDT": a, "B/USDT": b}, CFG, now_ms=NOW, timeframe_ms=TF)
    assert [(t.symbol, t.kind) for t in res.triggers] == [
        ("B/USDT", BREAKOUT),
        ("B/USDT", MOMENTUM),
        ("B/USDT", VOLUME_SPIKE),
        ("A/USDT", BREAKOUT),
        ("A/USDT", MOMENTUM),
        ("A/USDT", VOLUME_SPIKE),
        ("A/USDT", RSI_REVERSION),
    ]


# --------------------------------------------------------------------------- disabled scans

LOUD = {
    "close": 101.0,
    "open": 100.0,
    "hh_20": 100.0,
    "med_20": 100.0,
    "volume": 1000.0,
    "roc_12": 0.5,
    "rsi_14": 10.0,
}


@pytest.mark.parametrize(
    ("field", "model", "kind"),
    [
        ("breakout", BreakoutTrigger, BREAKOUT),
        ("momentum", MomentumTrigger, MOMENTUM),
        ("volume_spike", VolumeSpikeTrigger, VOLUME_SPIKE),
        ("rsi_reversion", RsiReversionTrigger, RSI_REVERSION),
    ],
)
def test_a_disabled_trigger_does_not_fire(field: str, model: Any, kind: str) -> None:
    assert kind in kinds(run(tf(**LOUD)))  # type: ignore[arg-type]
    cfg = TriggerConfig(**{field: model(enabled=False)})
    got = kinds(run(tf(**LOUD), cfg=cfg))  # type: ignore[arg-type]
    assert kind not in got and len(got) == 3


def test_all_disabled_still_guards_against_outliers() -> None:
    off = {
        "breakout": BreakoutTrigger(enabled=False),
        "momentum": MomentumTrigger(enabled=False),
        "volume_spike": VolumeSpikeTrigger(enabled=False),
        "rsi_reversion": RsiReversionTrigger(enabled=False),
    }
    cfg = TriggerConfig(**off)
    assert run(tf(**LOUD), cfg=cfg).triggers == ()  # type: ignore[arg-type]
    assert run(tf(close=150.0, med_20=100.0, volume=1.0), cfg=cfg).red_flags == (SYM,)
    assert trigger_keys(cfg) == {"med:20", "vavg:20"}


# --------------------------------------------------------------------------- trigger_keys


class Recording(Mapping[str, float | None]):
    """Feature values that remember which keys were read."""

    def __init__(self, data: dict[str, float | None]) -> None:
        self.data = data
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> float | None:
        self.read.add(key)
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize(
    "cfg",
    [
        CFG,
        TriggerConfig(
            breakout=BreakoutTrigger(lookback=7, volume_lookback=9),
            momentum=MomentumTrigger(lookback=3),
            volume_spike=VolumeSpikeTrigger(lookback=11),
            rsi_reversion=RsiReversionTrigger(period=5),
            outlier=OutlierGuard(median_lookback=13),
        ),
        TriggerConfig(
            momentum=MomentumTrigger(enabled=False), breakout=BreakoutTrigger(enabled=False)
        ),
    ],
    ids=["defaults", "custom lookbacks", "some disabled"],
)
def test_trigger_keys_cover_what_scan_reads(cfg: TriggerConfig) -> None:
    keys = trigger_keys(cfg)
    wide = {k: 1.0 for k in keys} | {
        f"{k}:{n}": 1.0 for k in ("hh", "vavg", "med", "roc", "rsi") for n in range(1, 30)
    }
    for f_kw in (
        {"close": 101.0, "open": 100.0, "volume": 1e6},
        {"close": 150.0, "open": 150.0, "volume": 0.0},
    ):
        values = Recording(dict(wide))
        f = make_features(SYM, ts=TS, values={})._replace(values=values, **f_kw)
        run(f, cfg=cfg)
        assert values.read, "scan read nothing"
        assert values.read <= keys, values.read - keys


def test_a_bank_built_from_trigger_keys_is_enough_for_scan() -> None:
    bank = FeatureBank(trigger_keys(CFG))
    candles = series([100.0 - 0.1 * i for i in range(40)])
    feed(candles, (), symbol=SYM, bank=bank)
    f = bank.get(SYM)
    assert f is not None and all(v is not None for v in f.values.values())
    assert RSI_REVERSION in kinds(run(f, now_ms=f.ts + TF))
