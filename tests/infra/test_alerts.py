import asyncio
import logging

import pytest

from core.clock import SimClock
from core.errors import ConfigError
from infra.alerts import IllegalTransition, Notifier, NotifierState

SECRET_URL = "json://127.0.0.1:1/hooks/tok3n-s3cret-abcdef"


class FakeSend:
    """Records (title, body, level); can fail, raise or hang on demand."""

    def __init__(
        self, *, error: Exception | None = None, script: list[bool | Exception] | None = None
    ) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.error = error
        self.script = script or []  # per-call outcomes, used before `error`
        self.hang = False

    async def __call__(self, title: str, body: str, level: str) -> bool:
        self.calls.append((title, body, level))
        if self.hang:
            await asyncio.Event().wait()
        outcome: bool | Exception = self.script.pop(0) if self.script else True
        if self.error is not None:
            outcome = self.error
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def make(
    send: FakeSend, clock: SimClock | None = None, **kwargs: object
) -> tuple[Notifier, SimClock]:
    clock = clock or SimClock(1_000_000)
    return Notifier(urls=[], clock=clock, send=send, **kwargs), clock  # type: ignore[arg-type]


async def drain(notifier: Notifier) -> None:
    await notifier.stop()
    assert notifier.state is NotifierState.STOPPED


async def test_sends_in_order_and_counts() -> None:
    send = FakeSend()
    notifier, _ = make(send)
    notifier.start()
    notifier.notify("a", "A down", "body a")
    notifier.notify("b", "B down", "body b", level="critical")
    await drain(notifier)
    assert send.calls == [("A down", "body a", "warning"), ("B down", "body b", "critical")]
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.suppressed, stats.dropped) == (2, 0, 0, 0)


async def test_same_event_within_a_minute_is_counted_then_sent_with_the_count() -> None:
    send = FakeSend()
    notifier, clock = make(send)  # defaults: dedupe 60 s, escalate after 120 s
    notifier.start()
    for _ in range(4):
        notifier.notify("k", "T", "b")
        clock.advance(10_000)
    clock.advance(30_000)  # 60 s after the first message
    notifier.notify("k", "T", "b")
    notifier.notify("other", "Other", "x")  # a different key is independent
    await drain(notifier)
    assert [c[1] for c in send.calls] == ["b", "b\n(fired 4 times since the last message)", "x"]
    assert notifier.stats().suppressed == 3


async def test_an_event_still_firing_after_two_minutes_escalates_louder() -> None:
    send = FakeSend()
    escalated = FakeSend()
    notifier, clock = make(send, escalate_send=escalated)
    notifier.start()
    for _ in range(13):  # every 10 s for two minutes
        notifier.notify("feed", "Feed stale", "no candles")
        clock.advance(10_000)
    await drain(notifier)
    titles = [c[0] for c in send.calls]
    assert titles == ["Feed stale", "Feed stale", "ESCALATED: Feed stale"]
    assert [c[2] for c in send.calls] == ["warning", "warning", "critical"]
    assert "unresolved for 2 min: escalated" in send.calls[2][1]
    assert escalated.calls == [send.calls[2]]


async def test_an_event_that_goes_quiet_is_forgotten_not_escalated() -> None:
    send = FakeSend()
    notifier, clock = make(send)
    notifier.start()
    notifier.notify("k", "T", "b")
    clock.advance(200_000)
    notifier.tick()
    notifier.notify("k", "T", "b")  # a fresh start, not a repeat
    await drain(notifier)
    assert [c[1] for c in send.calls] == ["b", "b"]


async def test_condition_escalates_at_two_minutes_reminds_and_resolves() -> None:
    send = FakeSend()
    escalated = FakeSend()
    notifier, clock = make(send, escalate_send=escalated, remind_seconds=600)
    notifier.start()
    notifier.notify("kill", "HALTED", "file", level="warning", condition=True)
    clock.advance(119_000)
    notifier.tick()
    notifier.notify("kill", "HALTED", "file", condition=True)  # the same state again: quiet
    assert notifier.stats().queued + len(send.calls) == 1
    clock.advance(1_000)
    notifier.tick()  # 120 s: escalated
    clock.advance(599_000)
    notifier.tick()  # 719 s: nothing yet
    clock.advance(1_000)
    notifier.tick()  # 720 s: reminder, 600 s after the escalation
    clock.advance(60_000)
    notifier.resolve("kill", "re-armed")
    notifier.resolve("kill", "re-armed")  # already closed: nothing
    await drain(notifier)
    assert [(c[0], c[2]) for c in send.calls] == [
        ("HALTED", "warning"),
        ("ESCALATED: HALTED", "critical"),
        ("STILL ACTIVE: HALTED", "critical"),
        ("RESOLVED: HALTED", "info"),
    ]
    assert "cleared after 13 min" in send.calls[3][1]
    assert [c[0] for c in escalated.calls] == [c[0] for c in send.calls[1:]]
    assert notifier.stats().open_conditions == 0


