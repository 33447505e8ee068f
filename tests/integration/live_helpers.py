"""The real daemon against the fake Binance exchange: workspaces, processes and probes.

The fake runs in the test's own event loop (`watched_fake`), so a test can read its state and
switch faults without HTTP, and it outlives any daemon it serves (kill -9 and restart). The
daemon is `python -m runner.cli run` in a child process whose output goes to files (a full
pipe would stall it). Every wait has a timeout and every process is killed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from core.models import Order
from tools.drills.harness import RESTING_ENV as RESTING_ENV
from tools.drills.harness import TRADE_ENV as TRADE_ENV
from tools.drills.harness import DaemonFiles, daemon_env, read_records
from tools.fake_exchange import FakeExchange

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START_USDT = Decimal(10_000)
API_KEY = "live-fake-key-0123456789abcdef"
API_SECRET = "live-fake-secret-0123456789abcdef"

# TRADE_ENV (trade within seconds on 1s candles) and RESTING_ENV (post-only buys that rest)
# are shared with the drills: tools/drills/harness.py.


# --------------------------------------------------------------------------- the fake


@dataclass(frozen=True, slots=True)
class Accepted:
    """An order the fake accepted: when, and whether its order_intent was already durable."""

    client_order_id: str
    symbol: str
    wall_ms: int
    intent_logged: bool


class WatchedFake(FakeExchange):
    """The fake exchange, noting for every accepted order whether the daemon's audit log
    already held its order_intent at that moment (audit-before-send, seen from the venue),
    and able to hold its market clock still so balances stop moving."""

    def __init__(self, *, audit_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.audit_dir = audit_dir
        self.accepted: list[Accepted] = []
        self.frozen = False

    def register_order(self, order: Order, quote_qty: Decimal) -> Any:
        logged = order.client_order_id in intent_ids(self.audit_dir)
        self.accepted.append(
            Accepted(order.client_order_id, order.symbol, time.time_ns() // 1_000_000, logged)
        )
        return super().register_order(order, quote_qty)

    def advance(self, candles: int = 1) -> dict[str, Any]:
        if self.frozen:  # no candle, no fill: the account holds still
            return {"market_ms": self.market_ms, "fed": 0, "fills": 0, "exhausted": False}
        return super().advance(candles)


@asynccontextmanager
async def watched_fake(audit_dir: Path, **overrides: Any) -> AsyncIterator[WatchedFake]:
    """A WatchedFake on a free loopback port with one 1s candle per wall second."""
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
    fake = WatchedFake(audit_dir=audit_dir, **kwargs)
    await asyncio.wait_for(fake.start(), 10)
    try:
        yield fake
    finally:
        await asyncio.wait_for(fake.stop(), 15)


# --------------------------------------------------------------------------- audit and state


def intent_ids(audit_dir: Path) -> set[str]:
    return {
        r["data"]["client_order_id"] for r in read_records(audit_dir) if r["kind"] == "order_intent"
    }


def cycles(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["data"] for r in records if r["kind"] == "cycle"]


def down_reason(reason: str | None) -> bool:
    return bool(reason) and (
        str(reason).startswith("EXCHANGE_DOWN") or str(reason).startswith("MISSING_DATA")
    )


@dataclass
class DbView:
    cash: Decimal | None
    positions: dict[str, Decimal]
    orders: dict[str, dict[str, Any]]
    fills: dict[str, dict[str, Any]]


def read_db(path: Path) -> DbView:
    """state.db read-only, as plain rows."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    con.row_factory = sqlite3.Row
    try:
        kv = {r["key"]: json.loads(r["value"]) for r in con.execute("SELECT key, value FROM kv")}
        positions = {
            r["symbol"]: Decimal(r["quantity"])
            for r in con.execute("SELECT symbol, quantity FROM positions")
        }
        orders = {r["client_order_id"]: dict(r) for r in con.execute("SELECT * FROM orders")}
        fills = {r["fill_id"]: dict(r) for r in con.execute("SELECT * FROM fills")}
    finally:
        con.close()
    cash = kv.get("cash")
    return DbView(None if cash is None else Decimal(str(cash)), positions, orders, fills)


def fake_totals(state: Mapping[str, Any]) -> dict[str, Decimal]:
    """free + locked per asset, from /_control/state."""
    return {a: Decimal(b["free"]) + Decimal(b["locked"]) for a, b in state["balances"].items()}


# --------------------------------------------------------------------------- the daemon


