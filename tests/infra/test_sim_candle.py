"""The compiled on_candle (infra/exchange/_simcandle.c) against SimExchange.on_candle itself:
the same candles in, the same fills, errors and books out."""

from __future__ import annotations

import random
import shutil
import sysconfig
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import SimClock
from core.errors import BadSymbol
from core.models import OrderIntent, OrderType, Side
from infra.exchange import sim as sim_module
from infra.exchange.sim import SimExchange
from infra.exchange.sim_book import SymbolBook, float_spread_bps
from infra.exchange.sim_config import SimConfig
from tests.infra.test_sim_exchange import drive, market

D = Decimal
TF = 60_000
MARKETS = [
    market("BTC/USDT", price_increment=D("0.01")),
    market("SHIB/USDT", price_increment=D("0.00000001"), amount_increment=D("1")),
    market("ODD/USDT", price_increment=D("0.05")),  # not a power of ten
]
needs_compiled = pytest.mark.skipif(
    sim_module._simcandle is None, reason="infra/exchange/_simcandle.c was not built"
)


def test_it_is_built_wherever_a_compiler_is() -> None:
    """Optional builds fail quietly (installs without a compiler work); with a compiler at
    hand a failed build is a bug, and this says so."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): SimExchange.on_candle serves every candle")
    assert sim_module._simcandle is not None, (
        f"{cc} is installed but infra/exchange/_simcandle.c did not build: "
        "run `.venv/bin/pip install -v -e .` and read the compiler's error"
    )


def _sim() -> tuple[SimExchange, SimClock]:
    clock = SimClock(0)
    ex = SimExchange(
        markets={m.symbol: m for m in MARKETS},
        config=SimConfig(
            starting_balances={"USDT": D(100_000), "BTC": D(2), "SHIB": D(10**9), "ODD": D(50)},
            participation_cap=D("0.05"),
            latency_ms=0,
        ),
        rng=random.Random(5),
        clock=clock,
        timeframe_ms=TF,
        history_size=50,  # small, so the history's maxlen is exercised
    )
    return ex, clock


def _outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", call(*args)
    except Exception as exc:  # the comparison is the point: same type, same message
        return type(exc).__name__, str(exc)


def _book_state(ex: SimExchange) -> dict[str, Any]:
    out = {}
    for sym, b in ex._books.items():
        out[sym] = (b.last_ts, list(b.history), b.spread_f.hex(), b.spread_ts)
    return out


def _stream(seed: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Candles for three markets with orders placed along the way, and the odd bad input:
    stale and repeated times, broken candles, NaN, ints for floats, an unknown symbol."""
    rng = random.Random(seed)
    price = {"BTC/USDT": 42_000.0, "SHIB/USDT": 0.00001234, "ODD/USDT": 7.35}
    events: list[tuple[str, tuple[Any, ...]]] = []
    for i in range(400):
        for sym, p in price.items():
            o = p
            c = max(p * (1 + rng.gauss(0, 0.004)), p * 0.5)
            h = max(o, c) * (1 + abs(rng.gauss(0, 0.002)))
            lo = min(o, c) * (1 - abs(rng.gauss(0, 0.002)))
            v = abs(rng.gauss(50, 20))
            price[sym] = c
            row: tuple[Any, ...] = (sym, i * TF, o, h, lo, c, v)
            roll = rng.random()
            if roll < 0.01:
                row = (sym, i * TF, o, lo * 0.5, lo, c, v)  # high below low
            elif roll < 0.02:
                row = (sym, (i - 1) * TF, o, h, lo, c, v)  # not newer than the last one
            elif roll < 0.025:
                row = (sym, i * TF, o, h, lo, float("nan"), v)
            elif roll < 0.03:
                row = (sym, i * TF, o, h, lo, c, -1.0)
            elif roll < 0.04 and sym == "BTC/USDT":
                row = (sym, i * TF, int(o), int(h) + 1, int(lo), int(c), 3)  # ints: still valid
            elif roll < 0.045:
                row = ("NOPE/USDT", i * TF, o, h, lo, c, v)
            events.append(("candle", row))
            if rng.random() < 0.08:
                side = rng.choice([Side.BUY, Side.SELL])
                limit = rng.random() < 0.6
                inc = {"BTC/USDT": D("0.01"), "SHIB/USDT": D("1e-8"), "ODD/USDT": D("0.05")}[sym]
                px = (D(repr(c)) * D(str(1 + rng.uniform(-0.01, 0.01)))).quantize(inc)
                amount = {"BTC/USDT": "0.05", "SHIB/USDT": "2000000", "ODD/USDT": "3"}[sym]
                events.append(
                    (
                        "order",
                        (
                            f"o{len(events)}",
                            sym,
                            side,
                            OrderType.LIMIT if limit else OrderType.MARKET,
                            D(amount),
                            px if limit else None,
                        ),
                    )
                )
    return events


