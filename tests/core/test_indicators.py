"""The indicator definitions and the fused step derived from them.

core.indicators defines each kind once; FeatureBank runs a step fused from those definitions
(core.candlestep). The fused step must give the very floats each definition's own `update`
gives (bit for bit, candle by candle), point tracebacks at the definition, and take a
strategy's own indicator the same way as the built-ins.
"""

from __future__ import annotations

import math
import traceback
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import candlestep
from core.features import BadTick, FeatureBank, indicator_kinds, parse_key
from core.indicators import BUILTIN, Indicator

ALL_KINDS = tuple(cls.kind for cls in BUILTIN)
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance_spot_2024"

Row = tuple[int, float, float, float, float, float]


def _same(a: object, b: object) -> bool:
    """Bit-identical: floats by their bits (so -0.0 != 0.0), None by identity."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    return a == b


def _compare(rows: list[Row], keys: list[str], kinds: tuple[type[Indicator], ...] = BUILTIN) -> int:
    fused = FeatureBank(keys, kinds=kinds, history=0)
    plain = FeatureBank(keys, kinds=kinds, history=0, fused=False)
    pf, pp = fused.pusher("X/USDT"), plain.pusher("X/USDT")
    checked = 0
    for row in rows:
        try:
            want = pp(*row)
        except BadTick as exc:
            with pytest.raises(BadTick) as got:
                pf(*row)
            assert (got.value.reason, str(got.value)) == (exc.reason, str(exc))
            continue
        got_f = pf(*row)
        assert got_f[:7] == want[:7] and got_f.bars == want.bars
        assert list(got_f.values) == list(want.values)
        for key, value in want.values.items():
            assert _same(got_f.values[key], value), (key, row, got_f.values, want.values)
        checked += 1
    return checked


def _bars(draw_prices: list[float], vols: list[float]) -> list[Row]:
    rows: list[Row] = []
    for i, (c, v) in enumerate(zip(draw_prices, vols, strict=False)):
        o = draw_prices[i - 1] if i else c
        rows.append((i * 300_000, o, max(o, c) * 1.001, min(o, c) * 0.999, c, v))
    return rows


@settings(max_examples=60, deadline=None)
@given(
    prices=st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=1, max_size=300),
    vols=st.lists(st.sampled_from([0.0, 1.0, 3.5, 1e-9, 2e7]), min_size=300, max_size=300),
    periods=st.lists(st.integers(1, 30), min_size=len(ALL_KINDS), max_size=len(ALL_KINDS)),
)
def test_the_fused_step_matches_the_definitions_bit_for_bit(
    prices: list[float], vols: list[float], periods: list[int]
) -> None:
    keys = [f"{k}:{p}" for k, p in zip(ALL_KINDS, periods, strict=True)]
    assert _compare(_bars(prices, vols), keys) == len(prices)


def test_every_kind_is_fused() -> None:
    """The built-ins must all splice: a built-in called as it is would be a silent slowdown."""
    bank = FeatureBank([f"{k}:7" for k in ALL_KINDS], history=0)
    assert bank.unfused == {}


def test_the_fused_step_matches_on_real_candles() -> None:
    from infra.candle_files import load_candles

    if not DATA.is_dir():
        pytest.skip(f"real candles not found at {DATA} (see /work/shared/data/README)")
    series, _ = load_candles(DATA, "ETH/USDT", "5m")
    n = 20_000  # past the rolling sums' exact re-sum at 4096 and its multiples
    cols = [
        series.ts[:n].tolist(),
        series.open[:n].tolist(),
        series.high[:n].tolist(),
        series.low[:n].tolist(),
        series.close[:n].tolist(),
        series.volume[:n].tolist(),
    ]
    rows: list[Row] = list(zip(*cols, strict=True))
    keys = [f"{k}:{p}" for k in ALL_KINDS for p in (3, 14, 288)]
    assert _compare(rows, keys) == n


# --------------------------------------------------------------------------- user indicators


class Range(Indicator):
    """High minus low of the current candle, doubled after N candles (a user-style kind)."""

    kind = "rng"
    __slots__ = ("seen",)

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.seen = 0

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        self.seen += 1
        if self.seen > self.period:
            return 2.0 * (h - lo)
        return h - lo


class Fragile(Indicator):
    kind = "fragile"
    __slots__ = ()

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        return 1.0 / (v - 5.0)  # the line a traceback must point at


class Helper(Indicator):
    """Calls a helper method: the splicer cannot inline that, so it is called as it is."""

    kind = "helper"
    __slots__ = ("last",)

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self.last: deque[float] = deque(maxlen=period)

    def _mean(self) -> float:
        return sum(self.last) / len(self.last)

    def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
        self.last.append(c)
        return self._mean()


ROWS: list[Row] = [
    (i * 300_000, 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, float(i)) for i in range(12)
]


def test_a_user_kind_sits_next_to_the_built_ins() -> None:
    kinds = (*BUILTIN, Range)
    assert _compare(ROWS, ["rng:3", "ema:3", "med:2"], kinds) == len(ROWS)
    bank = FeatureBank(["rng:3"], kinds=kinds, history=0)
    assert bank.unfused == {}
    got = [bank.push("A", *row).values["rng:3"] for row in ROWS]
    assert got == [2.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_a_kind_the_bank_was_not_given_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="bad feature key 'rng:3'"):
        FeatureBank(["rng:3"])
    assert parse_key("rng:3", indicator_kinds((*BUILTIN, Range))) == ("rng", 3)


def test_a_traceback_points_at_the_definition() -> None:
    bank = FeatureBank(["fragile:1", "ema:2"], kinds=(*BUILTIN, Fragile), history=0)
    push = bank.pusher("A")
    push(*ROWS[0])
    with pytest.raises(ZeroDivisionError) as err:
        for row in ROWS[1:]:
            push(*row)
    last = traceback.extract_tb(err.value.__traceback__)[-1]
    assert last.filename == __file__
    assert last.line is not None and "the line a traceback must point at" in last.line
    assert "<" not in last.filename


def test_a_definition_that_cannot_be_spliced_is_called_as_it_is() -> None:
    kinds = (*BUILTIN, Helper)
    bank = FeatureBank(["helper:3", "ema:2"], kinds=kinds, history=0)
    assert "self._mean is not instance state" in bank.unfused["helper"]
    assert _compare(ROWS, ["helper:3", "ema:2", "hh:2"], kinds) == len(ROWS)
    assert [bank.push("A", *r).values["helper:3"] for r in ROWS][
        -1
    ] == 20.5  # closes 19.5, 20.5, 21.5


def test_two_classes_with_one_kind_are_refused() -> None:
    class Ema2(Indicator):
        kind = "ema"

    with pytest.raises(ValueError, match="kind 'ema' is defined twice"):
        indicator_kinds((*BUILTIN, Ema2))
    with pytest.raises(ValueError, match="expected lowercase letters"):
        indicator_kinds((type("Bad", (Indicator,), {"kind": "Bad:1"}),))


def test_symbols_keep_their_own_state() -> None:
    bank = FeatureBank(["ema:3", "hh:2"], history=0)
    a = [bank.push("A", *row) for row in ROWS]
    b = FeatureBank(["ema:3", "hh:2"], history=0)
    for row in ROWS[:5]:
        bank.push("B", row[0], 1.0, 1.0, 1.0, 1.0, 1.0)
        b.push("B", row[0], 1.0, 1.0, 1.0, 1.0, 1.0)
    fresh = FeatureBank(["ema:3", "hh:2"], history=0)
    assert [fresh.push("A", *row) for row in ROWS] == a
    assert bank.get("B") == b.get("B")


def test_the_reference_switch_gives_the_plain_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """candlestep._candlestep = None (what tests/golden does) makes banks call each
    definition's update as it is."""
    monkeypatch.setattr(candlestep, "_candlestep", None)
    bank = FeatureBank(["ema:3"], history=0)
    plain = FeatureBank(["ema:3"], history=0, fused=False)
    assert [bank.push("A", *r).values for r in ROWS] == [plain.push("A", *r).values for r in ROWS]


def test_a_definition_edited_after_import_is_called_not_spliced(tmp_path: Path) -> None:
    """The splicer reads the source file; if it no longer matches the imported code, the
    running definition (not the edited text) must decide the values."""
    import importlib.util
    import os

    src = tmp_path / "user_ind.py"
    src.write_text(
        "from core.indicators import Indicator\n\n\n"
        "class Spread(Indicator):\n"
        '    kind = "spread"\n'
        "    __slots__ = ()\n\n"
        "    def update(self, o, h, lo, c, v):\n"
        "        return h - lo\n"
    )
    spec = importlib.util.spec_from_file_location("user_ind", src)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    kinds = (*BUILTIN, mod.Spread)
    assert FeatureBank(["spread:1"], kinds=kinds, history=0).unfused == {}
    src.write_text(src.read_text().replace("h - lo", "h + lo"))
    os.utime(src, (1, 1))  # a different mtime, so linecache re-reads it
    bank = FeatureBank(["spread:1"], kinds=kinds, history=0)
    assert "file edited since import" in bank.unfused["spread"]
    assert bank.push("A", *ROWS[0]).values["spread:1"] == 2.0  # h - lo, as imported
