"""Price-to-exit latency and the daemon's CPU with WebSocket streams, against the fake exchange.

The fake runs in this process and serves REST and streams for N symbols (1s candles, one
candle per wall second, a bookTicker and a trade per symbol every second: the fake's default
message rate). The daemon is the real `vigil run` in a child process, LIVE against the fake,
trading its own way (settings that make it enter on synthetic candles, with exits so wide that
only a crash moves a position out). Whenever it holds a position, this script publishes a
price print 40% under the market on that symbol's streams and notes when the exit order
arrives at the fake: price_to_exit = arrival - publish, both taken by this process's clock.
cpu_pct is the daemon's CPU time (user + system, /proc) over the measuring window, as a share
of one core; msgs_per_s is what the fake sent per second over the same window.

    .venv/bin/python tools/bench_stream.py [--symbols 200] [--samples 20] [--seconds 90]

Prints `symbols=200 price_to_exit_p95_ms=.. cpu_pct=.. msgs_per_s=..` (and the median, the
sample count and the cycle interval on a second line). The machine may be shared: note it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.models import Order  # noqa: E402
from tests.integration.live_helpers import (  # noqa: E402
    API_KEY,
    API_SECRET,
    START_USDT,
    make_workspace,
    running,
)
from tools.fake_exchange import FakeExchange  # noqa: E402

REAL = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def symbols_for(n: int) -> list[str]:
    return REAL[:n] if n <= len(REAL) else REAL + [f"S{i}/USDT" for i in range(1, n - 2)]


class TimedFake(FakeExchange):
    """Notes the wall time each order arrives."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[tuple[float, str, str]] = []  # (epoch s, symbol, side)

    def register_order(self, order: Order, quote_qty: Decimal) -> Any:
        self.arrivals.append((time.time(), order.symbol, order.side.value))
        return super().register_order(order, quote_qty)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def positions(db: Path) -> dict[str, str]:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("SELECT symbol, avg_entry_price FROM positions").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return {str(s): str(p) for s, p in rows}


async def bench(n: int, samples: int, seconds: float, interval: float) -> dict[str, Any]:
    syms = symbols_for(n)
    fake = TimedFake(
        symbols=syms,
        balances={"USDT": START_USDT},
        api_key=API_KEY,
        api_secret=API_SECRET,
        timeframe="1s",
        auto_advance_ms=1000,
        warmup_candles=450,
        synthetic_bars=4000,
        weight_limit=1_000_000,
    )
    await fake.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    env = {
        "VIGIL_UNIVERSE__SYMBOLS": json.dumps(syms),
        "VIGIL_UNIVERSE__CORE_SYMBOLS": json.dumps(syms),
        "VIGIL_UNIVERSE__MAX_SIZE": str(min(n, 500)),
        "VIGIL_LOOP__INTERVAL_SECONDS": str(interval),
        "VIGIL_LOOP__WARMUP_CANDLES": "300",
        "VIGIL_LOOP__HISTORY_CANDLES": "8",
        "VIGIL_EXITS__STOP_LOSS_PCT": "-30",
        "VIGIL_EXITS__TAKE_PROFIT_PCT": "50",
        "VIGIL_EXITS__TRAILING_STOP_PCT": "50",
        "VIGIL_EXITS__MAX_HOLDING_MINUTES": "600",
        # room for many positions at once, so the window collects enough exits
        "VIGIL_RISK__MAX_OPEN_POSITIONS": "30",
        "VIGIL_RISK__MAX_TOTAL_EXPOSURE_PCT": "90",
        "VIGIL_RISK__MAX_THEME_EXPOSURE_PCT": "90",
        "VIGIL_STRATEGIES__RULES__BUDGET__MAX_AT_RISK_PCT": "90",
        "VIGIL_STRATEGIES__RULES__BUDGET__MAX_TRADES_PER_CYCLE": "10",
    }
    ws = make_workspace(tmp, fake.url, mode="LIVE", **env)
    lat: list[float] = []
    try:
        async with running(ws) as daemon:
            # wait for the streams to carry every symbol and the first cycles to pass
            t_end = time.monotonic() + 120
            while time.monotonic() < t_end and fake.streams.describe()["subscriptions"] < 3 * n:
                await asyncio.sleep(0.5)
            await asyncio.sleep(5)
            cpu0, sent0, t0 = cpu_seconds(daemon.pid), fake.streams.sent, time.monotonic()
            crashed: dict[str, str] = {}  # symbol -> entry price crashed
            while len(lat) < samples and time.monotonic() - t0 < seconds:
                held = positions(ws.state_db)
                fresh = [s for s, px in sorted(held.items()) if crashed.get(s) != px]
                if not fresh:
                    await asyncio.sleep(0.2)
                    continue
                sym = fresh[0]
                crashed[sym] = held[sym]
                last = (await fake.sim.fetch_quotes([sym]))[sym].last
                price = (last * Decimal("0.6")).quantize(Decimal("0.0001"))
                mark = len(fake.arrivals)
                pub = await fake.streams.publish_price(sym, str(price))
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    hit = [a for a in fake.arrivals[mark:] if a[1] == sym and a[2] == "sell"]
                    if hit:
                        lat.append((hit[0][0] - pub) * 1000.0)
                        break
                    await asyncio.sleep(0.002)
            span = time.monotonic() - t0
            # the CPU window runs on to `seconds` so it is not just the busy part
            if span < seconds / 2:
                await asyncio.sleep(seconds / 2 - span)
                span = time.monotonic() - t0
            cpu = cpu_seconds(daemon.pid) - cpu0
            sent = fake.streams.sent - sent0
            await daemon.terminate()
    finally:
        await fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    lat.sort()
    p95 = lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)] if lat else float("nan")
    return {
        "symbols": n,
        "price_to_exit_p95_ms": round(p95, 1),
        "cpu_pct": round(100.0 * cpu / span, 1),
        "msgs_per_s": round(sent / span),
        "median_ms": round(statistics.median(lat), 1) if lat else float("nan"),
        "samples": len(lat),
        "window_s": round(span, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--symbols", type=int, default=200)
    p.add_argument("--samples", type=int, default=20, help="exits to measure")
    p.add_argument("--seconds", type=float, default=90, help="longest measuring window")
    p.add_argument("--interval", type=float, default=5, help="the daemon's cycle interval (s)")
    a = p.parse_args()
    if a.symbols < 1 or a.samples < 1 or a.seconds <= 0:
        p.error("--symbols, --samples and --seconds must be positive")
    r = asyncio.run(bench(a.symbols, a.samples, a.seconds, a.interval))
    print(
        f"symbols={r['symbols']} price_to_exit_p95_ms={r['price_to_exit_p95_ms']} "
        f"cpu_pct={r['cpu_pct']} msgs_per_s={r['msgs_per_s']}"
    )
    print(
        f"price_to_exit_median_ms={r['median_ms']} samples={r['samples']} "
        f"window_s={r['window_s']} cycle_interval_s={a.interval}"
    )
    return 0 if r["samples"] else 1


if __name__ == "__main__":
    sys.exit(main())
