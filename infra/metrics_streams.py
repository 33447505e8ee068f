"""WebSocket stream metrics: the streams' state, lag, message rate, reconnects, backfills and
stale symbols, read from their StreamStats (infra/streams.py) at every scrape, and the latency
of exits fired from streamed prices. `infra.metrics.Metrics` registers them on the daemon's
registry only when streams run (see docs/metrics.md).
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

STATES = ("starting", "connecting", "streaming", "rest_fallback", "refused", "stopped")


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry, stats: Any) -> None:
        r = registry
        up = Gauge("vigil_stream_state", "1 for the streams' current state.", ["state"], registry=r)
        for st in STATES:
            up.labels(st).set_function(functools.partial(_is_state, stats, st))
        for name, doc, fn in (
            ("vigil_stream_lag_seconds", "Receive time minus the venue's event time, last "
             "message.", lambda: stats.lag_ms / 1000.0),
            ("vigil_stream_messages_per_second", "Stream messages per second (last 5 s).",
             lambda: stats.rate),
            ("vigil_stream_messages", "Stream messages received since start.",
             lambda: float(stats.messages)),
            ("vigil_stream_reconnects", "Stream reconnects since start.",
             lambda: float(stats.reconnects)),
            ("vigil_stream_backfills", "Symbols backfilled over REST after a reconnect or gap.",
             lambda: float(stats.backfills)),
            ("vigil_stream_stale_symbols", "Subscribed symbols with no message for "
             "stream.staleness_seconds.", lambda: float(stats.stale_count)),
        ):  # fmt: skip
            Gauge(name, doc, registry=r).set_function(fn)
        self.fast_exit_seconds = Histogram(
            "vigil_fast_exit_seconds",
            "From a streamed price that fires an exit rule to the exit order's answer.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )


def _is_state(stats: Any, state: str) -> float:
    return float(stats.state == state)
