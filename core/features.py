"""Incremental indicators: O(1) (amortised) work per new candle, floats only.

A feature key is `<kind>:<period>`:

| key      | meaning                                                               |
|----------|-----------------------------------------------------------------------|
| ema:N    | exponential moving average of closes (seeded with the first N's mean) |
| atr:N    | Wilder's average true range                                           |
| rsi:N    | Wilder's relative strength index, 0..100                              |
| hh:N     | highest high of the N bars *before* the current one                   |
| ll:N     | lowest low of the N bars before the current one                       |
| vavg:N   | mean volume of the N bars before the current one                      |
| med:N    | median close of the N bars before the current one                     |
| roc:N    | close / close N bars ago - 1                                          |
| peak:N   | highest close of the last N bars, current included                    |
| qvol:N   | sum of close x volume over the last N bars (quote volume)             |

A value is None until the indicator has seen enough bars. "Before the current one" matters:
a breakout compares this bar with the ones before it, never with itself.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from core.candlestep import compiled_pusher
from core.models import Candle


class SymbolFeatures(NamedTuple):
    symbol: str
    ts: int  # open time of the latest closed candle
    open: float
    high: float
    low: float
    close: float
    volume: float
    values: Mapping[str, float | None]
    prev: Mapping[str, float | None]  # values one candle earlier; empty on the first
    bars: int  # candles seen so far


class BadTick(ValueError):
    """A candle the bank refuses; `reason` is machine-readable."""

    def __init__(self, symbol: str, ts: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{symbol} @ {ts}: {reason} {detail}".strip())
        self.symbol = symbol
        self.ts = ts
        self.reason = reason
        self.detail = detail


# Each indicator kind is a template of state variables and update code. A bank fuses the
# templates of its keys into ONE generated function per symbol: state lives in closure cells,
# so a candle costs one call instead of one method call per indicator. This is the hot loop
# of every backtest; the generated code is plain arithmetic on floats, nothing else.
# Template fields: {i} unique suffix, {p} period. "prior" kinds read before the bar is added.
_TEMPLATES: dict[str, tuple[str, str]] = {
    "ema": (
        "e{i} = None; es{i} = 0.0; en{i} = 0; a{i} = 2.0 / ({p} + 1)",
        """
    if e{i} is not None:
        e{i} = e{i} + a{i} * (c - e{i})
    else:
        en{i} += 1
        es{i} += c
        if en{i} == {p}:
            e{i} = es{i} / {p}""",
    ),
    "atr": (
        "e{i} = None; ts{i} = 0.0; tn{i} = 0",
        """
    if e{i} is not None:
        e{i} = (e{i} * ({p} - 1) + tr) / {p}
    else:
        tn{i} += 1
        ts{i} += tr
        if tn{i} == {p}:
            e{i} = ts{i} / {p}""",
    ),
    "rsi": (
        "e{i} = None; rg{i} = 0.0; rl{i} = 0.0; rn{i} = 0",
        """
    if pc is not None:
        if rn{i} < {p}:
            rn{i} += 1
            rg{i} += gain
            rl{i} += loss
            if rn{i} == {p}:
                rg{i} /= {p}
                rl{i} /= {p}
                e{i} = _rsi(rg{i}, rl{i})
        else:
            rg{i} = (rg{i} * ({p} - 1) + gain) / {p}
            rl{i} = (rl{i} * ({p} - 1) + loss) / {p}
            if rl{i} == 0.0:  # _rsi, inlined: this branch runs every candle
                e{i} = 100.0 if rg{i} > 0 else 50.0
            else:
                e{i} = 100.0 - 100.0 / (1.0 + rg{i} / rl{i})""",
    ),
    "hh": (
        "e{i} = None; dq{i} = deque()",
        """
    e{i} = dq{i}[0][1] if bi >= {p} else None
    while dq{i} and dq{i}[-1][1] <= h:
        dq{i}.pop()
    dq{i}.append((bi, h))
    if dq{i}[0][0] <= bi - {p}:
        dq{i}.popleft()""",
    ),
    "ll": (
        "e{i} = None; dq{i} = deque()",
        """
    e{i} = dq{i}[0][1] if bi >= {p} else None
    while dq{i} and dq{i}[-1][1] >= lo:
        dq{i}.pop()
    dq{i}.append((bi, lo))
    if dq{i}[0][0] <= bi - {p}:
        dq{i}.popleft()""",
    ),
    "peak": (
        "e{i} = None; dq{i} = deque()",
        """
    while dq{i} and dq{i}[-1][1] <= c:
        dq{i}.pop()
    dq{i}.append((bi, c))
    if dq{i}[0][0] <= bi - {p}:
        dq{i}.popleft()
    e{i} = dq{i}[0][1] if bi + 1 >= {p} else None""",
    ),
    "vavg": (
        "e{i} = None; vb{i} = deque(maxlen={p}); vs{i} = 0.0",
        """
    if len(vb{i}) == {p}:
        e{i} = vs{i} / {p}
        if e{i} < 0.0:
            e{i} = 0.0
        vs{i} -= vb{i}[0]
    vb{i}.append(v)
    if resum:
        vs{i} = fsum(vb{i})
    else:
        vs{i} += v""",
    ),
    "qvol": (
        "e{i} = None; vb{i} = deque(maxlen={p}); vs{i} = 0.0",
        """
    if len(vb{i}) == {p}:
        vs{i} -= vb{i}[0]
    vb{i}.append(qv)
    if resum:
        vs{i} = fsum(vb{i})
    else:
        vs{i} += qv
    if len(vb{i}) == {p}:
        e{i} = vs{i} if vs{i} > 0.0 else 0.0""",
    ),
    "med": (
        "e{i} = None; vb{i} = deque(maxlen={p}); so{i} = []",
        """
    if len(vb{i}) == {p}:
        e{i} = so{i}[{mid}] if {odd} else (so{i}[{mid} - 1] + so{i}[{mid}]) / 2.0
        del so{i}[bisect_left(so{i}, vb{i}[0])]
    vb{i}.append(c)
    insort(so{i}, c)""",
    ),
    "roc": (
        "e{i} = None; vb{i} = deque(maxlen={p} + 1)",
        """
    vb{i}.append(c)
    if len(vb{i}) == {p} + 1:
        e{i} = c / vb{i}[0] - 1.0""",
    ),
}

# Rolling float sums drift; an exact re-sum every so many bars keeps them honest.
_RESUM_EVERY = 4096


def parse_key(key: str) -> tuple[str, int]:
    kind, _, period = key.partition(":")
    if kind not in _TEMPLATES or not period.isdigit() or int(period) < 1:
        raise ValueError(f"bad feature key {key!r}: expected one of {sorted(_TEMPLATES)} + ':N'")
    return kind, int(period)


def key_period(key: str) -> int:
    return parse_key(key)[1]


Pusher = Callable[[int, float, float, float, float, float], "SymbolFeatures"]


@lru_cache(maxsize=64)
def _pusher_source(keys: tuple[str, ...]) -> str:
    """Source of one symbol's whole candle step: checks, every indicator, the new features."""
    inits: list[str] = ["pc = None", "bi = 0", "last_ts = -1", "prev_vals = EMPTY"]
    body: list[str] = [
        "    if ts <= last_ts:",
        "        raise BadTick(symbol, ts, 'DUPLICATE_CANDLE' if ts == last_ts else",
        "                      'OUT_OF_ORDER_CANDLE', f'last seen {last_ts}')",
        # Chained comparisons are False for NaN and reject inf and zero too.
        "    if not (0.0 < lo <= h < inf and lo <= o <= h and lo <= c <= h):",
        "        raise BadTick(symbol, ts, 'BAD_PRICE', f'o={o} h={h} l={lo} c={c}')",
        "    if not (0.0 <= v < inf):",
        "        raise BadTick(symbol, ts, 'BAD_VOLUME', f'v={v}')",
    ]
    names: list[str] = ["pc", "bi", "last_ts", "prev_vals"]
    kinds = {parse_key(k)[0] for k in keys}
    if "atr" in kinds:
        body.append("    tr = h - lo if pc is None else max(h - lo, abs(h - pc), abs(lo - pc))")
    if "rsi" in kinds:
        body.append("    ch = c - pc if pc is not None else 0.0")
        body.append("    gain = ch if ch > 0 else 0.0")
        body.append("    loss = -ch if ch < 0 else 0.0")
    if "qvol" in kinds:
        body.append("    qv = c * v")
    if kinds & {"qvol", "vavg"}:
        body.append(f"    resum = (bi + 1) % {_RESUM_EVERY} == 0")
    values: list[str] = []
    for i, key in enumerate(keys):
        kind, p = parse_key(key)
        init, code = _TEMPLATES[kind]
        fmt = {"i": i, "p": p, "mid": p // 2, "odd": bool(p % 2)}
        init_line = init.format(**fmt)
        inits.append(init_line)
        names.extend(part.split("=")[0].strip() for part in init_line.split(";"))
        body.append(code.format(**fmt))
        values.append(f"{key!r}: e{i}")
    body += [
        "    pc = c",
        "    bi += 1",
        "    last_ts = ts",
        "    vals = {" + ", ".join(values) + "}",
        # tuple.__new__ directly: the NamedTuple constructor is a Python-level call.
        "    f = new_tuple(SymbolFeatures, (symbol, ts, o, h, lo, c, v, vals, prev_vals, bi))",
        "    prev_vals = vals",
        "    latest[symbol] = f",
        "    return f",
    ]
    mutable = [n for n in names if not n.startswith(("a", "dq", "vb", "so"))]
    lines = ["def make(symbol, latest):"]
    lines += [f"    {x}" for x in inits]
    lines.append("    def push(ts, o, h, lo, c, v):")
    lines.append("        nonlocal " + ", ".join(mutable))
    lines += ["    " + ln if ln else ln for ln in "\n".join(body).split("\n")]
    lines.append("    return push")
    return "\n".join(lines) + "\n"


def _rsi(gain: float, loss: float) -> float:
    if loss == 0.0:
        return 100.0 if gain > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + gain / loss)


