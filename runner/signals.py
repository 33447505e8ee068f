"""Signals that stop the daemon, and how."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

log = logging.getLogger("vigil.daemon")

# Signals that end the daemon the way SIGTERM does: new orders blocked, open ones canceled
# (loop.cancel_on_shutdown), state flushed, a shutdown record, the lock released. SIGHUP is
# a stop too, not a reload: restart the service to load a changed config.
STOP_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
)


def install_stop_signals(stop: asyncio.Event) -> None:
    """Every stop signal sets `stop`; a second one while shutting down changes nothing (the
    shutdown already under way finishes, and the exit code stays 0)."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.info("%s received while stopping; the shutdown continues", sig.name)
            return
        log.warning("%s received: stopping (cancel open orders, flush state)", sig.name)
        stop.set()

    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
