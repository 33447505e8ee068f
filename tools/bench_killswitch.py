"""Kill-switch latency: from creating the kill-switch file to (a) new orders blocked and
(b) every resting order canceled on the exchange.

The daemon's own parts run here as they do in `vigil run`: the Engine, its Executor, the
KillWatcher task polling the file, on a live clock. The exchange is the SimExchange with
orders resting well below the market. Each trial: place the orders, create the file, watch
from outside until the executor refuses a new order and until the exchange reports no open
order; then remove the file and resume.

    .venv/bin/python tools/bench_killswitch.py [--trials 20] [--orders 5]

Prints: trials=20 block_median_ms=.. block_max_ms=.. cancel_median_ms=.. cancel_max_ms=..
metric_block_median_ms=.. metric_cancel_median_ms=.. (the last two: what the daemon's own
vigil_kill_switch_latency_seconds recorded for the same trials, from the file's mtime)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backtest.synthetic import generate_candles  # noqa: E402
from core.models import OrderIntent, OrderType, Side  # noqa: E402
from core.orders import client_order_id  # noqa: E402
from infra.clock import LiveClock  # noqa: E402
from infra.settings import VigilConfig  # noqa: E402
from runner.app import build_engine, prepare_replay, replay_feed, sim_exchange  # noqa: E402
from runner.kill import KillFiles, KillWatcher  # noqa: E402
from runner.recorder import MemorySink  # noqa: E402
from runner.store import MemoryStore  # noqa: E402

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


async def run(
    trials: int, orders: int
) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    from infra.candle_files import write_candles

    tmp = Path(tempfile.mkdtemp(prefix="vigil-kill-"))
    for i, sym in enumerate(SYMBOLS):
        write_candles(
            tmp / f"{sym.replace('/', '_')}-5m.feather",
            generate_candles(
                sym, "5m", 1_704_067_200_000, 400, seed=i, start_price=100.0 * (i + 1)
            ),
        )
    cfg = VigilConfig(universe={"symbols": SYMBOLS, "min_quote_volume_24h": 0})
    inputs = prepare_replay(cfg, tmp, warmup_candles=300)
    clock = LiveClock()
    sim = sim_exchange(
        inputs,
        cfg.sim.model_copy(update={"starting_balances": {"USDT": Decimal(1_000_000)}}),
        clock,
    )
    engine = build_engine(
        config=cfg,
        exchange=sim,
        feed=replay_feed(inputs),
        store=MemoryStore(),
        sink=MemorySink(),
        listeners=[sim.on_candle],
    )
    await engine.start(clock.now_ms(), warmup_bars=10_000)
    files = KillFiles(tmp / "KILL_SWITCH", tmp / "RESUME")
    metric: list[tuple[float, float]] = []  # what the daemon's own latency metric records
    watcher = KillWatcher(
        control=engine.kill_control(),
        clock=clock,
        files=files,
        on_latency=lambda block, cancel: metric.append((block * 1000, cancel * 1000)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    quotes = await sim.fetch_quotes(list(SYMBOLS))
    blocks: list[float] = []
    cancels: list[float] = []
    n = 0
    for _ in range(trials):
        for k in range(orders):
            n += 1
            sym = SYMBOLS[k % len(SYMBOLS)]
            m = inputs.markets[sym]
            price = (quotes[sym].bid * Decimal("0.95")).quantize(m.price_increment)
            amount = (Decimal(20) / price).quantize(m.amount_increment) + m.amount_increment
            intent = OrderIntent(
                client_order_id(f"bench{n}", sym, Side.BUY, amount, n),
                sym,
                Side.BUY,
                OrderType.LIMIT,
                amount,
                price,
                "bench",
                n,
                post_only=True,
            )
            await engine.executor.submit(intent, clock.now_ms())
        assert len(await sim.fetch_open_orders()) == orders, "orders did not rest"
        t0 = time.perf_counter()
        files.kill.write_text("bench\n")
        blocked = cancelled = None
        while blocked is None or cancelled is None:
            now = time.perf_counter()
            if blocked is None and engine.kill_active():
                blocked = now - t0
            if cancelled is None and not await sim.fetch_open_orders():
                cancelled = now - t0
            await asyncio.sleep(0.0005)
        blocks.append(blocked * 1000)
        cancels.append(cancelled * 1000)
        files.kill.unlink()
        await asyncio.sleep(0.06)
        engine.resume(clock.now_ms(), "bench")
    stop.set()
    await task
    return blocks, cancels, metric


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--orders", type=int, default=5, help="resting orders per trial")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    blocks, cancels, metric = asyncio.run(run(args.trials, args.orders))
    print(
        f"trials={args.trials} block_median_ms={statistics.median(blocks):.1f} "
        f"block_max_ms={max(blocks):.1f} cancel_median_ms={statistics.median(cancels):.1f} "
        f"cancel_max_ms={max(cancels):.1f} "
        f"metric_block_median_ms={statistics.median(b for b, _ in metric):.1f} "
        f"metric_cancel_median_ms={statistics.median(c for _, c in metric):.1f}"
    )


if __name__ == "__main__":
    main()
