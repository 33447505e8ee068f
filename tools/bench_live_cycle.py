"""The daemon's own cycle overhead against the fake Binance exchange, for 15 and 50 symbols.

The fake runs in a child process (its CPU is not counted here). In this process the engine is
built the way runner/live.py builds it: CcxtExchange (unmodified ccxt binance pointed at the
fake) under PaperExchange for PAPER or alone with keys for LIVE, ExchangeFeed, a MemoryStore and
a Recorder on a MemorySink. The fake makes one 1s candle per wall second, so the engine steps
once per second, each step seeing a new candle per symbol, as the daemon does at
`loop.interval_seconds: 1` and `timeframe: 1s`.

Per step it measures the step's wall time and the time spent awaiting the exchange: every
awaited ccxt call is timed, and since ExchangeFeed awaits several at once, the wait is the
length of the union of those intervals, not their sum. Overhead = step time - exchange wait:
what the daemon itself spends (stages, bookkeeping, parsing into domain types, audit records).
ccxt's own signing and JSON parsing happen inside the awaited calls and count as wait, and so
does any work of ours that overlaps a pending request; cpu_median_ms (this process's CPU time
per step, ccxt and aiohttp included) bounds the other side.

    .venv/bin/python tools/bench_live_cycle.py [--cycles 40] [--sizes 15,50] [--mode PAPER]

Prints one line per size:
`symbols=50 overhead_median_ms=.. overhead_p95_ms=.. cycle_median_ms=.. wait_median_ms=..`
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import random
import secrets
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.models import Market  # noqa: E402
from infra.clock import LiveClock  # noqa: E402
from infra.config_loader import load_config  # noqa: E402
from infra.exchange.ccxt_exchange import CcxtExchange  # noqa: E402
from infra.exchange.ccxt_factory import make_ccxt  # noqa: E402
from infra.exchange.paper import PaperExchange  # noqa: E402
from infra.exchange.sim import SimExchange  # noqa: E402
from infra.live_feed import ExchangeFeed  # noqa: E402
from infra.ratelimit import Budget  # noqa: E402
from infra.settings import Mode, VigilConfig  # noqa: E402
from runner.app import build_engine  # noqa: E402
from runner.live import FeedSymbols  # noqa: E402
from runner.recorder import MemorySink  # noqa: E402
from runner.store import MemoryStore  # noqa: E402
from runner.strategy_loader import STRATEGIES  # noqa: E402
from tools.fake_exchange import spawn_fake  # noqa: E402

# The 15 pairs of config/universe.yaml; larger sizes add synthetic S1/USDT, S2/USDT, ...
BASES = "ATOM AVAX BCH BTC DOGE ETH LINK LTC MATIC NEAR SHIB SOL TRX UNI XRP"
REAL = [f"{b}/USDT" for b in BASES.split()]


# Thresholds that make the default pipeline trade on synthetic 1s candles, so the overhead
# measured includes orders, fills and exits, not only quiet cycles.
TRADING: dict[str, dict[str, Any]] = {
    "triggers": {"rsi_reversion": {"oversold": 49}, "momentum": {"min_return_pct": 0.0001}},
    "regime": {
        "bear_drawdown_pct": 60,
        "crash_drawdown_pct": 80,
        "crash_atr_pct": 50,
        "multipliers": {"chop": 1, "bear": 1},
    },
    "exits": {"stop_loss_pct": -0.1, "take_profit_pct": 0.1, "max_holding_minutes": 1},
    "risk": {"cooldown_after_fill_minutes": 0, "cooldown_after_stop_minutes": 0},
    "execution": {"order_ttl_seconds": 5},
}


def symbols_for(n: int) -> list[str]:
    return REAL[:n] if n <= len(REAL) else REAL + [f"S{i}/USDT" for i in range(1, n - 14)]


def config_for(symbols: list[str], url: str, mode: str) -> VigilConfig:
    env = {
        "VIGIL_MODE": mode,
        "VIGIL_READ_ONLY": "false" if mode == "LIVE" else "true",
        "VIGIL_EXCHANGE__LIVE_CONFIRM": "binance",
        "VIGIL_TIMEFRAME": "1s",
        "VIGIL_EXCHANGE__BASE_URL": url,
        "VIGIL_EXCHANGE__WEIGHT_PER_MINUTE": "100000",
        "VIGIL_UNIVERSE__SYMBOLS": json.dumps(symbols),
        "VIGIL_UNIVERSE__CORE_SYMBOLS": json.dumps(symbols),
        "VIGIL_UNIVERSE__MAX_SIZE": str(len(symbols)),
        "VIGIL_UNIVERSE__ROTATIONAL_MAX_RANK": str(len(symbols)),
        "VIGIL_STRATEGIES__RULES__PARAMS__MIN_SCORE": "0.01",
        "VIGIL_STRATEGIES__RULES__PARAMS__REGIMES": '["bull", "chop", "bear"]',
    }
    for section, values in TRADING.items():
        for key, value in values.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    env[f"VIGIL_{section}__{key}__{sub}".upper()] = str(v)
            else:
                env[f"VIGIL_{section}__{key}".upper()] = str(value)
    return load_config(ROOT / "config", env, strategies=STRATEGIES).config


class WaitLog:
    """(start, end) of every awaited exchange call, on the monotonic clock."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def waited(self, t0: float, t1: float) -> float:
        """Length of the union of the spans inside [t0, t1]."""
        parts = sorted((max(a, t0), min(b, t1)) for a, b in self.spans if b > t0 and a < t1)
        total = 0.0
        cur_a = cur_b = None
        for a, b in parts:
            if cur_b is None or a > cur_b:
                if cur_b is not None and cur_a is not None:
                    total += cur_b - cur_a
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        if cur_b is not None and cur_a is not None:
            total += cur_b - cur_a
        self.spans = [s for s in self.spans if s[1] > t1]
        return total


