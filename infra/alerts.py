"""Operator alerts through apprise: deduplicated, escalated by time, and never in the trading
loop's way.

`Notifier.notify()` and `resolve()` are synchronous, cheap and never raise: they log the alert,
ask the `AlertPolicy` (infra/alert_policy.py) what to send now and put that on a bounded queue.
A background task (`start()` / `stop()`) sends from the queue and, every `tick_seconds`, asks the
policy for escalations and reminders that have come due on the injected clock. A send that
fails, raises or hangs is logged, counted (`on_delivery`) and dropped; the loop never waits.

Two routes: "primary" (VIGIL_ALERT_URLS) hears everything; "escalate"
(VIGIL_ALERT_URLS_ESCALATE) hears escalations and, after that, the reminders and the
"resolved" message of the incidents that escalated.

Alert URLs carry tokens (a Telegram bot token, a webhook secret), so they never reach a log line
or an exception message from here; apprise's and urllib3's own log records are redacted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from core.clock import Clock
from core.errors import ConfigError
from infra.alert_policy import ESCALATE, PRIMARY, Alert, AlertPolicy, Incident

logger = logging.getLogger(__name__)

Send = Callable[[str, str, str], Awaitable[bool]]
"""send(title, body, level) -> delivered?; level is "info", "warning" or "critical"."""

OnDelivery = Callable[[str, bool], None]
"""on_delivery(route, delivered): called once per route per message (metrics)."""

OnAlert = Callable[[str, str], None]
"""on_alert(kind, level): called once per message raised, routes or not (metrics)."""

_LOG_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
# Loggers that print notification URLs (with their tokens) at DEBUG or on errors.
_THIRD_PARTY_LOGGERS = ("apprise", "urllib3.connectionpool")


class NotifierState(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


_TRANSITIONS: dict[tuple[NotifierState, str], NotifierState] = {
    (NotifierState.NEW, "start"): NotifierState.RUNNING,
    (NotifierState.NEW, "stop"): NotifierState.STOPPED,
    (NotifierState.RUNNING, "stop"): NotifierState.STOPPED,
}


class IllegalTransition(RuntimeError):
    """A lifecycle method was called in a state that does not allow it."""


@dataclass(frozen=True, slots=True)
class NotifierStats:
    sent: int
    failed: int
    suppressed: int
    dropped: int
    queued: int
    open_conditions: int


class _RedactSecrets(logging.Filter):
    """Rewrites records so that none of the given secret strings survive formatting."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        # Longest first, so a whole URL is replaced before its pieces are.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix; drop its args only
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def _url_secrets(url: str) -> list[str]:
    """The URL and every piece of it long enough to be a token (hosts included: for
    tgram://, discord:// and friends the "host" is the bot token or webhook id)."""
    _, sep, rest = url.partition("://")
    pieces = re.split(r"[/:@?&=#,;\s]+", rest if sep else url)
    return [url, *(p for p in pieces if len(p) >= 6)]


def scheme(url: str) -> str:
    """The URL's scheme, the only part of an alert URL that may be shown."""
    name, sep, _ = url.partition("://")
    return name if sep and name.isalnum() else "<none>"


