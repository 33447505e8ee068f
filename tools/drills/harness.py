"""A workspace for one drill: the fake exchange in this event loop, a temporary data directory,
the operator's config copied into it, and `vigil` child processes run like an operator would.
Shared with tests/integration/live_helpers.py (TRADE_ENV, RESTING_ENV). Every wait has a
timeout and every process is killed on the way out; the directory is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tools.fake_exchange import FakeExchange

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START_USDT = Decimal(10_000)
API_KEY = "drill-fake-key-0123456789abcdef"
API_SECRET = "drill-fake-secret-0123456789abcdef"

# The daemon's defaults are meant for 5m candles and patience: on a few minutes of synthetic
# 1s candles it would rarely trade. These overrides make it trade within seconds:
TRADE_ENV: dict[str, str] = {
    # a trigger fires on most candles: RSI below 49 or any positive 12-bar return ...
    "VIGIL_TRIGGERS__RSI_REVERSION__OVERSOLD": "49",
    "VIGIL_TRIGGERS__MOMENTUM__MIN_RETURN_PCT": "0.0001",
    # ... and one weak trigger is enough for an entry, in any regime but a crash;
    "VIGIL_STRATEGIES__RULES__PARAMS__MIN_SCORE": "0.01",
    "VIGIL_STRATEGIES__RULES__PARAMS__REGIMES": '["bull", "chop", "bear"]',
    "VIGIL_STRATEGIES__RULES__BUDGET__MAX_AT_RISK_PCT": "20",
    # a random walk at 0.3% per bar drifts 5% over the 288-bar drawdown lookback: without
    # these the regime sits in bear/crash and scales entries to nothing;
    "VIGIL_REGIME__BEAR_DRAWDOWN_PCT": "60",
    "VIGIL_REGIME__CRASH_DRAWDOWN_PCT": "80",
    "VIGIL_REGIME__CRASH_ATR_PCT": "50",
    "VIGIL_REGIME__MULTIPLIERS__CHOP": "1",
    "VIGIL_REGIME__MULTIPLIERS__BEAR": "1",
    # positions close within seconds (tight stop / take profit), so both sides trade;
    "VIGIL_EXITS__STOP_LOSS_PCT": "-0.1",
    "VIGIL_EXITS__TAKE_PROFIT_PCT": "0.1",
    "VIGIL_EXITS__TRAILING_STOP_PCT": "0.1",
    "VIGIL_EXITS__TRAILING_ACTIVATION_PCT": "0.05",
    "VIGIL_EXITS__MAX_HOLDING_MINUTES": "1",
    # no cooldowns, and a resting entry that has not filled is replaced after a few seconds;
    "VIGIL_RISK__COOLDOWN_AFTER_FILL_MINUTES": "0",
    "VIGIL_RISK__COOLDOWN_AFTER_STOP_MINUTES": "0",
    "VIGIL_EXECUTION__ORDER_TTL_SECONDS": "5",
    # breakers tripped by the fault tests clear a few seconds after the fault ends.
    "VIGIL_BREAKERS__CLEAR_AFTER_SECONDS": "3",
}

# Post-only buys this far below the market rest on the book instead of filling.
RESTING_ENV: dict[str, str] = {
    "VIGIL_EXECUTION__LIMIT_OFFSET_BPS": "300",
    "VIGIL_EXECUTION__ORDER_TTL_SECONDS": "600",
}


def fake_kwargs(**overrides: Any) -> dict[str, Any]:
    """The fake's settings for drills and tests: three symbols, one 1s candle per second."""
    kwargs: dict[str, Any] = {
        "symbols": list(SYMBOLS),
        "balances": {"USDT": START_USDT},
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "timeframe": "1s",
        "auto_advance_ms": 1000,
        "warmup_candles": 450,
        "synthetic_bars": 4000,
        "weight_limit": 60_000,
    }
    kwargs.update(overrides)
    return kwargs


def daemon_env(url: str, data: Path, *, mode: str, api_key: str, api_secret: str) -> dict[str, str]:
    """The environment of a daemon trading `SYMBOLS` on 1s candles against the fake at `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    symbols = json.dumps(list(SYMBOLS))
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "VIGIL_PATHS__DATA_DIR": str(data),
            "VIGIL_HTTP__PORT": "0",
            "VIGIL_TIMEFRAME": "1s",
            "VIGIL_LOOP__INTERVAL_SECONDS": "1",
            "VIGIL_LOOP__JITTER_PCT": "0",
            "VIGIL_EXCHANGE__BASE_URL": url,
            "VIGIL_EXCHANGE__TIMEOUT_MS": "3000",
            # the default 1200 throttles one-second cycles heavily, by design
            "VIGIL_EXCHANGE__WEIGHT_PER_MINUTE": "60000",
            "VIGIL_UNIVERSE__SYMBOLS": symbols,
            # 24h volume needs a day of 1s candles: core symbols skip the volume rank
            "VIGIL_UNIVERSE__CORE_SYMBOLS": symbols,
            "VIGIL_MODE": mode,
            # no NTP: the clock check asks the fake's /api/v3/time only (and nothing here
            # reaches beyond 127.0.0.1)
            "VIGIL_CLOCK__NTP_SERVERS": "[]",
            **TRADE_ENV,
        }
    )
    if mode == "LIVE":
        env.update(
            {
                "VIGIL_READ_ONLY": "false",
                "VIGIL_EXCHANGE__LIVE_CONFIRM": "binance",
                "VIGIL_API_KEY": api_key,
                "VIGIL_API_SECRET": api_secret,
            }
        )
    return env


class DrillFake(FakeExchange):
    """The fake exchange, able to hold its market clock still (no candle, no fill) so the
    account stops moving before it is compared with the daemon's books."""

    frozen = False

    def advance(self, candles: int = 1) -> dict[str, Any]:
        if self.frozen:
            return {"market_ms": self.market_ms, "fed": 0, "fills": 0, "exhausted": False}
        return super().advance(candles)


