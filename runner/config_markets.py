"""`vigil config check --data DIR | --markets`: do the configured markets exist?

The config alone cannot say whether BTC/USDC is a market; the candle files or the exchange
can. These checks reuse the very functions `vigil run` and the backtests refuse with, so the
refusal (exit 2) and its words are the same wherever it happens. An exchange that cannot be
reached is not a verdict on the config: it gets its own line and exit 1, never "OK".
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Collection
from pathlib import Path

from core.errors import ConfigError, ExchangeError
from infra.clock import LiveClock
from infra.config_loader import LoadedConfig
from infra.secrets import Secrets, redact, url_credentials
from runner import exit_codes, ops
from runner.app import check_markets, replay_markets_check
from runner.live import ccxt_exchange

NOT_CHECKED = (
    "markets not checked (only the symbols' form); check them with --markets (asks the "
    "exchange) or --data DIR (candle files)"
)


def check_data_markets(loaded: LoadedConfig, data: Path) -> str:
    """Refuse (DataError, exit 2) markets without a candle file in `data`, as a backtest
    would; returns the line saying what was checked."""
    config = loaded.config
    if not data.is_dir():
        raise ConfigError(
            f"--data {data}: not a directory; fix: pass the directory holding the candle files"
        )
    if not replay_markets_check(config, data):
        raise ConfigError(
            f"{data}: no {config.timeframe} candle files found, so no market can be checked "
            f"against it; download some with `vigil download-data --pairs BTC/USDT "
            f"--timeframe {config.timeframe} --days 30`"
        )
    return f"markets checked against the {config.timeframe} candle files in {data}"


async def _exchange_markets(loaded: LoadedConfig) -> Collection[str]:
    # Public market data only: no credentials are handed over, whatever the mode.
    exchange = ccxt_exchange(loaded.config, Secrets(), LiveClock())
    try:
        return set(await exchange.load_markets())
    finally:
        await exchange.close()


def check_exchange_markets(loaded: LoadedConfig) -> str | None:
    """Refuse (ConfigError, exit 2) markets the exchange does not list, as `vigil run` does.
    None when the exchange could not be asked (the reason is printed)."""
    config = loaded.config
    try:
        known = asyncio.run(_exchange_markets(loaded))
    except ExchangeError as exc:
        hide = Secrets(url_credentials=url_credentials(config.exchange.base_url))
        reason = redact(" ".join(str(exc).split()), hide)
        print(
            f"error: markets not checked: {config.exchange.id} could not be asked for its "
            f"markets ({type(exc).__name__}: {reason}); the check could not be completed, "
            "try again when the exchange answers",
            file=sys.stderr,
        )
        return None
    where = f"on {config.exchange.id}"
    check_markets(config, known, where)
    return f"markets checked {where} ({len(known)} spot markets listed)"


def cmd_config_check(loaded: LoadedConfig, data: Path | None, ask_exchange: bool) -> int:
    """`vigil config check`: the config's own checks (done while loading it), then the
    markets when asked to. A refusal raises (exit 2); an exchange that cannot be asked
    ends the check with exit 1 before anything says OK."""
    lines = []
    if data is not None:
        lines.append(check_data_markets(loaded, data))
    if ask_exchange:
        line = check_exchange_markets(loaded)
        if line is None:
            return exit_codes.FAILURE
        lines.append(line)
    rc = ops.cmd_config_check(loaded)
    print("; ".join(lines) or NOT_CHECKED)
    return rc