def _replay(events: list[tuple[str, tuple[Any, ...]]], compiled: bool) -> dict[str, Any]:
    ex, clock = _sim()
    listen = ex.candle_listener(compiled=compiled)
    if compiled:
        assert listen is not ex.on_candle
    seen: list[Any] = []
    for kind, args in events:
        if kind == "candle":
            ts = args[1]
            if ts + TF > clock.now_ms():
                clock.advance_to(ts + TF)
            seen.append(_outcome(listen, *args))
        else:
            coid, sym, side, otype, amount, price = args
            intent = OrderIntent(
                client_order_id=coid,
                symbol=sym,
                side=side,
                order_type=otype,
                amount=amount,
                price=price,
                strategy="t",
                cycle_ms=clock.now_ms(),
            )
            seen.append(_outcome(lambda i: drive(ex.create_order(i)), intent))
    return {"seen": seen, "books": _book_state(ex), "state": ex.snapshot_state()}


@needs_compiled
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_fills_errors_and_books_as_on_candle(seed: int) -> None:
    events = _stream(seed)
    fast, slow = _replay(events, True), _replay(events, False)
    assert fast == slow
    kinds = {k for k, _ in fast["seen"]}
    assert {"ok", "ValueError", "BadSymbol"} <= kinds  # the stream did reach the odd paths
    fills = sum(len(r) for k, r in fast["seen"] if k == "ok" and isinstance(r, list))
    assert fills > 20  # and the matcher ran through the compiled path


@needs_compiled
def test_unknown_symbol_raises_bad_symbol() -> None:
    ex, _ = _sim()
    with pytest.raises(BadSymbol, match="unknown symbol 'NOPE/USDT'"):
        ex.candle_listener()("NOPE/USDT", 0, 1.0, 1.0, 1.0, 1.0, 1.0)


@needs_compiled
def test_a_book_type_without_plain_slots_is_refused() -> None:
    from infra.exchange import _simcandle  # type: ignore[attr-defined]

    class Book:
        last_ts = property(lambda self: 0)

    ex, _ = _sim()
    with pytest.raises(TypeError, match="last_ts is not a writable __slots__ field"):
        _simcandle.Listener({}, Book, ex.on_candle, ex._match, 1.0, 1.0)
    # The real one is accepted.
    _simcandle.Listener({}, SymbolBook, ex.on_candle, ex._match, 1.0, 1.0)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(
    close=st.floats(min_value=1e-9, max_value=1e7, allow_nan=False),
    inc=st.sampled_from(["0.01", "0.00000001", "0.05", "1", "0.0001", "25"]),
    half_bps=st.sampled_from(["0", "1", "2.5", "10"]),
)
def test_spread_is_float_spread_bps_to_the_bit(close: float, inc: str, half_bps: str) -> None:
    """The compiled spread is the same float operations in the same order."""
    m = market("BTC/USDT", price_increment=D(inc))
    ex = SimExchange(
        markets={m.symbol: m},
        config=SimConfig(synthetic_spread_bps=D(half_bps) * 2),
        rng=random.Random(0),
        clock=SimClock(0),
        timeframe_ms=TF,
    )
    ex.candle_listener()("BTC/USDT", 0, close, close, close, close, 1.0)
    book = ex._books["BTC/USDT"]
    want = float_spread_bps(close, float(ex._half_spread), float(D(inc)))
    assert book.spread_f.hex() == want.hex()
    assert book.spread_ts == 0 and book.last_ts == 0
