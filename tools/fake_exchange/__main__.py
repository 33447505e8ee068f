"""Run the fake Binance exchange standalone.

    python -m tools.fake_exchange --port 8765 --symbols BTC/USDT,ETH/USDT \\
        --data ../shared/data/binance_spot_2024 --timeframe 5m --auto-advance-ms 200 \\
        --balance USDT=10000

Prints FAKE_EXCHANGE_URL, FAKE_API_KEY and FAKE_API_SECRET (one per line, env-file style) and
serves until SIGINT or SIGTERM. Credentials come from the environment variables of the same
names, or are random. Without --data the candles are synthetic (seeded).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

from core.candles import CandleSeries
from infra.candle_files import load_candles
from tools.fake_exchange.server import FakeExchange


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.fake_exchange",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--symbols", default="BTC/USDT,ETH/USDT", help="comma-separated BASE/QUOTE")
    p.add_argument(
        "--data", type=Path, help="candle directory (freqtrade layout); default: synthetic candles"
    )
    p.add_argument("--timeframe", default="1m", help="candle timeframe, e.g. 1m, 5m")
    p.add_argument(
        "--auto-advance-ms",
        type=int,
        default=0,
        help="feed one candle every N ms (0: only through POST /_control/advance)",
    )
    p.add_argument(
        "--balance",
        action="append",
        default=[],
        metavar="ASSET=AMOUNT",
        help="starting balance, repeatable (default USDT=10000)",
    )
    p.add_argument("--seed", type=int, default=7, help="seed of synthetic candles and fills")
    p.add_argument("--state", type=Path, help="state file: orders survive restarts of the fake")
    p.add_argument("--warmup", type=int, default=200, help="candles fed before serving")
    p.add_argument("--weight-limit", type=int, default=1200, help="request weight per minute")
    p.add_argument(
        "--no-align",
        action="store_true",
        help="keep the data's own timestamps instead of ending the warm-up at now",
    )
    return p.parse_args(argv)


def parse_balances(items: list[str]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for item in items or ["USDT=10000"]:
        asset, _, amount = item.partition("=")
        try:
            value = Decimal(amount)
        except InvalidOperation:
            value = Decimal(-1)
        if not asset or value < 0:
            raise ValueError(f"bad --balance {item!r}: use ASSET=AMOUNT, e.g. USDT=10000")
        out[asset.strip().upper()] = value
    return out


def load_data(directory: Path, symbols: list[str], timeframe: str) -> dict[str, CandleSeries]:
    out: dict[str, CandleSeries] = {}
    for symbol in symbols:
        series, report = load_candles(directory, symbol, timeframe)
        if not report.ok:
            print(report.summary(), file=sys.stderr)
        out[symbol] = series
    return out


async def serve(args: argparse.Namespace) -> int:
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    candles = load_data(args.data, symbols, args.timeframe) if args.data else None
    fake = FakeExchange(
        symbols=symbols,
        candles=candles,
        seed=args.seed,
        balances=parse_balances(args.balance),
        api_key=os.environ.get("FAKE_API_KEY") or secrets.token_hex(32),
        api_secret=os.environ.get("FAKE_API_SECRET") or secrets.token_hex(32),
        timeframe=args.timeframe,
        state_path=args.state,
        auto_advance_ms=args.auto_advance_ms,
        warmup_candles=args.warmup,
        weight_limit=args.weight_limit,
        align_to_now=not args.no_align,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fake.start(args.host, args.port)
    # stdout carries only these lines, so a parent process can read them (client.spawn_fake).
    print(f"FAKE_EXCHANGE_URL={fake.url}", flush=True)
    print(f"FAKE_API_KEY={fake.api_key}", flush=True)
    print(f"FAKE_API_SECRET={fake.api_secret}", flush=True)
    logging.getLogger(__name__).info("fake exchange serving %s at %s", symbols, fake.url)
    try:
        await stop.wait()
    finally:
        await fake.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"fake exchange: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
