"""The feature bank: per symbol, every indicator a stage reads, updated candle by candle.

The indicators themselves are defined in core.indicators (one class per kind; a strategy
module adds its own the same way, see docs/indicators.md). A feature key is
`<kind>:<period>`; the built-in kinds:

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
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from core import candlestep
from core.indicators import BUILTIN, Indicator
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


Kinds = Mapping[str, type[Indicator]]
Pusher = Callable[[int, float, float, float, float, float], "SymbolFeatures"]
_Values = Callable[[float, float, float, float, float], dict[str, float | None]]
_KIND = re.compile(r"[a-z][a-z0-9_]*")


def indicator_kinds(classes: Iterable[type[Indicator]] = BUILTIN) -> dict[str, type[Indicator]]:
    """`kind -> class` for a bank. Two classes with one kind is an error, not an override:
    a strategy's indicator cannot silently replace a built-in another stage reads."""
    out: dict[str, type[Indicator]] = {}
    for cls in classes:
        kind = getattr(cls, "kind", "")
        if not (isinstance(cls, type) and issubclass(cls, Indicator)):
            raise ValueError(f"{cls!r} is not an Indicator subclass")
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ValueError(
                f"{cls.__qualname__}.kind = {kind!r}: expected lowercase letters, digits, _"
            )
        other = out.get(kind)
        if other is not None and other is not cls:
            raise ValueError(
                f"indicator kind {kind!r} is defined twice: {other.__module__}."
                f"{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
            )
        out[kind] = cls
    return out


_BUILTIN_KINDS: Kinds = MappingProxyType(indicator_kinds(BUILTIN))


def parse_key(key: str, kinds: Kinds = _BUILTIN_KINDS) -> tuple[str, int]:
    kind, _, period = key.partition(":")
    if kind not in kinds or not period.isdigit() or int(period) < 1:
        raise ValueError(f"bad feature key {key!r}: expected one of {sorted(kinds)} + ':N'")
    return kind, int(period)


def _called_each(indicators: list[tuple[str, Indicator]]) -> _Values:
    """Every indicator's own update, called in turn: the reference the fused step matches."""
    pairs = tuple((key, ind.update) for key, ind in indicators)

    def updates(o: float, h: float, lo: float, c: float, v: float) -> dict[str, float | None]:
        return {key: update(o, h, lo, c, v) for key, update in pairs}

    return updates


def _merged(parts: list[_Values], keys: tuple[str, ...]) -> _Values:
    """Fused parts from several source files, their values in key order."""
    if len(parts) == 1:
        return parts[0]

    def updates(o: float, h: float, lo: float, c: float, v: float) -> dict[str, float | None]:
        got: dict[str, float | None] = {}
        for part in parts:
            got.update(part(o, h, lo, c, v))
        return {k: got[k] for k in keys}

    return updates


def _candle_step(symbol: str, latest: dict[str, SymbolFeatures], updates: _Values) -> Pusher:
    """One symbol's step: refuse a bad candle before anything changes, update every
    indicator, publish the new features."""
    last_ts = -1
    bars = 0
    prev: Mapping[str, float | None] = _EMPTY

    def push(ts: int, o: float, h: float, lo: float, c: float, v: float) -> SymbolFeatures:
        nonlocal last_ts, bars, prev
        if ts <= last_ts:
            why = "DUPLICATE_CANDLE" if ts == last_ts else "OUT_OF_ORDER_CANDLE"
            raise BadTick(symbol, ts, why, f"last seen {last_ts}")
        # Chained comparisons are False for NaN and reject inf and zero too.
        if not (0.0 < lo <= h < _INF and lo <= o <= h and lo <= c <= h):
            raise BadTick(symbol, ts, "BAD_PRICE", f"o={o} h={h} l={lo} c={c}")
        if not (0.0 <= v < _INF):
            raise BadTick(symbol, ts, "BAD_VOLUME", f"v={v}")
        vals = updates(o, h, lo, c, v)
        bars += 1
        last_ts = ts
        # tuple.__new__ directly: the NamedTuple constructor is a Python-level call.
        f = _new_tuple(SymbolFeatures, (symbol, ts, o, h, lo, c, v, vals, prev, bars))
        prev = vals
        latest[symbol] = f
        return f

    return push


