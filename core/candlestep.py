"""The compiled candle step (core/_candlestep.c), when the build produced it.

`compiled_pusher` returns None when the extension is missing, so the generated Python step
(core.features) is always there as the reference and the fallback. Both give bit-identical
features; tests/core/test_candlestep.py checks that candle by candle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

try:
    from core import _candlestep  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler, or a platform without the wheel
    _candlestep = None

AVAILABLE = _candlestep is not None

_KINDS = ("ema", "atr", "rsi", "hh", "ll", "peak", "vavg", "qvol", "med", "roc")


def _reject(
    why: str, symbol: str, last_ts: int, ts: int, o: float, h: float, lo: float, c: float, v: float
) -> None:
    """Raise the BadTick the generated step raises, with the same message."""
    from core.features import BadTick

    if why == "BAD_PRICE":
        raise BadTick(symbol, ts, why, f"o={o} h={h} l={lo} c={c}")
    if why == "BAD_VOLUME":
        raise BadTick(symbol, ts, why, f"v={v}")
    raise BadTick(symbol, ts, why, f"last seen {last_ts}")


def compiled_pusher(
    keys: tuple[str, ...],
    symbol: str,
    latest: dict[str, Any],
    features_type: type,
    empty: Mapping[str, float | None],
) -> Callable[..., Any] | None:
    if _candlestep is None:
        return None
    specs = []
    for key in keys:
        kind, _, period = key.partition(":")
        if kind not in _KINDS:
            return None  # a kind only the Python step knows
        specs.append((getattr(_candlestep, kind.upper()), int(period), key))
    step: Callable[..., Any] = _candlestep.Step(
        symbol, latest, tuple(specs), features_type, _reject, math.fsum, empty
    )
    return step