class TimedClient:
    """The ccxt client with every coroutine method timed into a WaitLog."""

    def __init__(self, inner: Any, log: WaitLog) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        log = self._log

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            try:
                return await attr(*args, **kwargs)
            finally:
                log.spans.append((t0, time.monotonic()))

        return timed

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


@dataclass
class Sample:
    step_ms: float
    wait_ms: float
    cpu_ms: float  # this process's CPU during the step: ours plus ccxt's and aiohttp's

    @property
    def overhead_ms(self) -> float:
        return self.step_ms - self.wait_ms


def build(cfg: VigilConfig, url: str, key: str, secret: str, log: WaitLog) -> tuple[Any, Any]:
    """The engine as runner/live.py wires it, the ccxt client wrapped in a timer."""
    clock = LiveClock()
    live = cfg.mode is Mode.LIVE
    client = make_ccxt(
        cfg.exchange.id,
        api_key=key if live else None,
        api_secret=secret if live else None,
        base_url=url,
        timeout_ms=cfg.exchange.timeout_ms,
    )
    data = CcxtExchange(
        exchange_id=cfg.exchange.id,
        clock=clock,
        rng=random.Random(1),
        api_key=key if live else None,
        api_secret=secret if live else None,
        base_url=url,
        timeout_ms=cfg.exchange.timeout_ms,
        markets_refresh_s=cfg.exchange.markets_refresh_seconds,
        quote_currency=cfg.universe.quote_currency,
        budgets={
            "weight": Budget(capacity=cfg.exchange.weight_per_minute, per_seconds=60),
            "orders": Budget(capacity=cfg.exchange.orders_per_10s, per_seconds=10),
        },
        client=TimedClient(client, log),
    )
    symbols = FeedSymbols(cfg)
    feed = ExchangeFeed(exchange=data, symbols=symbols, timeframe=cfg.timeframe)
    exchange: Any = data
    listeners: list[Any] = []
    if not live:

        def make_sim(markets: Mapping[str, Market]) -> SimExchange:
            return SimExchange(
                markets=markets,
                config=cfg.sim,
                rng=random.Random(cfg.sim.seed),
                clock=clock,
                timeframe_ms=cfg.timeframe_ms,
                history_size=4,
            )

        paper = PaperExchange(data=data, sim_factory=make_sim)
        exchange, listeners = paper, [paper.on_candle]
    engine = build_engine(
        config=cfg,
        exchange=exchange,
        feed=feed,
        store=MemoryStore(),
        sink=MemorySink(),
        listeners=listeners,
        on_account=symbols.follow,
    )
    return engine, clock


async def next_second(offset_s: float = 0.05) -> None:
    """Sleep to just after the next wall-clock second, when the fake has made its candle."""
    now = time.time()
    await asyncio.sleep(math.floor(now) + 1 + offset_s - now)


async def bench(n: int, cycles: int, warm: int, mode: str) -> tuple[list[Sample], dict[str, int]]:
    syms = symbols_for(n)
    creds = {"FAKE_API_KEY": secrets.token_hex(16), "FAKE_API_SECRET": secrets.token_hex(16)}
    fake = await spawn_fake(
        [
            "--symbols",
            ",".join(syms),
            "--timeframe",
            "1s",
            "--auto-advance-ms",
            "1000",
            "--warmup",
            "450",
            "--weight-limit",
            "1000000",
            "--balance",
            "USDT=100000",
        ],
        env=creds,
    )
    log = WaitLog()
    engine = None
    try:
        cfg = config_for(syms, fake.url, mode)
        engine, clock = build(cfg, fake.url, fake.api_key, fake.api_secret, log)
        await engine.start(clock.now_ms(), warmup_bars=cfg.loop.warmup_candles)
        samples: list[Sample] = []
        for i in range(warm + cycles):
            await next_second()
            log.spans.clear()
            c0, t0 = time.process_time(), time.monotonic()
            await engine.step(clock.now_ms())
            t1, c1 = time.monotonic(), time.process_time()
            if i >= warm:
                samples.append(
                    Sample((t1 - t0) * 1000, log.waited(t0, t1) * 1000, (c1 - c0) * 1000)
                )
        kinds: dict[str, int] = {}
        for kind, _ in engine.recorder.sink.records:
            kinds[kind] = kinds.get(kind, 0) + 1
        return samples, kinds
    finally:
        if engine is not None:
            await engine.exchange.close()
        await fake.stop()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=40, help="timed cycles per size")
    ap.add_argument("--warm", type=int, default=3, help="untimed cycles first")
    ap.add_argument("--sizes", default="15,50", help="comma-separated symbol counts")
    ap.add_argument("--mode", choices=["PAPER", "LIVE"], default="PAPER")
    args = ap.parse_args(argv)
    for n in (int(s) for s in args.sizes.split(",")):
        samples, kinds = await bench(n, args.cycles, args.warm, args.mode)
        over = [s.overhead_ms for s in samples]
        print(
            f"symbols={n} overhead_median_ms={statistics.median(over):.2f} "
            f"overhead_p95_ms={p95(over):.2f} "
            f"cycle_median_ms={statistics.median(s.step_ms for s in samples):.2f} "
            f"wait_median_ms={statistics.median(s.wait_ms for s in samples):.2f} "
            f"cpu_median_ms={statistics.median(s.cpu_ms for s in samples):.2f} "
            f"cycles={len(samples)} mode={args.mode} "
            f"intents={kinds.get('order_intent', 0)} fills={kinds.get('fill', 0)}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