class DrillFailed(AssertionError):
    """A drill's expectation did not hold; the message says what was seen."""


def read_records(audit_dir: Path) -> list[dict[str, Any]]:
    """Every complete audit record so far (a line being written is skipped)."""
    out: list[dict[str, Any]] = []
    for f in sorted(audit_dir.glob("audit-*.jsonl")):
        try:
            text = f.read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


@dataclass
class DaemonFiles:
    """Where a daemon started in a temporary workspace keeps its files (drills and tests)."""

    root: Path
    config: Path
    data: Path

    @property
    def audit_dir(self) -> Path:
        return self.data / "audit"

    @property
    def state_db(self) -> Path:
        return self.data / "state.db"

    @property
    def kill_file(self) -> Path:
        return self.data / "KILL_SWITCH"

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.audit_dir)


@dataclass
class Site(DaemonFiles):
    fake: DrillFake
    env: dict[str, str] = field(default_factory=dict)

    def cycles(self) -> list[dict[str, Any]]:
        return [r["data"] for r in self.records() if r["kind"] == "cycle"]

    async def vigil(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """A `vigil` command run to completion from the workspace: (rc, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runner.cli",
            *args,
            "--config",
            str(self.config),
            cwd=self.root,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    def daemon(self, name: str = "daemon") -> Daemon:
        return Daemon(self, name)


class Daemon:
    """One `vigil run` child process; its output goes to files in the workspace."""

    def __init__(self, site: Site, name: str) -> None:
        self.site = site
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_path = site.root / f"{name}.err"

    async def start(self) -> Daemon:
        with contextlib.suppress(FileNotFoundError):
            (self.site.data / "health" / "http_port").unlink()
        with (
            open(self.site.root / f"{self.name}.out", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runner.cli",
                "run",
                "--config",
                str(self.site.config),
                cwd=self.site.root,
                env=self.site.env,
                stdout=out,
                stderr=err,
            )
        return self

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise DrillFailed(f"{self.name} still running after {timeout:g} s") from None

    async def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
                raise DrillFailed(f"{self.name} ignored SIGTERM for {timeout:g} s") from None
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def health(self) -> dict[str, Any] | None:
        """The daemon's /health JSON, or None while it does not answer."""
        import aiohttp

        try:
            port = int((self.site.data / "health" / "http_port").read_text())
            timeout = aiohttp.ClientTimeout(total=2)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(f"http://127.0.0.1:{port}/health") as resp,
            ):
                data: dict[str, Any] = await resp.json()
                return data
        except (OSError, ValueError, aiohttp.ClientError, TimeoutError):
            return None

    async def kill(self) -> None:
        """SIGKILL (no shutdown path at all) and reap."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)


async def wait_until(
    pred: Callable[[], Any],
    timeout: float,
    daemon: Daemon | None = None,
    what: str = "",
    every: float = 0.05,
) -> float:
    """Poll `pred` (sync or async) until truthy; the seconds it took. Fails with the daemon's
    log tail on timeout or when the daemon died meanwhile."""
    t0 = time.monotonic()
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - t0
        if daemon is not None and daemon.returncode is not None:
            raise DrillFailed(
                f"{daemon.name} exited ({daemon.returncode}) while waiting for {what}:\n"
                f"{daemon.stderr()[-1500:]}"
            )
        if time.monotonic() - t0 > timeout:
            tail = daemon.stderr()[-1500:] if daemon is not None else ""
            raise DrillFailed(f"timed out after {timeout:g} s waiting for {what}\n{tail}")
        await asyncio.sleep(every)


@asynccontextmanager
async def site(
    config: Path, *, mode: str = "LIVE", env: dict[str, str] | None = None, **fake: Any
) -> AsyncIterator[Site]:
    """A fresh temporary workspace with `config` copied in and a fake exchange serving it."""
    root = Path(tempfile.mkdtemp(prefix="vigil-drill-"))
    exchange = DrillFake(**fake_kwargs(**fake))
    await asyncio.wait_for(exchange.start(), 10)
    try:
        shutil.copytree(config, root / "config")
        data = root / "data"
        full_env = daemon_env(exchange.url, data, mode=mode, api_key=API_KEY, api_secret=API_SECRET)
        full_env.update(env or {})
        yield Site(root, root / "config", data, exchange, full_env)
    finally:
        await asyncio.wait_for(exchange.stop(), 15)
        shutil.rmtree(root, ignore_errors=True)


def held(state: dict[str, Any]) -> dict[str, Decimal]:
    """Base-asset totals (free + locked) per symbol, from the fake's state."""
    bal = {a: Decimal(b["free"]) + Decimal(b["locked"]) for a, b in state["balances"].items()}
    return {s: bal.get(s.split("/")[0], Decimal(0)) for s in SYMBOLS}