@dataclass
class LiveWorkspace(DaemonFiles):
    env: dict[str, str] = field(default_factory=dict)

    async def vigil(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        """A short `vigil` command (audit verify, ...) run to completion: (rc, out, err).
        Async, so the fake in this event loop keeps serving meanwhile."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runner.cli",
            *args,
            "--config",
            str(self.config),
            cwd=ROOT,
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


def make_workspace(tmp: Path, url: str, *, mode: str = "PAPER", **extra: str) -> LiveWorkspace:
    config = tmp / "config"
    if not config.exists():
        shutil.copytree(ROOT / "config", config)
    data = tmp / "data"
    env = daemon_env(url, data, mode=mode, api_key=API_KEY, api_secret=API_SECRET)
    env.update(extra)
    return LiveWorkspace(root=tmp, config=config, data=data, env=env)


class Daemon:
    """One `vigil run` child process; stdout/stderr go to numbered files in the workspace."""

    def __init__(self, ws: LiveWorkspace, *, name: str = "daemon") -> None:
        self.ws = ws
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_path = ws.root / f"{name}.err"
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> Daemon:
        port_file = self.ws.data / "health" / "http_port"
        with contextlib.suppress(FileNotFoundError):
            port_file.unlink()  # a stale port from an earlier run must not be read
        with (
            open(self.ws.root / f"{self.name}.out", "wb") as out,
            open(self.stderr_path, "wb") as err,
        ):
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runner.cli",
                "run",
                "--config",
                str(self.ws.config),
                cwd=ROOT,
                env=self.ws.env,
                stdout=out,
                stderr=err,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait; the exit code (a kill after `timeout` fails the test)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
                raise AssertionError(
                    f"{self.name} ignored SIGTERM for {timeout}s:\n{self.stderr()[-3000:]}"
                ) from None
        await self._close_http()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL (no shutdown path at all) and reap."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)
        await self._close_http()

    async def _close_http(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def port(self, timeout: float = 30) -> int:
        path = self.ws.data / "health" / "http_port"
        await wait_until(lambda: path.exists() and path.read_text().strip() != "", timeout, self)
        return int(path.read_text().strip())

    async def get(self, route: str) -> tuple[int, str]:
        """GET /health, /metrics or /ready: (status, body)."""
        port = await self.port()
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with self._http.get(f"http://127.0.0.1:{port}{route}") as resp:
            return resp.status, await resp.text()

    async def health(self) -> tuple[int, dict[str, Any]]:
        status, body = await self.get("/health")
        return status, json.loads(body)


async def wait_until(
    pred: Callable[[], Any],
    timeout: float,
    daemon: Daemon | None = None,
    every: float = 0.05,
    what: str = "",
) -> Any:
    """Poll `pred` (sync or async) until truthy; fail with the daemon's log tail on timeout
    or when the daemon died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if daemon is not None and daemon.proc is not None and daemon.proc.returncode is not None:
            raise AssertionError(
                f"{daemon.name} exited ({daemon.proc.returncode}) while waiting for "
                f"{what or pred}:\n{daemon.stderr()[-3000:]}"
            )
        if time.monotonic() > deadline:
            tail = daemon.stderr()[-3000:] if daemon is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}\n{tail}")
        await asyncio.sleep(every)


@asynccontextmanager
async def running(ws: LiveWorkspace, *, name: str = "daemon") -> AsyncIterator[Daemon]:
    """A started daemon, SIGKILLed on the way out if the test did not stop it."""
    daemon = await Daemon(ws, name=name).start()
    try:
        yield daemon
    finally:
        await daemon.kill()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- shared checks


async def quiesce_and_stop(fake: WatchedFake, daemon: Daemon, ws: LiveWorkspace) -> int:
    """Hold the fake's market still (no candle, no fill), let the daemon reconcile twice,
    then SIGTERM it. Its exit code; the account is final once this returns."""
    fake.frozen = True
    seen = len(cycles(ws.records()))
    await wait_until(
        lambda: len(cycles(ws.records())) >= seen + 2, 15, daemon, what="two quiet cycles"
    )
    return await daemon.terminate()


def base_asset(symbol: str) -> str:
    return symbol.split("/")[0]


def account_problems(state: Mapping[str, Any], db: DbView) -> list[str]:
    """Where state.db and the fake disagree: cash vs USDT, positions vs base balances."""
    totals = fake_totals(state)
    out = []
    if db.cash != totals.get("USDT", Decimal(0)):
        out.append(f"cash: state.db {db.cash} vs fake USDT {totals.get('USDT')}")
    for sym in SYMBOLS:
        held = db.positions.get(sym, Decimal(0))
        have = totals.get(base_asset(sym), Decimal(0))
        if held != have:
            out.append(f"{sym}: state.db position {held} vs fake {base_asset(sym)} {have}")
    return out


def fill_problems(state: Mapping[str, Any], db: DbView, records: list[dict[str, Any]]) -> list[str]:
    """Every fill on the fake is booked once in state.db and in the audit log, against the
    client order id the fake has for it."""
    audit = {r["data"]["fill_id"]: r["data"] for r in records if r["kind"] == "fill"}
    out = []
    for f in state["fills"]:
        fid = str(f["id"])
        row = db.fills.get(fid)
        if row is None:
            out.append(f"fill {fid} ({f['clientOrderId']}) missing from state.db")
        elif row["client_order_id"] != f["clientOrderId"] or Decimal(row["amount"]) != Decimal(
            f["qty"]
        ):
            out.append(f"fill {fid}: state.db {row} vs fake {f}")
        if fid not in audit:
            out.append(f"fill {fid} ({f['clientOrderId']}) missing from the audit log")
    extra = set(db.fills) - {str(f["id"]) for f in state["fills"]}
    if extra:
        out.append(f"state.db holds fills the fake never made: {sorted(extra)}")
    n_audit = sum(1 for r in records if r["kind"] == "fill")
    if n_audit != len(audit):
        out.append(f"the audit log books some fill twice ({n_audit} records, {len(audit)} ids)")
    return out


def intent_problems(
    fake: WatchedFake, state: Mapping[str, Any], records: list[dict[str, Any]]
) -> list[str]:
    """Every order on the fake has exactly one order_intent, durable before the order arrived."""
    intents: dict[str, int] = {}
    for r in records:
        if r["kind"] == "order_intent":
            coid = r["data"]["client_order_id"]
            intents[coid] = intents.get(coid, 0) + 1
    out = []
    coids = [o["clientOrderId"] for o in state["orders"]]
    if len(coids) != len(set(coids)):
        out.append(f"client order ids repeat on the fake: {coids}")
    for coid in coids:
        if intents.get(coid) != 1:
            out.append(f"order {coid} on the fake has {intents.get(coid, 0)} order_intent records")
    for a in fake.accepted:
        if not a.intent_logged:
            out.append(f"order {a.client_order_id} reached the fake before its order_intent")
    return out
