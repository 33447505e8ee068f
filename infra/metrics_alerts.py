"""Alert metrics: what the notifier sent and which deliveries failed, per route; the API
key's issue date and maximum age (the rotation alert's inputs).

Kept apart from infra/metrics.py so the alert path owns its own families; `Metrics` builds one
`AlertMetrics` on its registry and the notifier reports to it through two callbacks.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

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
        self.key_issued = Gauge(
            "vigil_api_key_issued_timestamp_seconds",
            "VIGIL_API_KEY_ISSUED as UTC epoch seconds; 0 when not set.",
            registry=registry,
        )
        self.key_max_age = Gauge(
            "vigil_api_key_max_age_seconds",
            "checks.api_key_max_age_days in seconds: rotate the key before issued + this.",
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

    def set_key_age(self, issued_ms: int | None, max_age_days: int) -> None:
        self.key_issued.set(0 if issued_ms is None else issued_ms / 1000)
        self.key_max_age.set(max_age_days * 86_400)
