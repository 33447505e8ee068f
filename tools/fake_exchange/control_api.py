"""The control routes of the fake exchange (/_control/...): the admin hooks of `FakeExchange`
(advance the market clock, faults, balances, symbol status, reset, state) over HTTP, for
ControlClient and the `python -m tools.fake_exchange` process. A bad body raises ValueError or
KeyError, which the request gate (request_gate.RequestGate) answers with a 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tools.fake_exchange.faults import parse_faults

if TYPE_CHECKING:
    from tools.fake_exchange.server import FakeExchange


class ControlApi:
    def __init__(self, venue: FakeExchange) -> None:
        self.v = venue

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/_control/state", self._c_state)
        r.add_post("/_control/advance", self._c_advance)
        r.add_get("/_control/faults", self._c_faults)
        r.add_post("/_control/faults", self._c_add_faults)
        r.add_delete("/_control/faults", self._c_clear_faults)
        r.add_post("/_control/reset", self._c_reset)
        r.add_post("/_control/balance", self._c_balance)
        r.add_post("/_control/status", self._c_status)
        r.add_post("/_control/clock", self._c_clock)
        r.add_post("/_control/book", self._c_book)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.body_exists:
            return {}
        try:
            body = await request.json()
        except ValueError as e:
            raise ValueError(f"the body is not JSON ({e})") from e
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def _c_state(self, request: web.Request) -> web.Response:
        return web.json_response(await self.v.state())

    async def _c_advance(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        return web.json_response(self.v.advance(int(body.get("candles", 1))))

    async def _c_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": self.v.faults.describe()})

    async def _c_add_faults(self, request: web.Request) -> web.Response:
        specs = parse_faults(await self._body(request))
        return web.json_response({"added": [self.v.add_fault(s) for s in specs]})

    async def _c_clear_faults(self, request: web.Request) -> web.Response:
        self.v.clear_faults()
        return web.json_response({"faults": []})

    async def _c_reset(self, request: web.Request) -> web.Response:
        self.v.reset()
        return web.json_response({"market_ms": self.v.market_ms})

    async def _c_balance(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.v.set_balance(str(body["asset"]), str(body["free"]))
        return web.json_response({"asset": body["asset"], "free": str(body["free"])})

    async def _c_status(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.v.set_status(str(body["symbol"]), str(body["status"]))
        return web.json_response({"symbol": body["symbol"], "status": body["status"]})

    async def _c_clock(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.v.set_clock_skew(int(body["skew_ms"]))
        return web.json_response({"skew_ms": self.v.clock_skew_ms})

    async def _c_book(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.v.set_book_scale(str(body["symbol"]), str(body["scale"]))
        return web.json_response({"symbol": body["symbol"], "scale": str(body["scale"])})
