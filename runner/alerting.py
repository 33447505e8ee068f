"""Operator alerts for the events that need a person: the audit sink is tapped, so whatever
is recorded as a kill, a breaker trip or a reconciliation surprise also reaches apprise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.alerts import Notifier
from runner.recorder import AuditSink

# kind -> (level, title); reconcile records alert only for what a person must look at.
ALERTS = {
    "kill_switch": ("critical", "vigil HALTED: kill switch"),
    "breaker_trip": ("warning", "vigil breaker tripped"),
    "breaker_clear": ("info", "vigil breaker cleared"),
    "resume": ("warning", "vigil resumed by operator"),
    "audit_recovered": ("warning", "vigil audit log recovered a torn line"),
    "shutdown": ("info", "vigil stopped"),
    # the runner's guards (runner/cycle_guard.py, runner/clock_watch.py, Engine._rejected)
    "cycle_error": ("warning", "vigil cycle failed"),
    "exits_only": ("critical", "vigil EXITS ONLY"),
    "exits_only_clear": ("info", "vigil exits-only lifted"),
    "clock_refused": ("critical", "vigil refused to start: clock skew"),
    "symbol_banned": ("warning", "vigil symbol banned"),
}
RECONCILE_ALERTS = frozenset({"position", "foreign_order", "foreign_fill", "fill_refused"})


class AlertingSink:
    def __init__(self, sink: AuditSink, notifier: Notifier) -> None:
        self._sink = sink
        self._notifier = notifier

    def append(self, kind: str, data: Mapping[str, Any], *, sync: bool = False) -> Any:
        out = self._sink.append(kind, data, sync=sync)
        alert = ALERTS.get(kind)
        if alert is None and kind == "reconcile" and data.get("what") in RECONCILE_ALERTS:
            alert = ("warning", f"vigil reconciliation: {data.get('what')}")
        if alert is not None:
            level, title = alert
            what = data.get("breaker") or data.get("what") or data.get("cause") or ""
            key = f"{kind}:{what or data.get('symbol') or ''}"
            body = ", ".join(f"{k}={v}" for k, v in sorted(data.items()))[:1000]
            self._notifier.notify(key, title, body, level)
        return out
