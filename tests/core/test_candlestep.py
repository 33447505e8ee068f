"""The compiled candle step (core/_candlestep.c) against the generated Python step.

The Python step is the reference; the compiled one must give bit-identical features and the
same BadTick, candle by candle, for every indicator kind.
"""

from __future__ import annotations

import math
import random
import shutil
import sysconfig

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import candlestep
from core.features import BadTick, FeatureBank

needs_c = pytest.mark.skipif(
    not candlestep.AVAILABLE, reason="the compiled candle step was not built (no C compiler)"
)


def test_it_is_built_wherever_a_compiler_is() -> None:
    """The build skips the extension quietly when it fails (so installs without a compiler
    work); with a compiler at hand a failure is a bug, and this says so."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): the Python candle step is used")
    assert candlestep.AVAILABLE, (
        f"{cc} is installed but core/_candlestep.c did not build: "
        "run `.venv/bin/pip install -v -e .` and read the compiler's error"
    )


ALL_KINDS = ("ema", "atr", "rsi", "hh", "ll", "peak", "vavg", "qvol", "med", "roc")


def _banks(keys: list[str]) -> tuple[FeatureBank, FeatureBank]:
    return FeatureBank(keys, history=0), FeatureBank(keys, history=0, compiled=False)


def _same(a: object, b: object) -> bool:
    """Bit-identical: floats compare by their bits (so -0.0 != 0.0), None by identity."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and (a == b)
    return a == b


def _walk(rows: list[tuple[int, float, float, float, float, float]], keys: list[str]) -> int:
    fast, slow = _banks(keys)
    pf, ps = fast.pusher("X/USDT"), slow.pusher("X/USDT")
    assert type(pf).__name__ == "Step"  # really the compiled one
    checked = 0
    for row in rows:
        try:
            want = ps(*row)
        except BadTick as exc:
            with pytest.raises(BadTick) as got:
                pf(*row)
            assert (got.value.reason, str(got.value)) == (exc.reason, str(exc))
            continue
        f = pf(*row)
        assert type(f) is type(want)
        assert f[:7] == want[:7] and f.bars == want.bars
        assert list(f.values) == list(want.values)
        for key in want.values:
            assert _same(f.values[key], want.values[key]), (key, row, f.values, want.values)
        assert f.prev == want.prev
        assert fast.get("X/USDT") == slow.get("X/USDT")
        checked += 1
    return checked


def _random_walk(seed: int, n: int, bad: float = 0.0) -> list[tuple[int, float, ...]]:
    rnd = random.Random(seed)
    c = 100.0
    rows = []
    ts = 0
    for _ in range(n):
        o = c
        c = max(1e-6, c * (1 + rnd.gauss(0, 0.01)))
        h, lo = max(o, c) * (1 + rnd.random() * 0.003), min(o, c) * (1 - rnd.random() * 0.003)
        v = rnd.choice([0.0, rnd.random() * 1000, rnd.random() * 1e-3, 12.5])
        ts += 300_000
        row = (ts, o, h, lo, c, v)
        r = rnd.random()
        if r < bad:
            row = rnd.choice(
                [
                    (ts - 300_000, o, h, lo, c, v),  # duplicate
                    (ts - 600_000, o, h, lo, c, v),  # out of order
                    (ts, o, lo * 0.5, lo, c, v),  # high below low
                    (ts, o, h, lo, c, -1.0),  # negative volume
                    (ts, o, h, lo, math.nan, v),
                    (ts, o, math.inf, lo, c, v),
                ]
            )
        rows.append(row)
    return rows


@needs_c
def test_every_kind_matches_over_a_long_walk_with_resums() -> None:
    keys = [f"{k}:{p}" for k in ALL_KINDS for p in (1, 2, 14, 20)]
    # Past 4096 bars twice: the rolling sums' exact re-sums run in both.
    assert _walk(_random_walk(1, 9000), keys) == 9000


@needs_c
def test_bad_ticks_are_refused_alike_and_change_nothing() -> None:
    keys = [f"{k}:5" for k in ALL_KINDS]
    assert _walk(_random_walk(2, 3000, bad=0.05), keys) > 2500


@needs_c
@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(ALL_KINDS), min_size=1, max_size=5, unique=True),
    period=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    flat=st.booleans(),
)
def test_any_config_matches(kinds: list[str], period: int, seed: int, flat: bool) -> None:
    rows = _random_walk(seed, 400, bad=0.02)
    if flat:  # equal prices: ties in the windows (median, highs) and zero ranges
        rows = [(r[0], 5.0, 5.0, 5.0, 5.0, r[5]) for r in rows]
    _walk(rows, [f"{k}:{period}" for k in kinds])


@needs_c
def test_the_real_pipeline_keys_on_real_candles() -> None:
    from pathlib import Path

    from infra.candle_files import load_candles

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance_spot_2024"
    if not data.is_dir():
        pytest.skip(f"{data} is absent: real candles not compared")
    s = load_candles(data, "SOL/USDT", "5m")[0]
    rows = list(
        zip(
            s.ts.tolist(),
            s.open.tolist(),
            s.high.tolist(),
            s.low.tolist(),
            s.close.tolist(),
            s.volume.tolist(),
            strict=True,
        )
    )
    keys = ["hh:20", "med:20", "qvol:288", "roc:12", "rsi:14", "vavg:20", "ema:50", "ema:200"]
    keys += ["atr:14", "peak:288", "ll:20", "ema:12", "ema:26"]
    assert _walk(rows, keys) == len(rows)


def test_the_python_step_is_used_when_asked() -> None:
    slow = FeatureBank(["ema:3"], history=0, compiled=False)
    assert slow.pusher("X/USDT").__name__ == "push"
