"""When an alert is sent, to whom and how loud: time-based dedupe, escalation, reminders and
"resolved" messages, on the injected clock. Pure bookkeeping: no I/O, `now_ms` is handed in.

Every alert has a key and opens an incident. Two kinds:

- A *condition* (a kill switch, a tripped breaker, an exchange down for minutes) lasts until
  `resolve(key)`. It is sent when it starts; `escalate_ms` later, if still unresolved, it is
  sent again one level louder (info -> warning -> critical) to the escalation route as well;
  every `remind_ms` after the last message it is sent again as a reminder (a latched breaker
  keeps reminding); when it clears, a "RESOLVED" message goes to every route that heard of it.
- An *event* (an order refused, a reconciliation surprise, a cycle over budget) has no end of
  its own: the same key again within `dedupe_ms` of the last message is counted, not sent; the
  first repeat after that is sent with the count. An event that keeps firing for `escalate_ms`
  escalates like a condition; one that stays quiet for `dedupe_ms` is forgotten, silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

LEVELS = ("info", "warning", "critical")
BOOST = {"info": "warning", "warning": "critical", "critical": "critical"}
PRIMARY = "primary"
ESCALATE = "escalate"
# Past this many open incidents, the oldest quiet events are forgotten first.
_MAX_INCIDENTS = 1024


@dataclass(frozen=True, slots=True)
class Alert:
    """One message to send. `kind` is alert, repeat, escalation, reminder, resolved or test."""

    key: str
    title: str
    body: str
    level: str
    ts_ms: int
    kind: str = "alert"
    routes: tuple[str, ...] = (PRIMARY,)


@dataclass(slots=True)
class Incident:
    key: str
    title: str
    body: str
    level: str
    condition: bool
    first_ms: int
    last_fire_ms: int
    last_sent_ms: int
    unsent: int = 0  # fires since the last message that were counted, not sent
    fires: int = 1
    escalated: bool = False


def louder(a: str, b: str) -> str:
    return a if LEVELS.index(a) >= LEVELS.index(b) else b


def _duration(ms: int) -> str:
    s = max(0, ms // 1000)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


class AlertPolicy:
    """The incident table. `fire`, `resolve` and `tick` return the messages to send now."""

    def __init__(self, *, dedupe_ms: int, escalate_ms: int, remind_ms: int) -> None:
        if dedupe_ms < 0 or escalate_ms <= 0 or remind_ms <= 0:
            raise ValueError(
                f"alert timings must be dedupe >= 0, escalate > 0, remind > 0 (got "
                f"{dedupe_ms}, {escalate_ms}, {remind_ms} ms)"
            )
        self.dedupe_ms = dedupe_ms
        self.escalate_ms = escalate_ms
        self.remind_ms = remind_ms
        self._open: dict[str, Incident] = {}
        self.suppressed = 0

    def incidents(self) -> list[Incident]:
        """Open incidents, oldest first (copies: the table has one owner)."""
        return [replace(i) for i in sorted(self._open.values(), key=lambda i: i.first_ms)]

    def open_conditions(self) -> int:
        return sum(1 for i in self._open.values() if i.condition)

    # ------------------------------------------------------------------ inputs

    def fire(
        self, key: str, title: str, body: str, level: str, now_ms: int, *, condition: bool
    ) -> list[Alert]:
        inc = self._open.get(key)
        if inc is not None and not inc.condition and self._quiet(inc, now_ms):
            del self._open[key]  # an event that went quiet: this is a fresh start
            inc = None
        if inc is None:
            if len(self._open) >= _MAX_INCIDENTS:
                self._forget_quiet(now_ms)
            self._open[key] = Incident(key, title, body, level, condition, now_ms, now_ms, now_ms)
            return [Alert(key, title, body, level, now_ms)]
        inc.fires += 1
        inc.last_fire_ms = now_ms
        inc.body = body
        inc.level = louder(inc.level, level)
        inc.condition = inc.condition or condition
        out = self._due(inc, now_ms)
        if inc.condition:
            return out  # a condition's state is reported by reminders, not by each fire
        if now_ms - inc.last_sent_ms >= self.dedupe_ms and not out:
            note = f"(fired {inc.unsent + 1} times since the last message)" if inc.unsent else ""
            inc.unsent = 0
            inc.last_sent_ms = now_ms
            return [self._message(inc, now_ms, "repeat", note)]
        if not out:
            inc.unsent += 1
            self.suppressed += 1
        return out

    def resolve(self, key: str, now_ms: int, body: str = "") -> list[Alert]:
        """Close a condition. Nothing is sent for a key that is not open."""
        inc = self._open.pop(key, None)
        if inc is None:
            return []
        text = f"cleared after {_duration(now_ms - inc.first_ms)}"
        return [
            Alert(
                key,
                f"RESOLVED: {inc.title}",
                f"{body}\n{text}" if body else text,
                "info",
                now_ms,
                "resolved",
                self._routes(inc),
            )
        ]

    def tick(self, now_ms: int) -> list[Alert]:
        """Escalations and reminders that have come due; quiet events forgotten."""
        out: list[Alert] = []
        for key, inc in list(self._open.items()):
            if not inc.condition and self._quiet(inc, now_ms):
                del self._open[key]
                continue
            out.extend(self._due(inc, now_ms))
        return out

    # ------------------------------------------------------------------ internals

    def _quiet(self, inc: Incident, now_ms: int) -> bool:
        return now_ms - inc.last_fire_ms >= max(self.dedupe_ms, 1)

    def _due(self, inc: Incident, now_ms: int) -> list[Alert]:
        if not inc.escalated and now_ms - inc.first_ms >= self.escalate_ms:
            inc.escalated = True
            inc.level = BOOST[inc.level]
            inc.last_sent_ms = now_ms
            inc.unsent = 0
            note = f"(unresolved for {_duration(now_ms - inc.first_ms)}: escalated)"
            return [self._message(inc, now_ms, "escalation", note)]
        if inc.condition and now_ms - inc.last_sent_ms >= self.remind_ms:
            inc.last_sent_ms = now_ms
            note = f"(reminder: still active after {_duration(now_ms - inc.first_ms)})"
            return [self._message(inc, now_ms, "reminder", note)]
        return []

    def _message(self, inc: Incident, now_ms: int, kind: str, note: str) -> Alert:
        prefix = {"escalation": "ESCALATED: ", "reminder": "STILL ACTIVE: "}.get(kind, "")
        return Alert(
            inc.key,
            f"{prefix}{inc.title}",
            f"{inc.body}\n{note}" if note else inc.body,
            inc.level,
            now_ms,
            kind,
            self._routes(inc),
        )

    @staticmethod
    def _routes(inc: Incident) -> tuple[str, ...]:
        return (PRIMARY, ESCALATE) if inc.escalated else (PRIMARY,)

    def _forget_quiet(self, now_ms: int) -> None:
        for key in [k for k, i in self._open.items() if not i.condition and self._quiet(i, now_ms)]:
            del self._open[key]
        if len(self._open) >= _MAX_INCIDENTS:  # all busy: drop the oldest events
            events = sorted(
                (i for i in self._open.values() if not i.condition), key=lambda i: i.last_fire_ms
            )
            for inc in events[: len(self._open) - _MAX_INCIDENTS + 1]:
                del self._open[inc.key]