class Notifier:
    """Deduplicating, time-escalating operator alerts; see the module docstring.

    `send` replaces apprise for the primary route (tests, or a custom channel) and
    `escalate_send` for the escalation route; `urls` / `escalate_urls` are then ignored. Without
    a primary route, alerts are only logged. `notify` may be called before `start()` (start-up
    problems); those alerts go out once the sender task runs. Call it from the event loop's
    thread only.
    """

    def __init__(
        self,
        *,
        urls: Sequence[str],
        clock: Clock,
        dedupe_seconds: int = 60,
        escalate_after_seconds: int = 120,
        remind_seconds: int = 900,
        escalate_urls: Sequence[str] = (),
        send: Send | None = None,
        escalate_send: Send | None = None,
        max_queue: int = 100,
        send_timeout_s: float = 30.0,
        tick_seconds: float = 1.0,
        on_delivery: OnDelivery | None = None,
        on_alert: OnAlert | None = None,
    ) -> None:
        _check_settings(
            dedupe_seconds, escalate_after_seconds, remind_seconds, max_queue, send_timeout_s
        )
        self._clock = clock
        self._policy = AlertPolicy(
            dedupe_ms=dedupe_seconds * 1000,
            escalate_ms=escalate_after_seconds * 1000,
            remind_ms=remind_seconds * 1000,
        )
        self._send_timeout_s = send_timeout_s
        self._tick_s = tick_seconds
        self._on_delivery = on_delivery
        self._on_alert = on_alert
        self._queue: deque[Alert] = deque()
        self._max_queue = max_queue
        self._state = NotifierState.NEW
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._inflight: Alert | None = None
        self._sent = self._failed = self._dropped = 0
        self._drop_warned = False
        self._redactor: _RedactSecrets | None = None
        self._routes: dict[str, Send] = {}
        apprise_urls = [
            *(urls if send is None else ()),
            *(escalate_urls if escalate_send is None else ()),
        ]
        if apprise_urls:
            self._redactor = _RedactSecrets([s for u in apprise_urls for s in _url_secrets(u)])
            for name in _THIRD_PARTY_LOGGERS:
                logging.getLogger(name).addFilter(self._redactor)
        try:
            for route, given, route_urls in (
                (PRIMARY, send, urls),
                (ESCALATE, escalate_send, escalate_urls),
            ):
                if given is not None:
                    self._routes[route] = given
                elif route_urls:
                    self._routes[route] = apprise_sender(route_urls, route=route)
        except BaseException:
            self._remove_redactor()
            raise
        if PRIMARY not in self._routes:
            logger.info("no alert URLs configured: alerts are logged only")

    @property
    def state(self) -> NotifierState:
        return self._state

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(self._routes)

    def stats(self) -> NotifierStats:
        return NotifierStats(
            sent=self._sent,
            failed=self._failed,
            suppressed=self._policy.suppressed,
            dropped=self._dropped,
            queued=len(self._queue),
            open_conditions=self._policy.open_conditions(),
        )

    def incidents(self) -> list[Incident]:
        return self._policy.incidents()

    # ------------------------------------------------------------------ producer side

    def notify(
        self, key: str, title: str, body: str, level: str = "warning", *, condition: bool = False
    ) -> None:
        """Log and queue an alert. `condition=True`: it lasts until `resolve(key)` and is
        escalated and reminded meanwhile. Never blocks, never raises."""
        try:
            if level not in _LOG_LEVEL:
                logger.error("alert %r has unknown level %r; sending it as 'warning'", key, level)
                level = "warning"
            now = self._clock.now_ms()
            self._emit(self._policy.fire(key, title, body, level, now, condition=condition))
        except Exception:
            # An alert must never take the trading loop down with it.
            logger.error("alert bookkeeping failed for key %r", key, exc_info=True)

    def resolve(self, key: str, body: str = "") -> None:
        """The condition `key` has cleared: a "RESOLVED" message if it was open. Never raises."""
        try:
            self._emit(self._policy.resolve(key, self._clock.now_ms(), body))
        except Exception:
            logger.error("alert bookkeeping failed for key %r", key, exc_info=True)

    def tick(self) -> None:
        """Send the escalations and reminders due now (the sender task calls this every
        `tick_seconds`; tests call it after moving a SimClock). Never raises."""
        try:
            self._emit(self._policy.tick(self._clock.now_ms()))
        except Exception:
            logger.error("alert escalation check failed", exc_info=True)

    def _emit(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            logger.log(
                _LOG_LEVEL[alert.level],
                "ALERT %s [%s] %s: %s",
                alert.key,
                alert.level,
                alert.title,
                alert.body,
            )
            if self._on_alert is not None:
                with contextlib.suppress(Exception):
                    self._on_alert(alert.kind, alert.level)
            self._enqueue(alert)

    def _enqueue(self, alert: Alert) -> None:
        if PRIMARY not in self._routes:
            return
        if self._state is NotifierState.STOPPED:
            self._dropped += 1
            logger.warning("alert %r not sent: the notifier is stopped", alert.key)
            return
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self._dropped += 1
            if not self._drop_warned:
                self._drop_warned = True
                logger.warning(
                    "alert queue full (%d): dropping the oldest alerts until it drains",
                    self._max_queue,
                )
        self._queue.append(alert)
        self._wakeup.set()

    # ------------------------------------------------------------------ lifecycle

    def _transition(self, trigger: str) -> NotifierState:
        new = _TRANSITIONS.get((self._state, trigger))
        if new is None:
            raise IllegalTransition(f"Notifier cannot {trigger} while {self._state.value}")
        return new

    def start(self) -> None:
        """Start the sender task on the running loop. Alerts queued before start go out then."""
        new = self._transition("start")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="vigil-notifier")
        self._state = new

    async def stop(self, *, timeout_s: float = 5.0) -> None:
        """Send what is queued, waiting at most timeout_s; then cancel and drop the rest."""
        self._state = self._transition("stop")
        task = self._task
        try:
            if task is None:
                if self._queue:
                    logger.warning(
                        "notifier stopped before it started: %d alert(s) not sent",
                        len(self._queue),
                    )
                    self._dropped += len(self._queue)
                    self._queue.clear()
                return
            self._wakeup.set()
            try:
                done, _ = await asyncio.wait({task}, timeout=timeout_s)
            except BaseException:
                # Our caller gave up on stop(); do not leave a sender running behind it.
                task.cancel()
                raise
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                lost = len(self._queue) + (1 if self._inflight is not None else 0)
                self._queue.clear()
                self._inflight = None
                self._dropped += lost
                logger.warning(
                    "notifier stop timed out after %.1f s: %d alert(s) not sent", timeout_s, lost
                )
            elif not task.cancelled() and task.exception() is not None:
                # _run handles every send failure itself, so this is a bug worth seeing.
                logger.error("notifier task crashed", exc_info=task.exception())
        finally:
            self._remove_redactor()

    def _remove_redactor(self) -> None:
        if self._redactor is not None:
            for name in _THIRD_PARTY_LOGGERS:
                logging.getLogger(name).removeFilter(self._redactor)
            self._redactor = None

    # ------------------------------------------------------------------ consumer side

    async def _run(self) -> None:
        while True:
            while self._queue:
                alert = self._queue.popleft()
                self._inflight = alert
                await self._deliver(alert)
                self._inflight = None
            self._drop_warned = False
            if self._state is NotifierState.STOPPED:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._tick_s)
            if self._state is NotifierState.RUNNING:
                self.tick()

    async def _deliver(self, alert: Alert) -> None:
        for route in alert.routes:
            send = self._routes.get(route)
            if send is None:
                continue  # no escalation URLs: the primary route carries it alone
            delivered, reason = await self._send_one(send, alert)
            if self._on_delivery is not None:
                with contextlib.suppress(Exception):
                    self._on_delivery(route, delivered)
            if delivered:
                self._sent += 1
                continue
            self._failed += 1
            logger.warning(
                "alert %r not delivered on route %s (%s); dropped", alert.key, route, reason
            )

    async def _send_one(self, send: Send, alert: Alert) -> tuple[bool, str]:
        try:
            delivered = await asyncio.wait_for(
                send(alert.title, alert.body, alert.level), self._send_timeout_s
            )
            return bool(delivered), "the service reported failure"
        except TimeoutError:
            return False, f"no answer within {self._send_timeout_s:g} s"
        except Exception as exc:
            # Only the type: messages from HTTP clients tend to quote the URL, token and all.
            return False, type(exc).__name__


