"""Operator alerts for the events that need a person. The audit sink is tapped, so whatever is
recorded as a kill, a breaker trip or a reconciliation surprise also reaches the notifier; the
cycle records keep the lasting conditions (kill switch, latched breakers, empty universe,
exchange down) in step with the engine, so a condition that was already latched when the daemon
started still alerts, reminds and resolves. docs/alerts.md lists every alert this module sends.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from infra.alerts import Notifier
from infra.metrics import Metrics
from infra.secrets import load_secrets
from infra.settings import VigilConfig
from runner.checks import DAY_MS, key_issued_ms
from runner.recorder import AuditSink

KILL_KEY = "kill_switch"
EMPTY_UNIVERSE_KEY = "empty_universe"
EXCHANGE_DOWN_KEY = "exchange_down"
BUDGET_KEY = "cycle_over_budget"
KEY_AGE_KEY = "api_key_age"
# Loss stops and drawdown mean money is being lost: louder than the data breakers.
LOUD_BREAKERS = frozenset({"daily_loss", "weekly_loss", "max_drawdown"})
# reconcile records alert only for what a person must look at.
RECONCILE_ALERTS = frozenset({"position", "foreign_order", "foreign_fill", "fill_refused"})
# One-off events: kind -> (level, title).
EVENTS = {
    "audit_recovered": ("warning", "vigil audit log recovered a torn line"),
    "shutdown": ("info", "vigil stopped"),
    # the runner's guards (runner/cycle_guard.py, runner/clock_watch.py, Engine._rejected)
    "cycle_error": ("warning", "vigil cycle failed"),
    "clock_refused": ("critical", "vigil refused to start: clock skew"),
    "symbol_banned": ("warning", "vigil symbol banned"),
}
_DOWN_PREFIXES = ("EXCHANGE_DOWN", "MISSING_DATA")


class AlertPort(Protocol):
    """What the sink needs from infra.alerts.Notifier."""

    def notify(
        self, key: str, title: str, body: str, level: str = "warning", *, condition: bool = False
    ) -> None: ...

    def resolve(self, key: str, body: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class ConditionRules:
    """When a run of cycles becomes an alert (alerts.* in the config)."""

    empty_universe_cycles: int = 10
    exchange_down_ms: int = 180_000
    key_issued_ms: int | None = None  # VIGIL_API_KEY_ISSUED; None: key age not tracked
    key_max_age_ms: int = 90 * 86_400_000
    key_warn_ms: int = 14 * 86_400_000


def _body(data: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(data.items()))[:1000]


def breaker_key(name: str) -> str:
    return f"breaker:{name}"


class AlertingSink:
    """An AuditSink that appends to the real one and turns the records into alerts."""

    def __init__(
        self, sink: AuditSink, notifier: AlertPort, rules: ConditionRules | None = None
    ) -> None:
        self._sink = sink
        self._notifier = notifier
        self._rules = rules or ConditionRules()
        self._breakers: set[str] = set()
        self._killed = False
        self._empty_cycles = 0
        self._down_since: int | None = None

    def append(self, kind: str, data: Mapping[str, Any], *, sync: bool = False) -> Any:
        out = self._sink.append(kind, data, sync=sync)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, data)
        return out

    # ------------------------------------------------------------------ record handlers

    def _kill(self, data: Mapping[str, Any]) -> None:
        self._killed = True
        self._notifier.notify(
            KILL_KEY, "vigil HALTED: kill switch", _body(data), "critical", condition=True
        )

    def _resume(self, data: Mapping[str, Any]) -> None:
        self._killed = False
        self._notifier.resolve(KILL_KEY, f"trading re-armed by operator ({_body(data)})")

    def _trip(self, data: Mapping[str, Any]) -> None:
        name = str(data.get("breaker", ""))
        self._breakers.add(name)
        level = "critical" if name in LOUD_BREAKERS else "warning"
        title = f"vigil breaker tripped: {name}"
        self._notifier.notify(breaker_key(name), title, _body(data), level, condition=True)

    def _clear(self, data: Mapping[str, Any]) -> None:
        name = str(data.get("breaker", ""))
        self._breakers.discard(name)
        self._notifier.resolve(breaker_key(name), _body(data))

    def _reconcile(self, data: Mapping[str, Any]) -> None:
        what = data.get("what")
        if what in RECONCILE_ALERTS:
            self._notifier.notify(
                f"reconcile:{what}", f"vigil reconciliation: {what}", _body(data), "warning"
            )

    def _flatten(self, data: Mapping[str, Any]) -> None:
        ok = bool(data.get("ok"))
        self._notifier.notify(
            f"flatten:{data.get('id', '')}",
            "vigil flatten done" if ok else "vigil flatten INCOMPLETE",
            "\n".join(str(o) for o in data.get("outcomes") or ()) or "no positions",
            "info" if ok else "warning",
        )

    def _event(self, kind: str, data: Mapping[str, Any]) -> None:
        level, title = EVENTS[kind]
        # One key per symbol for bans; one for every failed cycle (deduplicated, escalated).
        key = f"{kind}:{data['symbol']}" if data.get("symbol") else kind
        self._notifier.notify(key, title, _body(data), level)

    def _exits_only(self, data: Mapping[str, Any]) -> None:
        """A runner guard (failing cycles, clock drift) holds trading at exits only: a
        condition that reminds until it is lifted."""
        key = f"exits_only:{data.get('cause', '')}"
        self._notifier.notify(key, "vigil EXITS ONLY", _body(data), "critical", condition=True)

    def _exits_only_clear(self, data: Mapping[str, Any]) -> None:
        self._notifier.resolve(f"exits_only:{data.get('cause', '')}", _body(data))

    def _cycle(self, data: Mapping[str, Any]) -> None:
        """Bring the lasting conditions in step with this cycle's state."""
        ts = int(data.get("cycle_ts") or 0)
        tripped = {str(b) for b in data.get("breakers_tripped") or ()}
        for name in sorted(tripped - self._breakers):  # latched before we started
            self._trip({"breaker": name, "cycle_ts": ts, "reason": "latched (from state)"})
        for name in sorted(self._breakers - tripped):
            self._clear({"breaker": name, "cycle_ts": ts})
        killed = data.get("kill_switch")
        if killed and not self._killed:
            self._kill({"reason": "latched (from state)", "cycle_ts": ts})
        elif killed is False and self._killed:
            self._resume({"cycle_ts": ts})
        self._universe(data, ts)
        self._exchange(data, ts)
        self._key_age(ts)

    def _key_age(self, ts: int) -> None:
        issued = self._rules.key_issued_ms
        if issued is None or not ts:
            return
        age = ts - issued
        due = self._rules.key_max_age_ms
        if age < due - self._rules.key_warn_ms:
            return
        days_left = (due - age) // 86_400_000
        body = f"the API key is {age // 86_400_000} days old (VIGIL_API_KEY_ISSUED); rotate it " + (
            f"within {days_left} days" if age < due else "now: the deadline has passed"
        )
        level = "critical" if age >= due else "warning"
        self._notifier.notify(
            KEY_AGE_KEY, "vigil API key due for rotation", body, level, condition=True
        )

    def _integrity(self, data: Mapping[str, Any]) -> None:
        if not data.get("ok"):
            self._notifier.notify(
                "integrity_check", "vigil integrity check FAILED", _body(data), "critical"
            )

    def _universe(self, data: Mapping[str, Any], ts: int) -> None:
        if "eligible" not in data:
            return
        if data["eligible"]:
            self._empty_cycles = 0
            self._notifier.resolve(EMPTY_UNIVERSE_KEY, "symbols are eligible again")
            return
        self._empty_cycles += 1
        if self._empty_cycles >= self._rules.empty_universe_cycles:
            excluded = data.get("excluded") or {}
            self._notifier.notify(
                EMPTY_UNIVERSE_KEY,
                "vigil universe empty",
                f"no eligible symbol for {self._empty_cycles} cycles; excluded by reason: "
                f"{_body(excluded) or 'none'}",
                "warning",
                condition=True,
            )

    def _exchange(self, data: Mapping[str, Any], ts: int) -> None:
        reason = str(data.get("no_trade_reason") or "")
        if not reason.startswith(_DOWN_PREFIXES):
            self._down_since = None
            self._notifier.resolve(EXCHANGE_DOWN_KEY, "the exchange answers again")
            return
        if self._down_since is None:
            self._down_since = ts
        down_ms = ts - self._down_since
        if down_ms >= self._rules.exchange_down_ms:
            self._notifier.notify(
                EXCHANGE_DOWN_KEY,
                "vigil exchange unreachable",
                f"every cycle for {down_ms // 1000} s found the exchange unreachable "
                f"(last: {reason})",
                "critical",
                condition=True,
            )

    # ------------------------------------------------------------------ loop hooks

    def cycle_over_budget(self, budget_ms: int) -> None:
        """For the loop's on_budget_exceeded: an event, so it escalates only while cycles
        keep running slow."""
        self._notifier.notify(
            BUDGET_KEY,
            "vigil cycles over budget",
            f"a cycle took longer than its {budget_ms} ms budget",
            "warning",
        )


