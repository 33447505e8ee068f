"""Finding and asking the running daemon, for operator commands run from anywhere.

The daemon that runs with a configuration is found through that configuration's absolute
paths: its instance lock (`vigil.pid`, the pid) and `health/http_port` (the port it bound, which
may differ from http.port when that is 0). Its answer on GET /status is believed only when it
names the same pid, so a stale port file or another program on the port never passes for it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.lock import pid_alive
from infra.runtime_paths import ResolvedPaths
from infra.settings_sections import HttpSettings

HTTP_TIMEOUT_S = 1.0
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class Daemon:
    """A live vigil process holding the lock; `url` is None when it serves no HTTP (yet)."""

    pid: int
    url: str | None


def locked_pid(paths: ResolvedPaths) -> int | None:
    """The pid recorded in the instance lock, if that process is alive. A lock file we may not
    read raises PermissionError: "not running" would be a guess, not a fact."""
    try:
        info = json.loads(paths.lock_file.read_text())
        pid = int(info["pid"])
    except PermissionError:
        raise
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid_alive(pid) else None


def base_url(paths: ResolvedPaths, http: HttpSettings) -> str | None:
    if not http.enabled:
        return None
    try:
        port = int((paths.health_dir / "http_port").read_text().strip())
    except PermissionError:
        raise
    except (OSError, ValueError):
        return None
    host = _ANY_ADDRESS.get(http.host, http.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def get_json(url: str, route: str, timeout: float = HTTP_TIMEOUT_S) -> dict[str, Any] | None:
    """GET url+route as JSON, whatever the HTTP status (/health answers 503 while halted);
    None when nothing answers or the answer is not JSON."""
    try:
        with urllib.request.urlopen(url + route, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def find(paths: ResolvedPaths, http: HttpSettings) -> Daemon | None:
    """The daemon running on these paths, or None."""
    pid = locked_pid(paths)
    if pid is None:
        return None
    url = base_url(paths, http)
    if url is not None:
        status = get_json(url, "/status")
        if status is None or status.get("pid") != pid:
            url = None  # not up yet, or the port file is stale: not this daemon's voice
    return Daemon(pid, url)


def status(daemon: Daemon) -> dict[str, Any] | None:
    if daemon.url is None:
        return None
    facts = get_json(daemon.url, "/status")
    return facts if facts is not None and facts.get("pid") == daemon.pid else None


def wait_for(
    paths: ResolvedPaths,
    http: HttpSettings,
    pid: int,
    check: Callable[[dict[str, Any]], bool],
    timeout_s: float,
) -> dict[str, Any] | None:
    """Poll the daemon's /health until `check` holds; its last /health, or None on timeout.
    The URL is looked up on every try: a daemon still starting writes its port file late."""
    deadline = time.monotonic() + timeout_s
    while True:
        url = base_url(paths, http)
        health = get_json(url, "/health") if url is not None else None
        if health is not None and check(health):
            return health
        if time.monotonic() >= deadline or not pid_alive(pid):
            return None
        time.sleep(0.05)
