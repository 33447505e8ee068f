"""Median time of one full `run_cycle` for 15, 50 and 200 symbols on realistic snapshots.

Snapshots are built the way the daemon builds them: a FeatureBank fed with real Binance 5m
candles (../shared/data; synthetic ones when absent), Decimal quotes, a portfolio holding
positions and resting orders. Between timed cycles one new candle per symbol arrives, so every
cycle sees fresh data. Prints one line per size: `symbols=50 cycle_median_ms=1.23`.

    .venv/bin/python tools/bench_cycle.py [--cycles 400] [--sizes 15,50,200] [--stages]

A cycle is timed as the engine runs it: the guarded marks computed once, the markets' static
screen kept from one cycle to the next. --stages adds `symbols=15 stage=gate median_ms=..`
lines (run_cycle's own stage timer, which costs a little itself).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backtest.synthetic import generate_candles  # noqa: E402
from core.candles import CandleSeries  # noqa: E402
from core.config import PipelineConfig, UniverseConfig  # noqa: E402
from core.cycle import MarketSnapshot, required_features, run_cycle  # noqa: E402
from core.features import FeatureBank  # noqa: E402
from core.models import (  # noqa: E402
    EngineState,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
)
from core.portfolio import Portfolio  # noqa: E402
from core.stages import cycle_marks  # noqa: E402
from core.universe import static_screen  # noqa: E402
from infra.candle_files import list_pairs, load_candles  # noqa: E402
from infra.markets import market_for  # noqa: E402
from strategy.registry import resolve  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance_spot_2024"
START = 1_704_067_200_000


def source_series(n: int) -> list[CandleSeries]:
    if DATA.is_dir():
        pairs = list_pairs(DATA, "5m")
        base = [load_candles(DATA, p, "5m")[0] for p in pairs]
    else:
        base = [
            generate_candles(f"S{i}/USDT", "5m", START, 6000, seed=i, start_price=10.0 + i)
            for i in range(15)
        ]
    out = []
    for i in range(n):
        src = base[i % len(base)]
        name = src.symbol if i < len(base) else f"{src.symbol.split('/')[0]}{i}/USDT"
        out.append(
            CandleSeries(name, "5m", src.ts, src.open, src.high, src.low, src.close, src.volume)
        )
    return out


def bench(n: int, cycles: int, warm: int, *, stage_times: bool = False) -> float:
    series = source_series(n)
    symbols = [s.symbol for s in series]
    cfg = PipelineConfig(
        universe=UniverseConfig(
            symbols=tuple(symbols),
            max_size=n,
            rotational_max_rank=n,
            min_quote_volume_24h=Decimal(1_000_000),
        ),
        strategies={"rules": {"enabled": True}, "ema_cross": {"enabled": True}},
    )
    strategies = resolve(cfg)
    bank = FeatureBank(required_features(cfg, strategies))
    markets = {s.symbol: market_for(s) for s in series}
    cols = [
        (
            s.symbol,
            s.ts.tolist(),
            s.open.tolist(),
            s.high.tolist(),
            s.low.tolist(),
            s.close.tolist(),
            s.volume.tolist(),
        )
        for s in series
    ]
    tf = cfg.timeframe_ms

    def push(i: int) -> int:
        for sym, ts, o, h, lo, c, v in cols:
            bank.push(sym, ts[i], o[i], h[i], lo[i], c[i], v[i])
        return cols[0][1][i] + tf

    for i in range(warm):
        now = push(i)
    held = symbols[:3]
    positions = {}
    for sym in held:
        px = Decimal(repr(bank.get(sym).close))  # type: ignore[union-attr]
        positions[sym] = Position(
            sym, Decimal("0.5"), px, Decimal("0.02"), now - 3_600_000, px, "rules"
        )
    portfolio = Portfolio(cash=Decimal(100_000), positions=positions)
    resting = tuple(
        Order(
            f"vg{i:030d}",
            sym,
            Side.BUY,
            OrderType.LIMIT,
            Decimal(1),
            Decimal(repr(bank.get(sym).close * 0.9)),  # type: ignore[union-attr]
            OrderStatus.OPEN,
            now,
            now,
            strategy="rules",
            post_only=True,
        )
        for i, sym in enumerate(symbols[3:5])
    )
    state = EngineState()
    screen = static_screen(cfg.universe, markets)
    timer = time.perf_counter if stage_times else None
    stages: dict[str, list[float]] = {}
    times: list[float] = []
    for i in range(warm, warm + cycles):
        now = push(i)
        quotes = {}
        for sym in symbols:
            c = bank.get(sym).close  # type: ignore[union-attr]
            m = markets[sym]
            bid = Decimal(repr(c)).quantize(m.price_increment)
            quotes[sym] = Quote(sym, bid, bid + m.price_increment, bid, now)
        t0 = time.perf_counter()
        # As the engine does: the guarded marks once per cycle, the markets' screen kept.
        features = bank.latest()
        snap = MarketSnapshot(
            ts=now,
            markets=markets,
            features=features,
            quotes=quotes,
            open_orders=resting,
            state=state,
            marks=cycle_marks(portfolio, quotes, features, cfg),
            screen=screen,
        )
        d = run_cycle(snap, portfolio, cfg, now, strategies=strategies, timer=timer)
        times.append(time.perf_counter() - t0)
        for name, ms in d.timings_ms:
            stages.setdefault(name, []).append(ms)
        state = d.state
    for name, spans in stages.items():
        print(f"symbols={n} stage={name} median_ms={statistics.median(spans):.4f}")
    return statistics.median(times) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--sizes", default="15,50,200")
    ap.add_argument(
        "--stages", action="store_true", help="also print each stage's median (timed cycles)"
    )
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"note: {DATA} not found; using synthetic candles", file=sys.stderr)
    for n in (int(x) for x in args.sizes.split(",")):
        ms = bench(n, args.cycles, args.warmup, stage_times=args.stages)
        print(f"symbols={n} cycle_median_ms={ms:.3f}", flush=True)


if __name__ == "__main__":
    main()
