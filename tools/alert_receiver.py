"""A local HTTP endpoint that receives alerts the way a webhook service would: apprise's
json:// route POSTs {"title", "message", "type", ...} to it. Tests and drills point
VIGIL_ALERT_URLS at `receiver.url("primary")` and read what arrived. Loopback only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Received:
    route: str  # the first path segment: json://127.0.0.1:PORT/<route>/...
    title: str
    message: str
    type: str  # apprise's notify type: info, success, warning, failure


class AlertReceiver:
    def __init__(self, *, fail_routes: frozenset[str] = frozenset()) -> None:
        self.received: list[Received] = []
        self.fail_routes = fail_routes  # these answer 500, for delivery-failure tests
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> AlertReceiver:
        app = web.Application()
        app.router.add_post("/{route}", self._handle)
        app.router.add_post("/{route}/{rest:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, route: str, token: str = "") -> str:
        """The apprise URL for `route` (a token, if given, rides in the path like a webhook's)."""
        return f"json://127.0.0.1:{self.port}/{route}" + (f"/{token}" if token else "")

    def titles(self, route: str) -> list[str]:
        return [r.title for r in self.received if r.route == route]

    async def _handle(self, request: web.Request) -> web.Response:
        route = request.match_info["route"]
        try:
            body: Any = json.loads(await request.text())
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        self.received.append(
            Received(
                route,
                str(body.get("title", "")),
                str(body.get("message", "")),
                str(body.get("type", "")),
            )
        )
        if route in self.fail_routes:
            return web.Response(status=500, text="failing on purpose")
        return web.json_response({"ok": True})