async def test_without_an_escalation_route_the_primary_carries_the_escalation() -> None:
    send = FakeSend()
    notifier, clock = make(send)
    notifier.start()
    notifier.notify("b", "Breaker", "x", level="info", condition=True)
    clock.advance(120_000)
    notifier.tick()
    await drain(notifier)
    assert [(c[0], c[2]) for c in send.calls] == [
        ("Breaker", "info"),
        ("ESCALATED: Breaker", "warning"),
    ]
    assert notifier.routes == ("primary",)


async def test_deliveries_and_failures_reach_the_callbacks_per_route() -> None:
    seen: list[tuple[str, bool]] = []
    kinds: list[tuple[str, str]] = []
    notifier, clock = make(
        FakeSend(),
        escalate_send=FakeSend(error=ConnectionError("down")),
        on_delivery=lambda route, ok: seen.append((route, ok)),
        on_alert=lambda kind, level: kinds.append((kind, level)),
    )
    notifier.start()
    notifier.notify("c", "C", "x", condition=True)
    clock.advance(120_000)
    notifier.tick()
    await drain(notifier)
    assert seen == [("primary", True), ("primary", True), ("escalate", False)]
    assert kinds == [("alert", "warning"), ("escalation", "critical")]
    assert (notifier.stats().sent, notifier.stats().failed) == (2, 1)


async def test_zero_dedupe_sends_everything() -> None:
    send = FakeSend()
    notifier, _ = make(send, dedupe_seconds=0)
    notifier.start()
    for _ in range(5):
        notifier.notify("k", "T", "b")
    await drain(notifier)
    assert len(send.calls) == 5
    assert all(c[0] == "T" for c in send.calls)


async def test_bounded_queue_drops_oldest_and_counts() -> None:
    send = FakeSend()
    notifier, _ = make(send, max_queue=3)
    for i in range(5):  # before start(): nothing consumes yet
        notifier.notify(f"k{i}", f"T{i}", "b")
    assert notifier.stats().queued == 3
    assert notifier.stats().dropped == 2
    notifier.start()
    await drain(notifier)
    assert [c[0] for c in send.calls] == ["T2", "T3", "T4"]
    assert notifier.stats().dropped == 2


async def test_never_raises_when_send_raises_or_fails(caplog: pytest.LogCaptureFixture) -> None:
    send = FakeSend(script=[RuntimeError("boom"), ValueError("bad"), False])
    notifier, _ = make(send)
    notifier.start()
    notifier.notify("a", "A", "b")
    notifier.notify("b", "B", "b", level="nonsense")  # unknown level: coerced, not raised
    notifier.notify("c", "C", "b")
    await drain(notifier)
    assert [c[2] for c in send.calls] == ["warning", "warning", "warning"]
    stats = notifier.stats()
    assert (stats.sent, stats.failed) == (0, 3)
    assert "alert 'a' not delivered on route primary (RuntimeError); dropped" in caplog.text
    assert "alert 'c' not delivered on route primary (the service reported failure)" in caplog.text
    assert "unknown level 'nonsense'" in caplog.text


