"""`vigil alert test`: one test message to every configured alert route, each reported."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from infra.alerts import apprise_sender, scheme
from infra.config_loader import LoadedConfig
from infra.secrets import ENV_ALERT_URLS, ENV_ALERT_URLS_ESCALATE, load_secrets
from runner import __version__, exit_codes

SEND_TIMEOUT_S = 30.0


def add_alert_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    alert = sub.add_parser("alert", help="alert routes", epilog=epilog)
    asub = alert.add_subparsers(dest="sub", required=True, metavar="ACTION")
    test = asub.add_parser(
        "test",
        help="send a test alert to every configured route; print delivered/failed per route",
        epilog=epilog + " Exit 0 when every route delivered, 1 when any failed or none is set.",
        description=f"Sends one info-level test message to each URL in {ENV_ALERT_URLS} "
        f"(route primary) and {ENV_ALERT_URLS_ESCALATE} (route escalate), one URL at a time, "
        "and prints the outcome per URL by position and scheme (never the URL itself).",
    )
    common(test)
    test.add_argument(
        "--timeout",
        type=float,
        default=SEND_TIMEOUT_S,
        help=f"seconds to wait for each route (default {SEND_TIMEOUT_S:g})",
    )


@dataclass(frozen=True, slots=True)
class RouteResult:
    route: str
    index: int
    scheme: str
    delivered: bool
    detail: str

    def line(self) -> str:
        outcome = "delivered" if self.delivered else f"FAILED ({self.detail})"
        return f"{self.route} #{self.index} {self.scheme}://: {outcome}"


async def _send_one(route: str, index: int, url: str, body: str, timeout: float) -> RouteResult:
    name = scheme(url)
    try:
        send = apprise_sender([url], route=route)
    except ConfigError:
        return RouteResult(route, index, name, False, "apprise does not accept this URL")
    try:
        ok = await asyncio.wait_for(send("vigil test alert", body, "info"), timeout)
    except TimeoutError:
        return RouteResult(route, index, name, False, f"no answer within {timeout:g} s")
    except Exception as exc:  # only the type: messages may quote the URL
        return RouteResult(route, index, name, False, type(exc).__name__)
    return RouteResult(route, index, name, ok, "" if ok else "the service reported failure")


async def send_test_alerts(
    routes: dict[str, tuple[str, ...]], body: str, timeout: float
) -> list[RouteResult]:
    jobs = [
        _send_one(route, i, url, body, timeout)
        for route, urls in routes.items()
        for i, url in enumerate(urls, start=1)
    ]
    return list(await asyncio.gather(*jobs))


def cmd_alert_test(loaded: LoadedConfig, timeout: float) -> int:
    secrets = load_secrets(os.environ)
    routes = {"primary": secrets.alert_urls, "escalate": secrets.escalate_urls}
    if not any(routes.values()):
        print(
            f"no alert routes configured: set {ENV_ALERT_URLS} (and optionally "
            f"{ENV_ALERT_URLS_ESCALATE}) in the daemon's environment"
        )
        return exit_codes.FAILURE
    if not loaded.config.alerts.enabled:
        print("note: alerts.enabled is false: the daemon sends none of these; testing anyway")
    body = (
        f"Test alert from vigil {__version__} on {socket.gethostname()} "
        f"(config {loaded.config_hash}). If you read this, the route works."
    )
    results = asyncio.run(send_test_alerts(routes, body, timeout))
    for r in results:
        print(r.line())
    failed = sum(1 for r in results if not r.delivered)
    print(f"{len(results) - failed} delivered, {failed} failed")
    return exit_codes.FAILURE if failed else exit_codes.OK