def _make_pusher(
    keys: tuple[str, ...], symbol: str, latest: dict[str, SymbolFeatures], compiled: bool = True
) -> Pusher:
    if compiled:
        step = compiled_pusher(keys, symbol, latest, SymbolFeatures, _EMPTY)
        if step is not None:
            return step
    return _python_pusher(keys, symbol, latest)


def _python_pusher(keys: tuple[str, ...], symbol: str, latest: dict[str, SymbolFeatures]) -> Pusher:
    namespace: dict[str, object] = {
        "deque": deque,
        "fsum": math.fsum,
        "bisect_left": bisect_left,
        "insort": insort,
        "_rsi": _rsi,
        "inf": math.inf,
        "BadTick": BadTick,
        "SymbolFeatures": SymbolFeatures,
        "new_tuple": tuple.__new__,
        "EMPTY": _EMPTY,
    }
    exec(compile(_pusher_source(keys), "<feature-bank>", "exec"), namespace)
    factory = namespace["make"]
    pusher: Pusher = factory(symbol, latest)  # type: ignore[operator]
    return pusher


_EMPTY: Mapping[str, float | None] = {}


class FeatureBank:
    """Per-symbol incremental indicators. The daemon and the backtest feed it the same way.

    Not thread-safe and deliberately mutable: it is the one place that remembers candles.
    What it hands out (`SymbolFeatures`) is immutable by convention and never changed later.
    """

    def __init__(
        self,
        keys: Iterable[str],
        *,
        history: int = 64,
        extra: Mapping[str, Iterable[str]] | None = None,
        compiled: bool = True,
    ) -> None:
        """`keys` for every symbol; `extra` adds keys for some symbols only (the regime's
        long indicators are needed for its index symbol alone). `history` candles are kept
        per symbol for strategies that read raw candles; 0 keeps none. `compiled=False`
        forces the generated Python step even where the compiled one is built."""
        self.compiled = compiled
        uniq = sorted(set(keys))
        for k in uniq:
            parse_key(k)
        self.keys: tuple[str, ...] = tuple(uniq)
        self._extra: dict[str, tuple[str, ...]] = {}
        for sym, more in (extra or {}).items():
            ks = sorted(set(uniq) | set(more))
            for k in ks:
                parse_key(k)
            self._extra[sym] = tuple(ks)
        self._history = max(history, 0)
        self._pushers: dict[str, Pusher] = {}
        self._rings: dict[str, deque[tuple[int, float, float, float, float, float]]] = {}
        self._latest: dict[str, SymbolFeatures] = {}

    def pusher(self, symbol: str) -> Pusher:
        """The symbol's candle step, `(ts, o, h, low, c, v) -> SymbolFeatures`, for callers
        that push millions of candles (the backtest's feed) and want no lookup per call."""
        p = self._pushers.get(symbol)
        if p is None:
            p = _make_pusher(
                self._extra.get(symbol, self.keys), symbol, self._latest, self.compiled
            )
            if self._history:
                ring: deque[tuple[int, float, float, float, float, float]] = deque(
                    maxlen=self._history
                )
                self._rings[symbol] = ring
                p = _with_ring(p, ring)
            self._pushers[symbol] = p
        return p

    def push(
        self, symbol: str, ts: int, o: float, h: float, low: float, c: float, v: float
    ) -> SymbolFeatures:
        """Add one closed candle. Raises BadTick (nothing changes) for a candle it refuses."""
        p = self._pushers.get(symbol) or self.pusher(symbol)
        return p(ts, o, h, low, c, v)

    def push_candle(self, symbol: str, candle: Candle) -> SymbolFeatures:
        return self.push(
            symbol,
            candle.ts,
            float(candle.open),
            float(candle.high),
            float(candle.low),
            float(candle.close),
            float(candle.volume),
        )

    def latest(self) -> dict[str, SymbolFeatures]:
        """A copy of the newest features per symbol."""
        return dict(self._latest)

    def get(self, symbol: str) -> SymbolFeatures | None:
        return self._latest.get(symbol)

    def last_ts(self, symbol: str) -> int:
        f = self._latest.get(symbol)
        return f.ts if f is not None else -1

    def recent_candles(self, symbol: str, n: int) -> tuple[Candle, ...]:
        ring = self._rings.get(symbol)
        if ring is None or n <= 0:
            return ()
        rows = list(ring)[-n:]
        return tuple(
            Candle(ts, _dec(o), _dec(h), _dec(lo), _dec(c), _dec(v)) for ts, o, h, lo, c, v in rows
        )

    def warmup_bars(self) -> int:
        """Candles needed before every indicator has a value."""
        keys = set(self.keys).union(*self._extra.values())
        return max((key_period(k) + 1 for k in keys), default=0)


def _with_ring(push: Pusher, ring: deque[tuple[int, float, float, float, float, float]]) -> Pusher:
    """Keep raw candles too, for strategies that read history."""

    def push_and_keep(ts: int, o: float, h: float, lo: float, c: float, v: float) -> SymbolFeatures:
        f = push(ts, o, h, lo, c, v)
        ring.append((ts, o, h, lo, c, v))
        return f

    return push_and_keep


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))