def _check_settings(
    dedupe_s: int, escalate_s: int, remind_s: int, max_queue: int, timeout_s: float
) -> None:
    if dedupe_s < 0:
        raise ConfigError(f"alerts dedupe_seconds must be >= 0 (got {dedupe_s})")
    if escalate_s < 1:
        raise ConfigError(f"alerts escalate_after_seconds must be >= 1 (got {escalate_s})")
    if remind_s < 1:
        raise ConfigError(f"alerts remind_seconds must be >= 1 (got {remind_s})")
    if max_queue < 1:
        raise ConfigError(f"alerts max_queue must be >= 1 (got {max_queue})")
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ConfigError(f"alerts send_timeout_s must be > 0 (got {timeout_s})")


def apprise_sender(urls: Sequence[str], *, route: str = PRIMARY) -> Send:
    """A send() over apprise. Raises ConfigError naming (by position and scheme, never by
    content) any URL apprise does not accept."""
    import apprise

    bad = []
    client = apprise.Apprise()
    for i, url in enumerate(urls, start=1):
        if not client.add(url):
            bad.append(f"{route} #{i} (scheme {scheme(url)!r})")
    if bad:
        raise ConfigError(
            f"alert URL(s) {', '.join(bad)} not accepted by apprise; check the alerts URLs "
            "against https://github.com/caronc/apprise/wiki"
        )
    notify_types = {
        "info": apprise.NotifyType.INFO,
        "warning": apprise.NotifyType.WARNING,
        "critical": apprise.NotifyType.FAILURE,
    }

    async def send(title: str, body: str, level: str) -> bool:
        notify_type = notify_types.get(level, apprise.NotifyType.WARNING)
        async_notify = getattr(client, "async_notify", None)
        if async_notify is not None:
            result = await async_notify(body=body, title=title, notify_type=notify_type)
        else:
            # Older apprise: the blocking call goes to a worker thread, off the loop.
            result = await asyncio.to_thread(
                client.notify, body=body, title=title, notify_type=notify_type
            )
        return bool(result)

    return send
