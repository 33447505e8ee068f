from __future__ import annotations

import socket
from pathlib import Path

from infra.systemd import SystemdNotifier


def test_no_socket_is_a_noop() -> None:
    n = SystemdNotifier({})
    assert not n.enabled
    assert n.notify("READY=1") is False
    n.pet()


def test_messages_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(path))
    srv.settimeout(2)
    try:
        n = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000"})
        assert n.enabled and n.watchdog_interval_s == 1.0
        n.ready("trading")
        assert srv.recv(100) == b"READY=1\nSTATUS=trading"
        n.pet()
        assert srv.recv(100) == b"WATCHDOG=1"
        n.pet()  # within the interval: nothing sent
        n.stopping()
        assert srv.recv(100) == b"STOPPING=1"
    finally:
        srv.close()
