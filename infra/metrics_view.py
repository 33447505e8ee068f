"""What `infra.metrics.Metrics` reads from the engine each cycle: narrow read-only views of
`runner.engine.Engine`, so the metrics never hold the engine itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from core.features import SymbolFeatures
from core.models import BreakerState, Order, Position


class FeatureSource(Protocol):
    def latest(self) -> Mapping[str, SymbolFeatures]: ...


class OrderSource(Protocol):
    def live(self) -> list[Order]: ...


class PortfolioView(Protocol):
    @property
    def positions(self) -> Mapping[str, Position]: ...


class StateView(Protocol):
    @property
    def breakers(self) -> Mapping[str, BreakerState]: ...


class ConfigView(Protocol):
    @property
    def timeframe_ms(self) -> int: ...


class EngineView(Protocol):
    """What `Metrics.cycle` reads from `runner.engine.Engine` (and nothing else)."""

    @property
    def portfolio(self) -> PortfolioView: ...

    @property
    def book(self) -> OrderSource: ...

    @property
    def bank(self) -> FeatureSource: ...

    @property
    def state(self) -> StateView: ...

    @property
    def config(self) -> ConfigView: ...

    @property
    def exits_only(self) -> Mapping[str, str]: ...

    def kill_active(self) -> bool: ...