async def test_notify_survives_a_broken_clock(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenClock(SimClock):
        def now_ms(self) -> int:
            raise OSError("clock gone")

    send = FakeSend()
    notifier = Notifier(urls=[], clock=BrokenClock(), send=send)
    notifier.notify("k", "T", "b")  # must not raise
    assert "alert bookkeeping failed for key 'k'" in caplog.text


async def test_hung_send_times_out_and_the_next_alert_still_goes() -> None:
    send = FakeSend()
    send.hang = True
    notifier, _ = make(send, send_timeout_s=0.01)
    notifier.start()
    notifier.notify("a", "A", "b")
    for _ in range(1000):
        await asyncio.sleep(0.001)
        if notifier.stats().failed:
            break
    send.hang = False
    notifier.notify("b", "B", "b")
    await drain(notifier)
    assert (notifier.stats().failed, notifier.stats().sent) == (1, 1)


async def test_stop_drains_queued_alerts() -> None:
    send = FakeSend()
    notifier, _ = make(send)
    for i in range(3):
        notifier.notify(f"k{i}", f"T{i}", "b")
    notifier.start()
    await notifier.stop()
    assert len(send.calls) == 3
    assert notifier.stats().queued == 0


async def test_stop_cancels_a_stuck_sender_and_counts_the_loss() -> None:
    send = FakeSend()
    send.hang = True
    notifier, _ = make(send)
    notifier.start()
    notifier.notify("a", "A", "b")
    notifier.notify("b", "B", "b")
    await asyncio.sleep(0)
    await notifier.stop(timeout_s=0.01)
    assert notifier.state is NotifierState.STOPPED
    assert notifier.stats().dropped == 2  # the one in flight and the one queued
    assert notifier.stats().queued == 0
    notifier.notify("c", "C", "b")  # after stop: logged and counted, never raised
    assert notifier.stats().dropped == 3


async def test_stop_before_start_drops_queued() -> None:
    send = FakeSend()
    notifier, _ = make(send)
    notifier.notify("a", "A", "b")
    await notifier.stop()
    assert notifier.stats().dropped == 1
    assert send.calls == []


async def test_lifecycle_transitions() -> None:
    notifier, _ = make(FakeSend())
    assert notifier.state is NotifierState.NEW
    notifier.start()
    assert notifier.state is NotifierState.RUNNING
    with pytest.raises(IllegalTransition, match="cannot start while running"):
        notifier.start()
    await notifier.stop()
    with pytest.raises(IllegalTransition, match="cannot stop while stopped"):
        await notifier.stop()
    with pytest.raises(IllegalTransition, match="cannot start while stopped"):
        notifier.start()


async def test_without_urls_alerts_are_logged_only(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(urls=[], clock=SimClock(0))
    notifier.start()
    with caplog.at_level(logging.INFO, logger="infra.alerts"):
        notifier.notify("k", "Kill switch", "touched", level="critical")
        notifier.notify("k", "Kill switch", "touched", level="critical")
    await notifier.stop()
    records = [r for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].getMessage() == "ALERT k [critical] Kill switch: touched"
    assert notifier.stats().sent == 0


async def test_url_never_logged_when_send_error_quotes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = FakeSend(error=ConnectionError(f"cannot POST to {SECRET_URL}"))
    notifier, _ = make(send)
    caplog.set_level(logging.DEBUG)
    notifier.start()
    notifier.notify("k", "T", "b")
    await drain(notifier)
    assert notifier.stats().failed == 1
    assert "tok3n-s3cret-abcdef" not in caplog.text


async def test_real_apprise_failure_never_logs_the_url(caplog: pytest.LogCaptureFixture) -> None:
    # Port 1 on loopback refuses the connection: a real apprise send that fails.
    caplog.set_level(logging.DEBUG)
    notifier = Notifier(urls=[SECRET_URL], clock=SimClock(0), send_timeout_s=20)
    notifier.start()
    notifier.notify("k", "T", "b")
    await notifier.stop(timeout_s=30)
    assert notifier.stats().failed == 1
    assert "apprise" in {r.name.split(".")[0] for r in caplog.records}
    assert "tok3n-s3cret-abcdef" not in caplog.text
    assert "***" in caplog.text
    # The redaction filter is removed again on stop.
    assert not logging.getLogger("apprise").filters


def test_invalid_url_is_a_config_error_without_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError, match=r"#2 \(scheme 'nosuchscheme'\)") as err:
        Notifier(
            urls=[SECRET_URL, "nosuchscheme://s3cretbadtoken@host/x"],
            clock=SimClock(0),
        )
    assert "s3cretbadtoken" not in str(err.value)
    assert "s3cretbadtoken" not in caplog.text
    assert not logging.getLogger("apprise").filters


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dedupe_seconds": -1}, "dedupe_seconds"),
        ({"escalate_after_seconds": 0}, "escalate_after_seconds"),
        ({"remind_seconds": 0}, "remind_seconds"),
        ({"max_queue": 0}, "max_queue"),
        ({"send_timeout_s": 0}, "send_timeout_s"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make(FakeSend(), **kwargs)
