"""Shadow-mode metrics: how each shadowed order ended live and in the sim, the live fill's
slippage, its gap to the sim's, and the venue's acknowledgement latency.
Registered on the daemon's registry by `infra.metrics.Metrics` (see docs/metrics.md); fed one
`shadow_order` record at a time through the ShadowObserver hook (infra/exchange/shadow.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from infra.metrics_labels import KILL_BUCKETS, SLIPPAGE_BUCKETS, clean_label


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.orders = Counter(
            "vigil_shadow_orders",
            "Shadow mode: orders compared, by how they ended live and in the sim.",
            ["live_status", "sim_status"],
            registry=registry,
        )
        self.slippage = _bps_histogram(
            "vigil_shadow_slippage_bps",
            "Shadow mode: live fill price vs intended, basis points, positive = worse for us.",
            registry,
        )
        self.gap = _bps_histogram(
            "vigil_shadow_sim_vs_live_bps",
            "Shadow mode: live slippage minus the sim's for the same order, basis points.",
            registry,
        )
        self.ack = Histogram(
            "vigil_shadow_ack_latency_seconds",
            "Shadow mode: order submit to acknowledgement.",
            buckets=KILL_BUCKETS,
            registry=registry,
        )

    def on_shadow(self, data: Mapping[str, Any]) -> None:
        """One call per `shadow_order` record, with its data."""
        live, sim = data.get("live") or {}, data.get("sim") or {}
        self.orders.labels(
            clean_label(str(live.get("status", "?"))), clean_label(str(sim.get("status", "?")))
        ).inc()
        side, kind = (
            clean_label(str(data.get("side", "?"))),
            clean_label(str(data.get("type", "?"))),
        )
        for value, hist in (
            (data.get("slippage_bps"), self.slippage),
            (data.get("sim_vs_live_bps"), self.gap),
        ):
            if value is not None:
                hist.labels(side, kind).observe(float(value))
        ack = live.get("ack_latency_ms")
        if ack is not None:
            self.ack.observe(ack / 1000.0)


def _bps_histogram(name: str, doc: str, registry: CollectorRegistry) -> Histogram:
    """A basis-point histogram per order side and type."""
    return Histogram(name, doc, ["side", "type"], buckets=SLIPPAGE_BUCKETS, registry=registry)
