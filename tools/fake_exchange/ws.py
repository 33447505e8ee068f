"""Binance-compatible market streams of the fake exchange: kline, bookTicker and trade.

Served on the fake's own port: raw streams at /ws and /ws/<n> (events as they are) and
combined streams at /stream and /stream/<n> (each event wrapped as {"stream": ..., "data": ...});
`?streams=a/b` subscribes on connect, and {"method": "SUBSCRIBE", "params": [...], "id": N}
(UNSUBSCRIBE, LIST_SUBSCRIPTIONS) works on every connection, as on Binance. Prices come from the
fake's simulated market: a closed kline (x: true) for every candle the market clock closes, then
the next candle's first update (x: false); a bookTicker and a trade per symbol every tick.

Faults (POST /_control/stream): disconnect, stall for N seconds, duplicate the next N kline
batches, deliver the next two kline batches out of order, drop the next N candle closes (a gap),
and publish a price print (a trade and a bookTicker at a given price) for latency tests.
docs/fake_exchange.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from core.clock import timeframe_ms
from tools.fake_exchange.markets import ffmt

if TYPE_CHECKING:
    from tools.fake_exchange.server import FakeExchange

log = logging.getLogger("fake_exchange.ws")

DEFAULT_TICK_MS = 1000  # one bookTicker and one trade per symbol per second
WATCH_MS = 20  # how often the market clock is looked at for closed candles
MAX_STREAMS = 1024  # per connection, as on Binance


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    combined: bool
    subs: set[str] = field(default_factory=set)


@dataclass
class _Faults:
    stall_until: float = 0.0  # monotonic
    duplicate: int = 0  # kline batches still to send twice
    out_of_order: bool = False  # hold the next kline batch back until the one after it
    gap: int = 0  # candle closes still to drop


class StreamHub:
    def __init__(self, venue: FakeExchange, *, tick_ms: int = DEFAULT_TICK_MS) -> None:
        self.v = venue
        self.tick_ms = tick_ms
        self.conns: set[_Conn] = set()
        self.faults = _Faults()
        self.sent = 0
        self.trade_id = 0
        self.published: dict[str, float] = {}  # symbol -> epoch seconds of the last price print
        self._held: list[tuple[str, dict[str, Any]]] = []
        self._market_ms = 0  # read at start()
        self._tasks: list[asyncio.Task[None]] = []
        self._interval = next(
            (k for k in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "4h", "1d")
             if timeframe_ms(k) == venue.timeframe_ms),
            venue.timeframe,
        )  # fmt: skip

    # ---- lifecycle ----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        for path in ("/ws", "/ws/{n}", "/stream", "/stream/{n}"):
            app.router.add_get(path, self.handle)
        app.router.add_get("/_control/stream", self._c_state)
        app.router.add_post("/_control/stream", self._c_fault)

    def start(self) -> None:
        self._market_ms = self.v.market_ms
        self._tasks = [
            asyncio.create_task(self._watch_clock()),
            asyncio.create_task(self._ticker()),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        await self.disconnect()

    async def disconnect(self) -> int:
        conns, self.conns = list(self.conns), set()
        for c in conns:
            with contextlib.suppress(Exception):
                await c.ws.close(code=1001, message=b"fake: disconnect")
        return len(conns)

    # ---- connections --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        conn = _Conn(ws, combined=request.path.startswith("/stream"))
        pre = request.query.get("streams")
        if pre:
            conn.subs |= {s for s in pre.split("/") if s}
        self.conns.add(conn)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._command(conn, msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self.conns.discard(conn)
        return ws

    async def _command(self, conn: _Conn, text: str) -> None:
        try:
            req = json.loads(text)
            method, rid = req.get("method"), req.get("id")
            params = req.get("params") or []
        except (ValueError, AttributeError):
            await conn.ws.send_json({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
            return
        if method == "SUBSCRIBE":
            if len(conn.subs | set(params)) > MAX_STREAMS:
                err = {"code": 2, "msg": f"over {MAX_STREAMS} streams on one connection"}
                await conn.ws.send_json({"error": err, "id": rid})
                return
            conn.subs |= set(params)
            await conn.ws.send_json({"result": None, "id": rid})
        elif method == "UNSUBSCRIBE":
            conn.subs -= set(params)
            await conn.ws.send_json({"result": None, "id": rid})
        elif method == "LIST_SUBSCRIPTIONS":
            await conn.ws.send_json({"result": sorted(conn.subs), "id": rid})
        else:
            await conn.ws.send_json({"error": {"code": 1, "msg": "Unknown method"}, "id": rid})

    def _stalled(self) -> bool:
        return time.monotonic() < self.faults.stall_until

    async def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """Each (stream name, event) to every connection subscribed to it, in order."""
        if self._stalled() or not batch:
            return
        for conn in list(self.conns):
            out = [
                json.dumps({"stream": name, "data": ev} if conn.combined else ev)
                for name, ev in batch
                if name in conn.subs
            ]
            for text in out:
                try:
                    await conn.ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    self.conns.discard(conn)
                    break
                self.sent += 1

    # ---- what is published ------------------------------------------------------------------

    def _kline(self, sym: str, row: tuple[Any, ...], closed: bool) -> tuple[str, dict[str, Any]]:
        ts, o, h, lo, c, v = row
        sid = self.v.specs[sym].id
        k = {
            "t": ts, "T": ts + self.v.timeframe_ms - 1, "s": sid, "i": self._interval,
            "f": 0, "L": 0, "o": ffmt(o), "c": ffmt(c), "h": ffmt(h), "l": ffmt(lo),
            "v": ffmt(v), "n": max(1, int(v)), "x": closed, "q": ffmt(v * c),
            "V": ffmt(v / 2), "Q": ffmt(v * c / 2), "B": "0",
        }  # fmt: skip
        ev = {"e": "kline", "E": int(time.time() * 1000), "s": sid, "k": k}
        return f"{sid.lower()}@kline_{self._interval}", ev

    def _price(self, sym: str, bid: str, ask: str, last: str) -> list[tuple[str, dict[str, Any]]]:
        sid = self.v.specs[sym].id
        now = int(time.time() * 1000)
        self.trade_id += 1
        book = {"u": self.trade_id, "s": sid, "b": bid, "B": "1.0", "a": ask, "A": "1.0"}
        trade = {
            "e": "trade", "E": now, "s": sid, "t": self.trade_id, "p": last, "q": "0.001",
            "T": now, "m": False, "M": True,
        }  # fmt: skip
        return [(f"{sid.lower()}@bookTicker", book), (f"{sid.lower()}@trade", trade)]

    def closed_batch(self, prev_ms: int, now_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Closed klines of the candles that closed in (prev_ms, now_ms], by open time then
        symbol, then each symbol's next candle as it opens."""
        tf = self.v.timeframe_ms
        rows: list[tuple[int, str, tuple[Any, ...]]] = []
        last: dict[str, tuple[Any, ...]] = {}
        for sym in self.v.specs:
            for r in self.v.feed.klines(sym, tf, now_ms, start_ms=prev_ms - tf + 1, end_ms=None,
                                        limit=1000):  # fmt: skip
                if r[0] + tf <= now_ms and r[0] + tf > prev_ms:
                    rows.append((r[0], sym, r))
                    last[sym] = r
        rows.sort(key=lambda x: (x[0], x[1]))
        out = [self._kline(sym, r, True) for _, sym, r in rows]
        for sym, r in sorted(last.items()):
            c = r[4]
            out.append(self._kline(sym, (r[0] + tf, c, c, c, c, 0.0), False))
        return out

    async def _publish_closed(self, prev_ms: int, now_ms: int) -> None:
        f = self.faults
        if f.gap > 0:
            f.gap -= max(1, (now_ms - prev_ms) // self.v.timeframe_ms)
            return
        batch = self.closed_batch(prev_ms, now_ms)
        if f.out_of_order:
            if not self._held:
                self._held = batch
                return
            batch, self._held, f.out_of_order = batch + self._held, [], False
        if f.duplicate > 0:
            f.duplicate -= 1
            batch = batch + batch
        await self._send(batch)

    async def _watch_clock(self) -> None:
        while True:
            await asyncio.sleep(WATCH_MS / 1000)
            now = self.v.market_ms
            if now != self._market_ms:
                prev, self._market_ms = self._market_ms, now
                try:
                    await self._publish_closed(prev, now)
                except Exception:
                    log.exception("fake exchange: kline publishing failed")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_ms / 1000)
            if not self.conns or self._stalled():
                continue
            try:
                syms = list(self.v.specs)
                board = await self.v.sim.fetch_quotes(syms)
                batch: list[tuple[str, dict[str, Any]]] = []
                for s in syms:
                    q = board.get(s)
                    if q is not None:
                        batch += self._price(s, str(q.bid), str(q.ask), str(q.last))
                await self._send(batch)
            except Exception:
                log.exception("fake exchange: ticker publishing failed")

    async def publish_price(self, symbol: str, price: str) -> float:
        """One trade and one bookTicker at `price` (a print: the sim's book does not move).
        Returns the publish time (epoch seconds) also kept in `published`."""
        sym = self.v._symbol(symbol)
        t = time.time()
        self.published[sym] = t
        await self._send(self._price(sym, price, price, price))
        return t

    # ---- control ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "connections": len(self.conns),
            "subscriptions": sum(len(c.subs) for c in self.conns),
            "sent": self.sent,
            "stalled": self._stalled(),
            "gap": self.faults.gap,
            "duplicate": self.faults.duplicate,
            "out_of_order": self.faults.out_of_order,
            "published": dict(self.published),
        }

    async def fault(self, body: dict[str, Any]) -> dict[str, Any]:
        action = str(body.get("action", ""))
        if action == "disconnect":
            return {"disconnected": await self.disconnect()}
        if action == "stall":
            seconds = float(body.get("seconds", 5))
            if not 0 <= seconds <= 3600:
                raise ValueError("stall seconds must be within 0..3600")
            self.faults.stall_until = time.monotonic() + seconds
        elif action == "duplicate":
            self.faults.duplicate += int(body.get("batches", 1))
        elif action == "out_of_order":
            self.faults.out_of_order = True
        elif action == "gap":
            self.faults.gap += int(body.get("candles", 1))
        elif action == "price":
            t = await self.publish_price(str(body["symbol"]), str(body["price"]))
            return {"published": t}
        elif action == "clear":
            self.faults = _Faults()
        else:
            raise ValueError(
                f"unknown stream action {action!r}: disconnect, stall, duplicate, "
                "out_of_order, gap, price or clear"
            )
        return self.describe()

    async def _c_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    async def _c_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError as e:
            raise ValueError(f"the body is not JSON ({e})") from e
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return web.json_response(await self.fault(body))
