"""The engine's types: its lifecycle, the sink it hands the feed (the feed and sink ports are
core/ports.py's), its telemetry port and its health record. Kept apart so runner/engine.py is
the engine alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from core.features import BadTick
from core.models import CycleDecision, Market, Position
from core.ports import CandleSink

if TYPE_CHECKING:
    from runner.engine import Engine

# Told the markets and positions after start and after every cycle (what a live feed polls).
AccountListener = Callable[[Mapping[str, Market], Mapping[str, Position]], None]


class EngineStatus(Enum):
    NEW = "new"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"


TRANSITIONS: dict[tuple[EngineStatus, str], EngineStatus] = {
    (EngineStatus.NEW, "start"): EngineStatus.STARTED,
    (EngineStatus.NEW, "stop"): EngineStatus.STOPPING,
    (EngineStatus.STARTED, "stop"): EngineStatus.STOPPING,
    (EngineStatus.STOPPING, "stopped"): EngineStatus.STOPPED,
}


class EngineNotRunning(RuntimeError):
    """An engine asked to do what its lifecycle state does not allow."""


class Lifecycle:
    """The engine's lifecycle state, moved only along TRANSITIONS."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = EngineStatus.NEW

    def check(self, trigger: str) -> None:
        """EngineNotRunning unless `trigger` is allowed now."""
        if (self.status, trigger) not in TRANSITIONS:
            raise EngineNotRunning(f"engine is {self.status.value}: cannot {trigger}")

    def to(self, trigger: str) -> None:
        self.check(trigger)
        self.status = TRANSITIONS[(self.status, trigger)]

    def require_started(self, what: str) -> None:
        if self.status is not EngineStatus.STARTED:
            hint = "; call start() first" if self.status is EngineStatus.NEW else ""
            raise EngineNotRunning(f"engine is {self.status.value}: cannot {what}{hint}")


class EngineSink:
    """The per-candle path into the engine: a CandleSink (`sink(symbol, ts, o, h, lo, c, v)`)
    that can also hand a feed one symbol's parts, its candle step and its listener, so a replay
    calls them directly (a million candles in a backtest: one Python call less each).
    A feed that uses `parts` must send BadTick from the step to `bad_tick` and call the
    listener only for candles the step accepted, exactly as `__call__` does."""

    __slots__ = ("_listeners", "_parts", "_pusher_for", "bad_tick")

    def __init__(
        self,
        pusher_for: Callable[[str], Callable[..., Any]],
        listeners: Sequence[CandleSink],
        bad_tick: Callable[[BadTick], None],
    ) -> None:
        self._pusher_for = pusher_for
        self._listeners = tuple(listeners)
        self._parts: dict[str, tuple[Callable[..., Any], CandleSink | None]] = {}
        self.bad_tick = bad_tick

    def parts(self, symbol: str) -> tuple[Callable[..., Any], CandleSink | None]:
        p = self._parts.get(symbol)
        if p is None:
            listeners = self._listeners
            listener: CandleSink | None
            if not listeners:
                listener = None
            elif len(listeners) == 1:
                listener = listeners[0]
            else:

                def listener(*candle: Any) -> None:
                    for each in listeners:
                        each(*candle)

            p = self._parts[symbol] = (self._pusher_for(symbol), listener)
        return p

    def __call__(
        self, symbol: str, ts: int, o: float, h: float, lo: float, c: float, v: float
    ) -> None:
        push, listener = self._parts.get(symbol) or self.parts(symbol)
        try:
            push(ts, o, h, lo, c, v)
        except BadTick as exc:
            self.bad_tick(exc)
            return
        if listener is not None:
            listener(symbol, ts, o, h, lo, c, v)


class Telemetry(Protocol):
    def cycle(self, d: CycleDecision, engine: Engine, seconds: float) -> None: ...

    def event(self, name: str, **labels: str) -> None: ...


class NullTelemetry:
    def cycle(self, d: CycleDecision, engine: Engine, seconds: float) -> None:
        return None

    def event(self, name: str, **labels: str) -> None:
        return None


@dataclass
class Health:
    """Last successful update per component (ms) and a short status each."""

    market_data_ms: int = 0
    exchange_ms: int = 0
    execution_ms: int = 0
    strategies_ms: int = 0
    store_ms: int = 0
    exchange_error: str = ""
    started: bool = False
    # coins on the venue the state does not know (runner/holdings.py): symbol -> amount
    unknown_holdings: dict[str, str] = field(default_factory=dict)
    unknown_policy: str = ""
