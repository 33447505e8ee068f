"""systemd notifications (sd_notify) without a dependency: a datagram to $NOTIFY_SOCKET.

READY=1 once the daemon serves /health (before it reaches the exchange: a venue that is down
at start must not become a start timeout), WATCHDOG=1 from the loop and while it waits for the
venue, STOPPING=1 on shutdown. With no NOTIFY_SOCKET (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class SystemdNotifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        self._addr = addr or None
        usec = env.get("WATCHDOG_USEC", "")
        # Pet at a third of the timeout, as sd_watchdog_enabled(3) recommends at most half.
        self.watchdog_interval_s = int(usec) / 3e6 if usec.isdigit() and int(usec) > 0 else None
        self._last_pet = 0.0

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def notify(self, message: str) -> bool:
        if self._addr is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._addr)
                sock.sendall(message.encode())
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def pet(self) -> None:
        """WATCHDOG=1, at most once per interval however often it is called."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_pet >= self.watchdog_interval_s:
            self._last_pet = now
            self.notify("WATCHDOG=1")
