"""Alert metrics: what the notifier sent and which deliveries failed, per route.

Kept apart from infra/metrics.py so the alert path owns its own families; `Metrics` builds one
`AlertMetrics` on its registry and the notifier reports to it through two callbacks.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

ROUTES = ("primary", "escalate")
KINDS = ("alert", "repeat", "escalation", "reminder", "resolved")
LEVELS = ("info", "warning", "critical")


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "vigil_alerts",
            "Alert messages raised, by kind (alert, repeat, escalation, reminder, resolved) "
            "and level; counted whether or not any route is configured.",
            ["kind", "level"],
            registry=registry,
        )
        self.deliveries = Counter(
            "vigil_alert_deliveries",
            "Alert messages handed to a route (primary = VIGIL_ALERT_URLS, escalate = "
            "VIGIL_ALERT_URLS_ESCALATE) and delivered.",
            ["route"],
            registry=registry,
        )
        self.failures = Counter(
            "vigil_alert_delivery_failures",
            "Alert messages a route failed to deliver (refused, error or timeout); dropped.",
            ["route"],
            registry=registry,
        )
        # Every series exists from the start, so rate() and absent() behave on a fresh daemon.
        for kind in KINDS:
            for level in LEVELS:
                self.messages.labels(kind, level)
        for route in ROUTES:
            self.deliveries.labels(route)
            self.failures.labels(route)

    def alert(self, kind: str, level: str) -> None:
        if kind in KINDS and level in LEVELS:
            self.messages.labels(kind, level).inc()

    def delivery(self, route: str, delivered: bool) -> None:
        if route in ROUTES:
            (self.deliveries if delivered else self.failures).labels(route).inc()
