"""FeatureBank: each indicator against a naive reference, warm-up bars, bad ticks, history."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.features import BadTick, FeatureBank, SymbolFeatures, parse_key
from tests.core.helpers import T0, TF, candle, feed, series

Bar = tuple[float, float, float, float, float]  # o, h, l, c, v

# --------------------------------------------------------------------------- naive references


def ref_ema(closes: list[float], n: int) -> float | None:
    if len(closes) < n:
        return None
    e = sum(closes[:n]) / n
    a = 2.0 / (n + 1)
    for c in closes[n:]:
        e = e + a * (c - e)
    return e


def ref_atr(bars: list[Bar], n: int) -> float | None:
    if len(bars) < n:
        return None
    trs = []
    for i, (_, h, lo, _, _) in enumerate(bars):
        if i == 0:
            trs.append(h - lo)
        else:
            pc = bars[i - 1][3]
            trs.append(max(h - lo, abs(h - pc), abs(lo - pc)))
    atr = sum(trs[:n]) / n
    for tr in trs[n:]:
        atr = (atr * (n - 1) + tr) / n
    return atr


def ref_rsi(closes: list[float], n: int) -> float | None:
    changes = [b - a for a, b in itertools.pairwise(closes)]
    if len(changes) < n:
        return None
    gains = [max(c, 0.0) for c in changes]
    losses = [max(-c, 0.0) for c in changes]
    g = sum(gains[:n]) / n
    lo = sum(losses[:n]) / n
    for gi, li in zip(gains[n:], losses[n:], strict=True):
        g = (g * (n - 1) + gi) / n
        lo = (lo * (n - 1) + li) / n
    if lo == 0.0:
        return 100.0 if g > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + g / lo)


def ref_value(key: str, bars: list[Bar]) -> float | None:
    """The indicator `key` after the last of `bars`, recomputed from scratch."""
    kind, n = parse_key(key)
    closes = [b[3] for b in bars]
    prior = bars[-n - 1 : -1] if len(bars) > n else None  # the n bars before the current one
    if kind == "ema":
        return ref_ema(closes, n)
    if kind == "atr":
        return ref_atr(bars, n)
    if kind == "rsi":
        return ref_rsi(closes, n)
    if kind == "hh":
        return max(b[1] for b in prior) if prior else None
    if kind == "ll":
        return min(b[2] for b in prior) if prior else None
    if kind == "vavg":
        return sum(b[4] for b in prior) / n if prior else None
    if kind == "med":
        return statistics.median(b[3] for b in prior) if prior else None
    if kind == "roc":
        return closes[-1] / closes[-n - 1] - 1.0 if len(closes) > n else None
    if kind == "peak":
        return max(closes[-n:]) if len(closes) >= n else None
    if kind == "qvol":
        return math.fsum(b[3] * b[4] for b in bars[-n:]) if len(bars) >= n else None
    raise AssertionError(key)


def random_bars(rng: random.Random, n: int, *, vol: float = 0.02) -> list[Bar]:
    """A geometric random walk with wicks and occasional zero-volume bars."""
    out: list[Bar] = []
    price = 100.0
    for _ in range(n):
        o = price
        c = max(1e-6, o * math.exp(rng.gauss(0.0, vol)))
        h = max(o, c) * (1.0 + abs(rng.gauss(0.0, vol / 2)))
        lo = min(o, c) * (1.0 - min(0.5, abs(rng.gauss(0.0, vol / 2))))
        v = 0.0 if rng.random() < 0.05 else rng.lognormvariate(3.0, 1.0)
        out.append((o, h, lo, c, v))
        price = c
    return out


def push_all(bank: FeatureBank, bars: list[Bar], symbol: str = "S") -> list[SymbolFeatures]:
    return [bank.push(symbol, T0 + i * TF, *b) for i, b in enumerate(bars)]


def close_to(a: float | None, b: float | None, scale: float = 1.0) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12 * scale)


def scale_for(key: str, bars: list[Bar]) -> float:
    """Rolling volume sums may cancel: allow rounding relative to the largest term seen."""
    kind, n = parse_key(key)
    if kind == "vavg":
        return max(b[4] for b in bars)
    if kind == "qvol":
        return max(b[3] * b[4] for b in bars) * n
    return 1.0


ALL_KINDS = ("ema", "atr", "rsi", "hh", "ll", "vavg", "med", "roc", "peak", "qvol")


# --------------------------------------------------------------------------- reference values


@pytest.mark.parametrize(
    "key",
    [f"{k}:{n}" for k in ALL_KINDS for n in (1, 2, 5)] + ["med:4", "med:6", "med:7", "rsi:14"],
)
def test_every_bar_matches_the_naive_reference(key: str) -> None:
    bars = random_bars(random.Random(key), 120)
    bank = FeatureBank([key])
    for i, f in enumerate(push_all(bank, bars)):
        expected = ref_value(key, bars[: i + 1])
        got = f.values[key]
        assert close_to(got, expected, scale_for(key, bars)), (key, i, got, expected)


def test_median_of_odd_and_even_windows() -> None:
    closes = [5, 1, 4, 2, 3, 100]  # the last bar is the current one, outside the window
    bank = feed(series(closes), ["med:5", "med:4"])
    f = bank.get("BTC/USDT")
    assert f is not None
    assert f.values["med:5"] == 3.0  # 1 2 3 4 5
    assert f.values["med:4"] == 2.5  # 1 2 3 4 -> (2 + 3) / 2


def test_highest_high_and_lowest_low_exclude_the_current_bar() -> None:
    bank = FeatureBank(["hh:3", "ll:3"])
    for i, (h, lo) in enumerate([(10, 9), (12, 8), (11, 7)]):
        bank.push("S", T0 + i * TF, lo, h, lo, lo, 1)
    f = bank.push("S", T0 + 3 * TF, 20, 50, 1, 20, 1)  # a huge bar: not in its own window
    assert f.values["hh:3"] == 12.0
    assert f.values["ll:3"] == 7.0


def test_peak_includes_the_current_close() -> None:
    bank = feed(series([100, 105, 103, 110]), ["peak:3"])
    f = bank.get("BTC/USDT")
    assert f is not None and f.values["peak:3"] == 110.0


def test_volume_average_is_of_the_prior_bars() -> None:
    bank = feed(series([1, 1, 1, 1], volumes=[10, 20, 30, 1000]), ["vavg:3"])
    f = bank.get("BTC/USDT")
    assert f is not None and f.values["vavg:3"] == 20.0


def test_rate_of_change_compares_with_n_bars_ago() -> None:
    bank = feed(series([100, 50, 70, 125]), ["roc:3"])
    f = bank.get("BTC/USDT")
    assert f is not None and f.values["roc:3"] == 0.25


def test_quote_volume_is_close_times_volume_summed() -> None:
    bank = feed(series([10, 20, 30], volumes=[1, 2, 3]), ["qvol:2"])
    f = bank.get("BTC/USDT")
    assert f is not None and f.values["qvol:2"] == 40.0 + 90.0


@pytest.mark.parametrize(
    ("closes", "expected"),
    [([1, 2, 3, 4, 5, 6], 100.0), ([6, 5, 4, 3, 2, 1], 0.0), ([7] * 6, 50.0)],
    ids=["all-up", "all-down", "flat"],
)
def test_rsi_extremes(closes: list[int], expected: float) -> None:
    bank = feed(series(closes), ["rsi:3"])
    f = bank.get("BTC/USDT")
    assert f is not None and f.values["rsi:3"] == expected


def test_ema_is_seeded_with_the_simple_mean() -> None:
    bank = FeatureBank(["ema:3"])
    vals = [
        bank.push("S", T0 + i * TF, c, c, c, c, 1).values["ema:3"]
        for i, c in enumerate([3.0, 6.0, 9.0, 13.0])
    ]
    assert vals[:3] == [None, None, 6.0]
    assert vals[3] == 6.0 + 0.5 * (13.0 - 6.0)


def test_atr_first_true_range_is_high_minus_low() -> None:
    bank = FeatureBank(["atr:2"])
    bank.push("S", T0, 10, 11, 9, 10, 1)  # TR 2 (no previous close)
    f = bank.push("S", T0 + TF, 14, 15, 14, 15, 1)  # gap up: TR = 15 - 10 = 5
    assert f.values["atr:2"] == 3.5
    f = bank.push("S", T0 + 2 * TF, 15, 15, 15, 15, 1)  # TR 0 -> Wilder (3.5 * 1 + 0) / 2
    assert f.values["atr:2"] == 1.75


# --------------------------------------------------------------------------- warm-up


# key -> the 1-based bar at which its value first exists
WARM_AT = {
    "ema:5": 5,
    "atr:5": 5,
    "rsi:5": 6,  # five changes need six closes
    "hh:5": 6,  # five bars before the current one
    "ll:5": 6,
    "vavg:5": 6,
    "med:5": 6,
    "roc:5": 6,
    "peak:5": 5,
    "qvol:5": 5,
    "ema:1": 1,
    "peak:1": 1,
    "roc:1": 2,
    "hh:1": 2,
}


@pytest.mark.parametrize(("key", "bar"), sorted(WARM_AT.items()))
def test_value_is_none_until_the_exact_warm_bar(key: str, bar: int) -> None:
    bank = FeatureBank([key])
    feats = push_all(bank, random_bars(random.Random(1), bar + 3))
    assert all(f.values[key] is None for f in feats[: bar - 1])
    assert all(f.values[key] is not None for f in feats[bar - 1 :])


def test_warmup_bars_covers_every_key() -> None:
    keys = ["ema:50", "rsi:14", "hh:20", "qvol:288"]
    bank = FeatureBank(keys)
    assert bank.warmup_bars() == 289
    feats = push_all(bank, random_bars(random.Random(2), bank.warmup_bars()))
    assert all(v is not None for v in feats[-1].values.values())
    assert FeatureBank([]).warmup_bars() == 0


def test_bars_counts_accepted_candles() -> None:
    bank = FeatureBank(["ema:2"])
    feats = push_all(bank, random_bars(random.Random(3), 4))
    assert [f.bars for f in feats] == [1, 2, 3, 4]


@pytest.mark.parametrize("key", ["ema", "ema:0", "ema:x", "foo:3", ":3", "ema:-1"])
def test_bad_feature_key_is_refused_by_name(key: str) -> None:
    with pytest.raises(ValueError, match="bad feature key"):
        FeatureBank([key])


def test_keys_are_deduplicated_and_sorted() -> None:
    assert FeatureBank(["rsi:3", "ema:2", "rsi:3"]).keys == ("ema:2", "rsi:3")


# --------------------------------------------------------------------------- bad ticks

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("bar", "reason"),
    [
        ((NAN, 11, 9, 10, 1), "BAD_PRICE"),
        ((10, NAN, 9, 10, 1), "BAD_PRICE"),
        ((10, 11, NAN, 10, 1), "BAD_PRICE"),
        ((10, 11, 9, NAN, 1), "BAD_PRICE"),
        ((10, INF, 9, 10, 1), "BAD_PRICE"),
        ((10, 11, -INF, 10, 1), "BAD_PRICE"),
        ((10, 11, 0, 10, 1), "BAD_PRICE"),
        ((-1, -1, -2, -1, 1), "BAD_PRICE"),
        ((0, 0, 0, 0, 1), "BAD_PRICE"),
        ((10, 9, 11, 10, 1), "BAD_PRICE"),  # high < low
        ((12, 11, 9, 10, 1), "BAD_PRICE"),  # open above high
        ((8, 11, 9, 10, 1), "BAD_PRICE"),  # open below low
        ((10, 11, 9, 12, 1), "BAD_PRICE"),  # close above high
        ((10, 11, 9, 8, 1), "BAD_PRICE"),  # close below low
        ((10, 11, 9, 10, -1), "BAD_VOLUME"),
        ((10, 11, 9, 10, NAN), "BAD_VOLUME"),
        ((10, 11, 9, 10, INF), "BAD_VOLUME"),
    ],
)
def test_bad_tick_reasons(bar: Bar, reason: str) -> None:
    bank = FeatureBank(["ema:2"])
    bank.push("S", T0, 10, 11, 9, 10, 1)
    with pytest.raises(BadTick) as exc:
        bank.push("S", T0 + TF, *bar)
    assert exc.value.reason == reason
    assert exc.value.symbol == "S" and exc.value.ts == T0 + TF
    assert reason in str(exc.value)


def test_duplicate_and_out_of_order_candles() -> None:
    bank = FeatureBank(["ema:2"])
    bank.push("S", T0 + TF, 10, 11, 9, 10, 1)
    with pytest.raises(BadTick) as dup:
        bank.push("S", T0 + TF, 10, 11, 9, 10, 1)
    assert dup.value.reason == "DUPLICATE_CANDLE"
    with pytest.raises(BadTick) as old:
        bank.push("S", T0, 10, 11, 9, 10, 1)
    assert old.value.reason == "OUT_OF_ORDER_CANDLE"


def test_zero_volume_is_a_valid_candle() -> None:
    bank = FeatureBank(["vavg:2"])
    assert bank.push("S", T0, 10, 10, 10, 10, 0).volume == 0.0


def test_a_rejected_candle_changes_nothing() -> None:
    keys = [f"{k}:3" for k in ALL_KINDS]
    bars = random_bars(random.Random(4), 40)
    clean = FeatureBank(keys)
    dirty = FeatureBank(keys)
    push_all(clean, bars, symbol="S")
    bad: list[Bar] = [(NAN, 1, 1, 1, 1), (1, 2, 3, 1, 1), (1, 1, 1, 1, -5), (5, 1, 1, 1, 1)]
    for i, b in enumerate(bars):
        ts = T0 + i * TF
        before = dirty.get("S")
        for junk in bad:
            with pytest.raises(BadTick):
                dirty.push("S", ts, *junk)
            assert dirty.get("S") is before
        dirty.push("S", ts, *b)
        with pytest.raises(BadTick):
            dirty.push("S", ts, *b)  # the same candle again
        with pytest.raises(BadTick):
            dirty.push("S", ts - TF, *b)
    a, b_ = clean.get("S"), dirty.get("S")
    assert a is not None and b_ is not None
    assert a.values == b_.values and a.prev == b_.prev and a.bars == b_.bars == 40
    assert clean.recent_candles("S", 10) == dirty.recent_candles("S", 10)
    assert dirty.last_ts("S") == T0 + 39 * TF


def test_a_bad_first_candle_leaves_no_trace() -> None:
    bank = FeatureBank(["ema:2"])
    with pytest.raises(BadTick):
        bank.push("S", T0, NAN, 1, 1, 1, 1)
    assert bank.get("S") is None
    assert bank.latest() == {}
    assert bank.last_ts("S") == -1
    assert bank.recent_candles("S", 5) == ()


# --------------------------------------------------------------------------- prev, history


def test_prev_holds_the_previous_values() -> None:
    bank = FeatureBank(["ema:2", "roc:1"])
    feats = push_all(bank, random_bars(random.Random(5), 6))
    assert feats[0].prev == {}
    for before, now in itertools.pairwise(feats):
        assert now.prev == before.values


def test_handed_out_features_never_change() -> None:
    bank = FeatureBank(["ema:2"])
    feats = push_all(bank, random_bars(random.Random(6), 5))
    snapshot = [dict(f.values) for f in feats]
    push_all(bank, random_bars(random.Random(7), 5), symbol="T/USDT")
    bank.push("S", T0 + 99 * TF, 1, 1, 1, 1, 1)
    assert [dict(f.values) for f in feats] == snapshot


def test_recent_candles_are_decimal_and_exact() -> None:
    bank = feed(series(["100.1", "100.2", "99.95"], volumes=["0.5", "1.25", "3"]), ["ema:2"])
    got = bank.recent_candles("BTC/USDT", 2)
    assert [c.ts for c in got] == [T0 + TF, T0 + 2 * TF]
    assert got[-1].close == Decimal("99.95") and got[-1].open == Decimal("100.2")
    assert got[-1].volume == Decimal("3.0")
    for c in got:
        for x in (c.open, c.high, c.low, c.close, c.volume):
            assert isinstance(x, Decimal)


def test_recent_candles_edges() -> None:
    bank = FeatureBank(["ema:2"], history=3)
    push_all(bank, random_bars(random.Random(8), 10))
    assert len(bank.recent_candles("S", 100)) == 3  # capped by history
    assert [c.ts for c in bank.recent_candles("S", 3)] == [T0 + i * TF for i in (7, 8, 9)]
    assert bank.recent_candles("S", 0) == ()
    assert bank.recent_candles("S", -1) == ()
    assert bank.recent_candles("nope", 3) == ()


def test_push_candle_equals_push() -> None:
    a, b = FeatureBank(["ema:2", "atr:2"]), FeatureBank(["ema:2", "atr:2"])
    c = candle(T0, "10.5", open="10", high="11", low="9.5", volume="2")
    fa = a.push_candle("S", c)
    fb = b.push("S", T0, 10.0, 11.0, 9.5, 10.5, 2.0)
    assert fa == fb


def test_latest_is_a_copy_and_symbols_are_independent() -> None:
    bank = FeatureBank(["ema:1"])
    bank.push("A", T0, 1, 1, 1, 1, 1)
    bank.push("B", T0, 2, 2, 2, 2, 1)
    snap = bank.latest()
    snap.clear()
    assert set(bank.latest()) == {"A", "B"}
    assert bank.get("A") is not None and bank.get("A").close == 1.0  # type: ignore[union-attr]
    assert bank.last_ts("A") == T0 and bank.last_ts("C") == -1


# --------------------------------------------------------------------------- float drift


def test_volume_average_of_zero_volume_bars_is_never_negative() -> None:
    vols = [42.22, 2.024, 24.3, 48.39, 29.2, 25.23, 7.0, 30.92, 49.363, 49.139]
    vols += [45.11, 4.9, 44.942, 16.51, 5.04, 15.81, 45.651, 23.85, 13.025, 45.8]
    bank = feed(series([100] * 41, volumes=vols + [0] * 21), ["vavg:20"])
    f = bank.get("BTC/USDT")
    assert f is not None
    assert f.values["vavg:20"] is not None and f.values["vavg:20"] >= 0.0


# --------------------------------------------------------------------------- incremental == naive

CHECKPOINTS = (1, 2, 50, 777, 4095, 4096, 4097, 8192, 9_999, 10_000)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    seed=st.integers(0, 2**32 - 1),
    vol=st.sampled_from([0.001, 0.02, 0.1]),
    periods=st.lists(st.integers(1, 300), min_size=3, max_size=3),
)
def test_ten_thousand_candles_match_a_naive_recompute(
    seed: int, vol: float, periods: list[int]
) -> None:
    keys = sorted({f"{k}:{p}" for k in ALL_KINDS for p in periods})
    bars = random_bars(random.Random(seed), 10_000, vol=vol)
    bank = FeatureBank(keys)
    got: dict[int, SymbolFeatures] = {}
    for i, b in enumerate(bars, start=1):
        f = bank.push("S", T0 + i * TF, *b)
        if i in CHECKPOINTS:
            got[i] = f
    for i, f in got.items():
        for key in keys:
            expected = ref_value(key, bars[:i])
            scale = scale_for(key, bars)
            assert close_to(f.values[key], expected, scale), (key, i, f.values[key], expected)