_HANDLERS: dict[str, Any] = {
    "kill_switch": AlertingSink._kill,
    "resume": AlertingSink._resume,
    "breaker_trip": AlertingSink._trip,
    "breaker_clear": AlertingSink._clear,
    "reconcile": AlertingSink._reconcile,
    "cycle": AlertingSink._cycle,
    "flatten_result": AlertingSink._flatten,
    "integrity_check": AlertingSink._integrity,
    "exits_only": AlertingSink._exits_only,
    "exits_only_clear": AlertingSink._exits_only_clear,
    **{kind: (lambda self, data, kind=kind: self._event(kind, data)) for kind in EVENTS},
}


def make_notifier(cfg: VigilConfig, clock: Any, metrics: Metrics | None = None) -> Notifier:
    """Apprise URLs come only from VIGIL_ALERT_URLS (and VIGIL_ALERT_URLS_ESCALATE for
    escalations); without them alerts are logged."""
    secrets = load_secrets(os.environ)
    enabled = cfg.alerts.enabled
    return Notifier(
        urls=secrets.alert_urls if enabled else (),
        escalate_urls=secrets.escalate_urls if enabled else (),
        clock=clock,
        dedupe_seconds=cfg.alerts.dedupe_seconds,
        escalate_after_seconds=cfg.alerts.escalate_after_seconds,
        remind_seconds=cfg.alerts.remind_seconds,
        on_delivery=metrics.alerts.delivery if metrics is not None else None,
        on_alert=metrics.alerts.alert if metrics is not None else None,
    )


def alerting_sink(cfg: VigilConfig, audit: AuditSink, notifier: Notifier) -> AlertingSink:
    rules = ConditionRules(
        empty_universe_cycles=cfg.alerts.empty_universe_cycles,
        exchange_down_ms=round(cfg.alerts.exchange_down_minutes * 60_000),
        key_issued_ms=key_issued_ms(os.environ),
        key_max_age_ms=cfg.checks.api_key_max_age_days * DAY_MS,
        key_warn_ms=cfg.checks.api_key_warn_days * DAY_MS,
    )
    return AlertingSink(audit, notifier, rules)
