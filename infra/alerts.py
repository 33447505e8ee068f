"""Operator alerts through apprise: deduplicated, escalated, and never in the trading loop's way.

`Notifier.notify()` is synchronous, cheap and never raises: it logs the alert, applies the dedupe
window and puts the alert on a bounded queue. A background task (`start()` / `stop()`) sends from
the queue. A send that fails, raises or hangs is logged and dropped; the loop never waits for it.

Dedupe, per key: the first alert opens a window of `dedupe_seconds` and is sent. Repeats inside
the window are counted, not sent, except that the `escalate_after`-th occurrence is sent once more
with its level raised (info -> warning -> critical) and its title prefixed "[xN]". The first alert
after the window closes is sent again and says how often the key fired in the previous window.

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

logger = logging.getLogger(__name__)

Send = Callable[[str, str, str], Awaitable[bool]]
"""send(title, body, level) -> delivered?; level is "info", "warning" or "critical"."""

LEVELS = ("info", "warning", "critical")
_ESCALATE = {"info": "warning", "warning": "critical", "critical": "critical"}
_LOG_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
# Past this many tracked keys, closed windows are forgotten so the dict cannot grow forever.
_PRUNE_AT = 1024
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
class Alert:
    key: str
    title: str
    body: str
    level: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class NotifierStats:
    sent: int
    failed: int
    suppressed: int
    dropped: int
    queued: int


@dataclass(slots=True)
class _Window:
    start_ms: int
    count: int
    escalated: bool


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


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme if sep and scheme.isalnum() else "<none>"


class Notifier:
    """Deduplicating, escalating operator alerts; see the module docstring.

    `send` replaces apprise entirely (tests, or a custom channel); `urls` are then ignored.
    Without `send` and without URLs, alerts are only logged. `notify` may be called before
    `start()` (start-up problems); those alerts go out once the sender task runs. Call it from
    the event loop's thread only.
    """

    def __init__(
        self,
        *,
        urls: Sequence[str],
        clock: Clock,
        dedupe_seconds: int = 300,
        escalate_after: int = 3,
        send: Send | None = None,
        max_queue: int = 100,
        send_timeout_s: float = 30.0,
    ) -> None:
        if dedupe_seconds < 0:
            raise ConfigError(f"alerts dedupe_seconds must be >= 0 (got {dedupe_seconds})")
        if escalate_after < 2:
            raise ConfigError(
                f"alerts escalate_after must be >= 2 (got {escalate_after}): the first "
                "occurrence is always sent, escalation is about the repeats"
            )
        if max_queue < 1:
            raise ConfigError(f"alerts max_queue must be >= 1 (got {max_queue})")
        if not math.isfinite(send_timeout_s) or send_timeout_s <= 0:
            raise ConfigError(f"alerts send_timeout_s must be > 0 (got {send_timeout_s})")
        self._clock = clock
        self._dedupe_ms = dedupe_seconds * 1000
        self._escalate_after = escalate_after
        self._send_timeout_s = send_timeout_s
        self._queue: deque[Alert] = deque()
        self._max_queue = max_queue
        self._windows: dict[str, _Window] = {}
        self._state = NotifierState.NEW
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._inflight: Alert | None = None
        self._sent = self._failed = self._suppressed = self._dropped = 0
        self._drop_warned = False
        self._redactor: _RedactSecrets | None = None
        if send is None and urls:
            self._redactor = _RedactSecrets([s for u in urls for s in _url_secrets(u)])
            for name in _THIRD_PARTY_LOGGERS:
                logging.getLogger(name).addFilter(self._redactor)
            try:
                send = _apprise_sender(urls)
            except BaseException:
                self._remove_redactor()
                raise
        self._send = send
        if self._send is None:
            logger.info("no alert URLs configured: alerts are logged only")

    @property
    def state(self) -> NotifierState:
        return self._state

    def stats(self) -> NotifierStats:
        return NotifierStats(
            sent=self._sent,
            failed=self._failed,
            suppressed=self._suppressed,
            dropped=self._dropped,
            queued=len(self._queue),
        )

    # ------------------------------------------------------------------ producer side

    def notify(self, key: str, title: str, body: str, level: str = "warning") -> None:
        """Log and queue an alert. Never blocks, never raises."""
        try:
            self._notify(key, title, body, level)
        except Exception:
            # An alert must never take the trading loop down with it.
            logger.error("alert bookkeeping failed for key %r", key, exc_info=True)

    def _notify(self, key: str, title: str, body: str, level: str) -> None:
        if level not in _LOG_LEVEL:
            logger.error("alert %r has unknown level %r; sending it as 'warning'", key, level)
            level = "warning"
        alert = self._dedupe(Alert(key, title, body, level, self._clock.now_ms()))
        if alert is None:
            return
        logger.log(
            _LOG_LEVEL[alert.level], "ALERT %s [%s] %s: %s", key, alert.level, alert.title, body
        )
        if self._send is None:
            return
        if self._state is NotifierState.STOPPED:
            self._dropped += 1
            logger.warning("alert %r not sent: the notifier is stopped", key)
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

    def _dedupe(self, alert: Alert) -> Alert | None:
        """The alert to send now (maybe escalated or annotated), or None if it is a repeat."""
        now = alert.ts_ms
        window = self._windows.get(alert.key)
        if window is None or now - window.start_ms >= self._dedupe_ms:
            if window is None and len(self._windows) >= _PRUNE_AT:
                self._prune(now)
            self._windows[alert.key] = _Window(start_ms=now, count=1, escalated=False)
            if window is not None and window.count > 1:
                note = f"(fired {window.count} times in the previous {self._dedupe_ms // 1000} s)"
                return _with_body(alert, f"{alert.body}\n{note}")
            return alert
        window.count += 1
        if window.count >= self._escalate_after and not window.escalated:
            window.escalated = True
            return Alert(
                key=alert.key,
                title=f"[x{window.count}] {alert.title}",
                body=(
                    f"{alert.body}\n(fired {window.count} times in "
                    f"{(now - window.start_ms) // 1000} s)"
                ),
                level=_ESCALATE[alert.level],
                ts_ms=now,
            )
        self._suppressed += 1
        logger.debug("alert %r repeated (%d in window); not re-sent", alert.key, window.count)
        return None

    def _prune(self, now: int) -> None:
        for key in [k for k, w in self._windows.items() if now - w.start_ms >= self._dedupe_ms]:
            del self._windows[key]

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
            await self._wakeup.wait()

    async def _deliver(self, alert: Alert) -> None:
        assert self._send is not None
        try:
            delivered = await asyncio.wait_for(
                self._send(alert.title, alert.body, alert.level), self._send_timeout_s
            )
            reason = "the service reported failure"
        except TimeoutError:
            delivered, reason = False, f"no answer within {self._send_timeout_s:g} s"
        except Exception as exc:
            # Only the type: messages from HTTP clients tend to quote the URL, token and all.
            delivered, reason = False, type(exc).__name__
        if delivered:
            self._sent += 1
            return
        self._failed += 1
        logger.warning("alert %r not delivered (%s); dropped", alert.key, reason)


def _with_body(alert: Alert, body: str) -> Alert:
    return Alert(alert.key, alert.title, body, alert.level, alert.ts_ms)


def _apprise_sender(urls: Sequence[str]) -> Send:
    """A send() over apprise. Raises ConfigError naming (by position and scheme, never by
    content) any URL apprise does not accept."""
    import apprise

    bad = []
    client = apprise.Apprise()
    for i, url in enumerate(urls, start=1):
        if not client.add(url):
            bad.append(f"#{i} (scheme {_scheme(url)!r})")
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