_INF = math.inf
_new_tuple = tuple.__new__
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
        kinds: Iterable[type[Indicator]] = BUILTIN,
        history: int = 64,
        extra: Mapping[str, Iterable[str]] | None = None,
        fused: bool = True,
    ) -> None:
        """`keys` for every symbol; `extra` adds keys for some symbols only (the regime's
        long indicators are needed for its index symbol alone). `kinds` are the indicator
        classes the keys may name: the built-ins plus the enabled strategies' own, handed
        in by whoever builds the bank. `history` candles are kept per symbol for strategies
        that read raw candles; 0 keeps none. `fused=False` calls each indicator's `update`
        in turn instead of the fused step derived from them (the same values, slower)."""
        self.kinds: Kinds = MappingProxyType(indicator_kinds(kinds))
        self.fused = fused
        uniq = sorted(set(keys))
        for k in uniq:
            parse_key(k, self.kinds)
        self.keys: tuple[str, ...] = tuple(uniq)
        self._extra: dict[str, tuple[str, ...]] = {}
        for sym, more in (extra or {}).items():
            ks = sorted(set(uniq) | set(more))
            for k in ks:
                parse_key(k, self.kinds)
            self._extra[sym] = tuple(ks)
        self._history = max(history, 0)
        self._pushers: dict[str, Pusher] = {}
        self._rings: dict[str, deque[tuple[int, float, float, float, float, float]]] = {}
        self._latest: dict[str, SymbolFeatures] = {}
        # kind -> why its update is called as it is rather than fused (user definitions
        # the splicer cannot handle): known up front, so the runner can log it once.
        self.unfused: dict[str, str] = {}
        # The fused step per key list, derived once and built for each symbol.
        self._derived: dict[tuple[str, ...], candlestep.Fused] = {}
        if fused and candlestep._candlestep is not None:
            for key_list in {self.keys, *self._extra.values()}:
                self.unfused.update(self._derive(key_list).unfused)

    def _indicators(self, keys: tuple[str, ...]) -> list[tuple[str, Indicator]]:
        out: list[tuple[str, Indicator]] = []
        for key in keys:
            kind, period = parse_key(key, self.kinds)
            out.append((key, self.kinds[kind](period)))
        return out

    def _derive(self, keys: tuple[str, ...]) -> candlestep.Fused:
        step = self._derived.get(keys)
        derive = candlestep._candlestep
        if step is None and derive is not None:
            step = self._derived[keys] = derive(self._indicators(keys))
        assert step is not None
        return step

    def _updates(self, keys: tuple[str, ...]) -> _Values:
        indicators = self._indicators(keys)
        if not self.fused or candlestep._candlestep is None:
            return _called_each(indicators)
        parts = self._derive(keys).build([ind for _, ind in indicators])
        return _merged(parts, keys)

    def pusher(self, symbol: str) -> Pusher:
        """The symbol's candle step, `(ts, o, h, low, c, v) -> SymbolFeatures`, for callers
        that push millions of candles (the backtest's feed) and want no lookup per call."""
        p = self._pushers.get(symbol)
        if p is None:
            p = _candle_step(
                symbol, self._latest, self._updates(self._extra.get(symbol, self.keys))
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
        return max((self._warmup(k) for k in keys), default=0)

    def _warmup(self, key: str) -> int:
        kind, period = parse_key(key, self.kinds)
        return self.kinds[kind].warmup(period)


def _with_ring(push: Pusher, ring: deque[tuple[int, float, float, float, float, float]]) -> Pusher:
    """Keep raw candles too, for strategies that read history."""

    def push_and_keep(ts: int, o: float, h: float, lo: float, c: float, v: float) -> SymbolFeatures:
        f = push(ts, o, h, lo, c, v)
        ring.append((ts, o, h, lo, c, v))
        return f

    return push_and_keep


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))
