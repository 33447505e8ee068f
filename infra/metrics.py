"""Prometheus metrics for the daemon: the `Telemetry` the engine reports every cycle to.

Each `Metrics` owns its registry (never the process-global default), so two engines in one
process, or two tests, never share counters. Every label value is bounded: stages, reasons and
kinds come from code, and each labelled family still caps how many distinct values it accepts
(extra ones are counted under "other"), so a bug can never grow the scrape without limit.
Client order ids, symbols outside the universe and free text never become labels.
Label cleaning, the caps and the bucket bounds live in infra/metrics_labels.py; what the metrics
read from the engine in infra/metrics_view.py. The guard, alert, rate-limit, shadow-mode and
stream families are groups of their own (infra/metrics_guards.py, metrics_alerts.py,
metrics_limits.py, metrics_shadow.py, metrics_streams.py), built on this registry.

`cycle()` runs once per cycle and does a few dozen dictionary lookups and gauge sets; label
children are cached so the hot path does not rebuild label tuples.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from core.features import SymbolFeatures
from core.models import CycleDecision, Position, Regime, Side, TradingState
from core.reasons import Breaker, NoTradeReason, RiskReason
from infra.metrics_alerts import AlertMetrics
from infra.metrics_guards import GuardMetrics
from infra.metrics_labels import (
    CYCLE_BUCKETS,
    FILL_SIDES,
    KILL_BUCKETS,
    ORDER_RESULTS,
    STAGE_BUCKETS,
    _Family,
    _one_hot,
    clean_label,
    reason_code,
)
from infra.metrics_limits import RateLimitMetrics
from infra.metrics_shadow import ShadowMetrics
from infra.metrics_streams import StreamMetrics
from infra.metrics_view import EngineView

log = logging.getLogger("vigil.metrics")


class Metrics:
    """The daemon's Prometheus metrics; satisfies `runner.engine.Telemetry`.

    `cycle_budget_ms` is the loop's `loop.cycle_budget_ms`: slower cycles count in
    vigil_cycle_budget_exceeded_total. `max_symbols` caps the per-symbol data-age series
    (the universe's max_size is at most 500).
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        cycle_budget_ms: int = 5_000,
        max_symbols: int = 500,
        max_label_values: int = 64,
    ) -> None:
        if cycle_budget_ms <= 0:
            raise ValueError(f"cycle_budget_ms must be positive, got {cycle_budget_ms}")
        self.registry = registry if registry is not None else CollectorRegistry()
        self._budget_s = cycle_budget_ms / 1000.0
        self._max_symbols = max_symbols
        r = self.registry
        cap = max_label_values

        self.cycle_seconds = Histogram(
            "vigil_cycle_seconds",
            "Duration of one whole engine step (I/O included).",
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.stage_latency = _Family(
            Histogram(
                "vigil_stage_latency_seconds",
                "Duration of each pure pipeline stage inside run_cycle.",
                ["stage"],
                buckets=STAGE_BUCKETS,
                registry=r,
            ),
            cap=cap,
        )
        self.cycles = Counter("vigil_cycles", "Cycles completed.", registry=r)
        self.budget_exceeded = Counter(
            "vigil_cycle_budget_exceeded",
            "Cycles slower than loop.cycle_budget_ms.",
            registry=r,
        )
        self.equity = Gauge(
            "vigil_equity", "Equity in the quote currency at the last cycle.", registry=r
        )
        exposure = Gauge(
            "vigil_exposure",
            "Quote value at risk: scope=total is held positions at the last close, "
            "scope=pending_buys the unfilled rest of live buy orders.",
            ["scope"],
            registry=r,
        )
        self.exposure_total = exposure.labels("total")
        self.exposure_pending = exposure.labels("pending_buys")
        self.exposure_pct = Gauge(
            "vigil_exposure_pct",
            "Held positions at the last close as a percentage of equity.",
            registry=r,
        )
        self.positions = Gauge("vigil_positions", "Open positions.", registry=r)
        self.audit_last_seq = Gauge(
            "vigil_audit_last_seq",
            "Seq of the newest durable audit record (its hash is in the `audit checkpoint` "
            "log line).",
            registry=r,
        )
        self.open_orders = Gauge("vigil_open_orders", "Live orders (NEW/OPEN/PARTIAL).", registry=r)
        self.fills = _Family(
            Counter("vigil_fills", "Fills booked, by side.", ["side"], registry=r),
            cap=cap,
            known=FILL_SIDES,
        )
        self.orders = _Family(
            Counter(
                "vigil_orders",
                "Order submissions by outcome (accepted, rejected, failed, blocked).",
                ["result"],
                registry=r,
            ),
            cap=cap,
            known=ORDER_RESULTS,
        )
        self.rejections = _Family(
            Counter(
                "vigil_rejections",
                "Proposals refused by risk, by reason code.",
                ["reason"],
                registry=r,
            ),
            cap=cap,
            known=[x.value for x in RiskReason if x is not RiskReason.APPROVED],
        )
        self.no_trade = _Family(
            Counter(
                "vigil_no_trade",
                "Cycles that placed no order, by reason code.",
                ["reason"],
                registry=r,
            ),
            cap=cap,
            known=[x.value for x in NoTradeReason],
        )
        self._breaker_names = tuple(b.value for b in Breaker)
        self._breaker_set = frozenset(self._breaker_names)
        self.breakers = _Family(
            Gauge(
                "vigil_breaker_tripped",
                "1 while the circuit breaker is tripped (latched), else 0.",
                ["breaker"],
                registry=r,
            ),
            cap=cap,
            known=self._breaker_names,
        )
        self.kill_switch = Gauge(
            "vigil_kill_switch", "1 while the kill switch is engaged (file or latch).", registry=r
        )
        self._states = tuple(s.value for s in TradingState)
        self.trading_state = _Family(
            Gauge(
                "vigil_trading_state",
                "1 for the current trading state (ACTIVE, REDUCING, HALTED), 0 for the others.",
                ["state"],
                registry=r,
            ),
            cap=cap,
            known=self._states,
        )
        self._regimes = tuple(x.value for x in Regime)
        self.regime = _Family(
            Gauge(
                "vigil_regime",
                "1 for the current market regime, 0 for the others.",
                ["regime"],
                registry=r,
            ),
            cap=cap,
            known=self._regimes,
        )
        self.data_age = Gauge(
            "vigil_data_age_seconds",
            "Age of the freshest closed candle at the last cycle: cycle time - (open + "
            "timeframe). +Inf when no candle has arrived.",
            registry=r,
        )
        self.data_age.set(math.nan)  # unknown until the first cycle, not "fresh"
        self.symbol_age = Gauge(
            "vigil_symbol_data_age_seconds",
            "Age of each universe or held symbol's latest closed candle at the last cycle.",
            ["symbol"],
            registry=r,
        )
        self._symbols: dict[str, Any] = {}  # symbol -> its cached gauge child
        self.api_errors = _Family(
            Counter(
                "vigil_api_errors",
                "Exchange API errors, by error class.",
                ["kind"],
                registry=r,
            ),
            cap=cap,
        )
        self.bad_ticks = _Family(
            Counter(
                "vigil_bad_ticks",
                "Candles refused by the feature bank, by reason.",
                ["reason"],
                registry=r,
            ),
            cap=cap,
        )
        kill_latency = Histogram(
            "vigil_kill_switch_latency_seconds",
            "Kill switch: phase=block is detection to new orders blocked, phase=cancel is "
            "detection to every open order cancelled.",
            ["phase"],
            buckets=KILL_BUCKETS,
            registry=r,
        )
        self.kill_block = kill_latency.labels("block")
        self.kill_cancel = kill_latency.labels("cancel")
        self.shadow = ShadowMetrics(r)
        self.info = Gauge(
            "vigil_info",
            "Always 1; the labels describe the running daemon.",
            ["version", "mode", "exchange", "config_hash"],
            registry=r,
        )
        self.last_cycle = Gauge(
            "vigil_last_cycle_timestamp_seconds",
            "Cycle time (UTC epoch seconds) of the last completed cycle.",
            registry=r,
        )
        self.guards = GuardMetrics(r, cap=cap)
        self._events = {
            "cycle_error": (self.guards.cycle_errors, "kind"),
            "no_trade": (self.no_trade, "reason"),
            "order": (self.orders, "result"),
            "fill": (self.fills, "side"),
            "api_error": (self.api_errors, "kind"),
            "bad_tick": (self.bad_ticks, "reason"),
        }
        self._unknown_events: set[str] = set()
        self.alerts = AlertMetrics(r)
        self.rate_limits = RateLimitMetrics(r)
        self.streams: StreamMetrics | None = None  # built by watch_streams

    # ---- Telemetry --------------------------------------------------------------------------

    def cycle(self, d: CycleDecision, engine: EngineView, seconds: float) -> None:
        self.cycle_seconds.observe(seconds)
        self.cycles.inc()
        if seconds > self._budget_s:
            self.budget_exceeded.inc()
        stage = self.stage_latency.child
        for name, ms in d.timings_ms:
            stage(name).observe(ms / 1000.0)
        for v in d.verdicts:
            if not v.approved:
                self.rejections.child(v.reason).inc()
        if d.no_trade_reason:
            self.no_trade.child(reason_code(d.no_trade_reason)).inc()
        self.last_cycle.set(d.ts / 1000.0)
        _one_hot(self.regime, self._regimes, d.regime.value)
        _one_hot(self.trading_state, self._states, d.trading_state.value)

        features = engine.bank.latest()
        self._portfolio(d.equity, engine, features)
        self._data_age(d, engine.config.timeframe_ms, features, engine.portfolio.positions)
        self.update_state(engine)

    def event(self, name: str, **labels: str) -> None:
        spec = self._events.get(name)
        if spec is None:
            if name not in self._unknown_events and len(self._unknown_events) < 64:
                self._unknown_events.add(name)
                log.debug("telemetry event %r has no metric; ignored", name)
            return
        family, key = spec
        family.child(labels.get(key, "unknown")).inc()

    # ---- called by the loop -----------------------------------------------------------------

    def update_state(self, engine: EngineView) -> None:
        """Breakers and kill switch from the engine's current state. The loop may call this
        right after engaging or re-arming the kill switch, without waiting for a cycle."""
        breakers = engine.state.breakers
        child = self.breakers.child
        for name in self._breaker_names:
            b = breakers.get(name)
            child(name).set(1 if b is not None and b.tripped else 0)
        for name, b in breakers.items():
            if name not in self._breaker_set:
                # A breaker the enum does not list: still exported, never silently dropped.
                child(name).set(1 if b.tripped else 0)
        self.kill_switch.set(1 if engine.kill_active() else 0)
        self.guards.set_exits_only(engine.exits_only)

    def on_shadow(self, data: Mapping[str, Any]) -> None:
        """ShadowObserver hook: one call per `shadow_order` record."""
        self.shadow.on_shadow(data)

    def observe_kill_latency(self, block_s: float, cancel_s: float) -> None:
        self.kill_block.observe(block_s)
        self.kill_cancel.observe(cancel_s)
        self.kill_switch.set(1)

    def audit_checkpoint(self, seq: int, digest: str) -> None:
        del digest  # a label per hash would grow without bound; the log line carries it
        self.audit_last_seq.set(seq)

    def watch_streams(self, stats: Any) -> None:
        """The WebSocket streams' figures (infra/streams.py StreamStats), read at each scrape."""
        self.streams = StreamMetrics(self.registry, stats)

    def observe_fast_exit(self, seconds: float) -> None:
        if self.streams is not None:
            self.streams.fast_exit_seconds.observe(seconds)

    def set_info(self, *, version: str, mode: str, exchange: str, config_hash: str) -> None:
        self.info.clear()
        self.info.labels(
            clean_label(version), clean_label(mode), clean_label(exchange), clean_label(config_hash)
        ).set(1)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # ---- internals --------------------------------------------------------------------------

    def _portfolio(
        self, equity: Decimal, engine: EngineView, features: Mapping[str, SymbolFeatures]
    ) -> None:
        positions = engine.portfolio.positions
        held = 0.0
        for sym, pos in positions.items():
            f = features.get(sym)
            # Same fallback as core.portfolio.value: no mark means valued at entry.
            price = f.close if f is not None else float(pos.avg_entry_price)
            held += float(pos.quantity) * price
        live = engine.book.live()
        pending = 0.0
        for o in live:
            if o.side is Side.BUY and o.price is not None:
                pending += float(o.remaining * o.price)
        eq = float(equity)
        self.equity.set(eq)
        self.exposure_total.set(held)
        self.exposure_pending.set(pending)
        if eq > 0:
            self.exposure_pct.set(held / eq * 100.0)
        else:
            self.exposure_pct.set(math.inf if held > 0 else 0.0)
        self.positions.set(len(positions))
        self.open_orders.set(len(live))

    def _data_age(
        self,
        d: CycleDecision,
        timeframe_ms: int,
        features: Mapping[str, SymbolFeatures],
        positions: Mapping[str, Position],
    ) -> None:
        now = d.ts
        newest = max((f.ts for f in features.values()), default=-1)
        self.data_age.set(math.inf if newest < 0 else (now - newest - timeframe_ms) / 1000.0)

        # Per symbol: the universe plus what we hold, so the series count follows max_size.
        wanted = set(d.universe.eligible)
        wanted.update(positions)
        if len(wanted) > self._max_symbols:
            wanted = set(sorted(wanted)[: self._max_symbols])
        children = self._symbols
        for sym in [s for s in children if s not in wanted]:
            del children[sym]
            with contextlib.suppress(KeyError):  # two symbols that clean to one label
                self.symbol_age.remove(clean_label(sym))
        for sym in wanted:
            c = children.get(sym)
            if c is None:
                c = children[sym] = self.symbol_age.labels(clean_label(sym))
            f = features.get(sym)
            c.set(math.inf if f is None else (now - f.ts - timeframe_ms) / 1000.0)
