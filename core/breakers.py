"""Circuit breakers and loss stops: conditions in, latched states and a trading state out.

A breaker trips the moment its condition holds and stays tripped (latched) until the condition
has been clear for `clear_after_seconds`, so a flapping condition cannot flap trading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from core.clock import day_start_ms, week_start_ms
from core.config import BreakersConfig, BreakerSpec, RiskConfig
from core.models import BreakerState, EquityMarks, Regime, TradingState
from core.reasons import Breaker

_HUNDRED = Decimal(100)

# Loss stops reduce; they are not configurable to halt because halting also blocks exits.
_LOSS_SPEC = BreakerSpec(enabled=True, action="REDUCING")


class Condition(NamedTuple):
    """One breaker's condition this cycle (a tuple: eight are built every cycle)."""

    name: str
    active: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    name: str
    event: str  # "trip" | "clear"
    reason: str


def count_recent(timestamps: Sequence[int], now_ms: int, window_ms: int) -> int:
    lo = now_ms - window_ms
    return sum(1 for t in timestamps if lo < t <= now_ms)


def spec_of(cfg: BreakersConfig, name: str) -> BreakerSpec:
    return cfg.specs.get(name, _LOSS_SPEC)


def data_conditions(
    cfg: BreakersConfig,
    *,
    now_ms: int,
    data_age_ms: int | None,
    api_errors: Sequence[int],
    rejections: Sequence[int],
    degraded_share_pct: Decimal,
    regime: Regime,
) -> list[Condition]:
    errs, rejs, stale, burst, rejected, degraded, crash = _data_flags(
        cfg, now_ms, data_age_ms, api_errors, rejections, degraded_share_pct, regime
    )
    # Reasons are only formatted when they will be read: this runs every cycle.
    return [
        Condition(
            Breaker.STALE_DATA,
            stale,
            ("no data" if data_age_ms is None else f"data {data_age_ms // 1000}s old")
            if stale
            else "",
        ),
        Condition(
            Breaker.API_ERRORS,
            burst,
            f"{errs} API errors in {cfg.api_error_window_seconds}s" if burst else "",
        ),
        Condition(
            Breaker.REJECTIONS,
            rejected,
            f"{rejs} rejections in {cfg.rejection_window_seconds}s" if rejected else "",
        ),
        Condition(
            Breaker.DEGRADED_PRODUCTS,
            degraded,
            f"{degraded_share_pct:.0f}% of products degraded" if degraded else "",
        ),
        Condition(Breaker.CRASH_REGIME, crash, "index regime is crash" if crash else ""),
    ]


def _data_flags(
    cfg: BreakersConfig,
    now_ms: int,
    data_age_ms: int | None,
    api_errors: Sequence[int],
    rejections: Sequence[int],
    degraded_share_pct: Decimal,
    regime: Regime,
) -> tuple[int, int, bool, bool, bool, bool, bool]:
    errs = (
        count_recent(api_errors, now_ms, cfg.api_error_window_seconds * 1000) if api_errors else 0
    )
    rejs = (
        count_recent(rejections, now_ms, cfg.rejection_window_seconds * 1000) if rejections else 0
    )
    return (
        errs,
        rejs,
        data_age_ms is None or data_age_ms > cfg.stale_data_seconds * 1000,
        errs >= cfg.api_error_count,
        rejs >= cfg.rejection_count,
        degraded_share_pct >= cfg.degraded_products_pct,
        regime is Regime.CRASH,
    )


def roll_marks(marks: EquityMarks, equity: Decimal, now_ms: int) -> EquityMarks:
    """New day or week: its starting equity is the first equity seen in it."""
    day = day_start_ms(now_ms)
    week = week_start_ms(now_ms)
    hwm = equity if equity > marks.hwm else marks.hwm
    if day == marks.day_start_ms and week == marks.week_start_ms and hwm is marks.hwm:
        return marks
    return EquityMarks(
        hwm=hwm,
        day_start_ms=day,
        day_start_equity=marks.day_start_equity if day == marks.day_start_ms else equity,
        week_start_ms=week,
        week_start_equity=marks.week_start_equity if week == marks.week_start_ms else equity,
    )


def _loss_pcts(marks: EquityMarks, equity: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    def pct(ref: Decimal) -> Decimal:
        return (equity / ref - 1) * _HUNDRED if ref > 0 else Decimal(0)

    return pct(marks.day_start_equity), pct(marks.week_start_equity), pct(marks.hwm)


def loss_conditions(risk: RiskConfig, marks: EquityMarks, equity: Decimal) -> list[Condition]:
    day, week, dd = _loss_pcts(marks, equity)
    d_hit = day <= risk.daily_loss_stop_pct
    w_hit = week <= risk.weekly_loss_stop_pct
    dd_hit = dd <= risk.max_drawdown_pct
    return [
        Condition(Breaker.DAILY_LOSS, d_hit, f"day {day:.2f}%" if d_hit else ""),
        Condition(Breaker.WEEKLY_LOSS, w_hit, f"week {week:.2f}%" if w_hit else ""),
        Condition(Breaker.MAX_DRAWDOWN, dd_hit, f"drawdown {dd:.2f}%" if dd_hit else ""),
    ]


def evaluate(
    current: Mapping[str, BreakerState],
    cfg: BreakersConfig,
    risk: RiskConfig,
    *,
    now_ms: int,
    data_age_ms: int | None,
    api_errors: Sequence[int],
    rejections: Sequence[int],
    degraded_share_pct: Decimal,
    regime: Regime,
    marks: EquityMarks,
    equity: Decimal,
) -> tuple[Mapping[str, BreakerState], list[BreakerEvent]]:
    """Every breaker and loss stop this cycle: conditions, then the latch.

    The usual cycle has nothing tripped and nothing to trip; it is answered from the flags
    alone, without building a condition per breaker (this runs every cycle of a backtest).
    Otherwise the latch decides, and the reasons are formatted only if something trips.
    """
    flags = _data_flags(
        cfg, now_ms, data_age_ms, api_errors, rejections, degraded_share_pct, regime
    )
    if (
        equity >= marks.hwm
        and equity >= marks.day_start_equity
        and equity >= marks.week_start_equity
    ):
        # No loss from any reference: every loss % is >= 0 and the stops are negative
        # (validated), so none is active; the usual flat cycle skips three divisions.
        losses: tuple[bool, bool, bool] = (False, False, False)
    else:
        day, week, dd = _loss_pcts(marks, equity)
        losses = (
            day <= risk.daily_loss_stop_pct,
            week <= risk.weekly_loss_stop_pct,
            dd <= risk.max_drawdown_pct,
        )
    actives = (*flags[2:], *losses)
    if not any(actives) and not any(b.tripped for b in current.values()):
        return current, []
    conditions = [Condition(name, active) for name, active in zip(ORDER, actives, strict=True)]

    def reasons() -> dict[str, str]:
        found = data_conditions(
            cfg,
            now_ms=now_ms,
            data_age_ms=data_age_ms,
            api_errors=api_errors,
            rejections=rejections,
            degraded_share_pct=degraded_share_pct,
            regime=regime,
        )
        return {c.name: c.reason for c in (*found, *loss_conditions(risk, marks, equity))}

    return latch(current, conditions, cfg, now_ms, reasons=reasons)


# The order data_conditions + loss_conditions list the breakers in.
ORDER: tuple[str, ...] = (
    Breaker.STALE_DATA,
    Breaker.API_ERRORS,
    Breaker.REJECTIONS,
    Breaker.DEGRADED_PRODUCTS,
    Breaker.CRASH_REGIME,
    Breaker.DAILY_LOSS,
    Breaker.WEEKLY_LOSS,
    Breaker.MAX_DRAWDOWN,
)


def latch(
    current: Mapping[str, BreakerState],
    conditions: Sequence[Condition],
    cfg: BreakersConfig,
    now_ms: int,
    *,
    reasons: Callable[[], Mapping[str, str]] | None = None,
) -> tuple[Mapping[str, BreakerState], list[BreakerEvent]]:
    """The breakers' states after this cycle's conditions, and what tripped or cleared.

    Returns `current` itself when nothing changes. A trip's reason is the condition's own, or,
    when `reasons` is given, looked up there: it is called only when a breaker trips, so a
    cycle where breakers simply stay tripped (a loss stop holding for the rest of the day)
    formats no reasons.
    """
    if not any(c.active for c in conditions) and not any(b.tripped for b in current.values()):
        return current, []  # the usual cycle: nothing tripped, nothing to trip
    clear_ms = cfg.clear_after_seconds * 1000
    out: dict[str, BreakerState] | None = None  # copied from `current` on the first change
    events: list[BreakerEvent] = []
    looked_up: Mapping[str, str] | None = None
    for c in conditions:
        spec = spec_of(cfg, c.name)
        st = current.get(c.name)
        new: BreakerState | None = None
        if c.active and spec.enabled:
            if st is None or not st.tripped:
                reason = c.reason
                if reasons is not None:
                    looked_up = reasons() if looked_up is None else looked_up
                    reason = looked_up.get(c.name, reason)
                new = BreakerState(c.name, True, now_ms, 0, reason)
                events.append(BreakerEvent(c.name, "trip", reason))
            elif st.clear_since_ms:
                new = BreakerState(c.name, True, st.tripped_ms, 0, st.reason)
        elif st is not None and st.tripped:
            if not spec.enabled:
                new = BreakerState(c.name)
                events.append(BreakerEvent(c.name, "clear", "breaker disabled"))
            else:
                since = st.clear_since_ms or now_ms
                if now_ms - since >= clear_ms:
                    new = BreakerState(c.name)
                    events.append(
                        BreakerEvent(c.name, "clear", f"clear for {(now_ms - since) // 1000}s")
                    )
                elif since != st.clear_since_ms:
                    new = BreakerState(c.name, True, st.tripped_ms, since, st.reason)
        if new is not None:
            if out is None:
                out = dict(current)
            out[c.name] = new
    if out is None:
        return current, events
    return MappingProxyType(out), events


def trading_state(
    breakers: Mapping[str, BreakerState], cfg: BreakersConfig, *, kill_switch: bool
) -> tuple[TradingState, tuple[str, ...]]:
    """HALTED beats REDUCING beats ACTIVE. Returns the state and the breakers causing it."""
    if kill_switch:
        return TradingState.HALTED, ("kill_switch",)
    halting: list[str] = []
    reducing: list[str] = []
    for name in sorted(breakers):
        st = breakers[name]
        if not st.tripped:
            continue
        if spec_of(cfg, name).action == "HALTED":
            halting.append(name)
        else:
            reducing.append(name)
    if halting:
        return TradingState.HALTED, tuple(halting)
    if reducing:
        return TradingState.REDUCING, tuple(reducing)
    return TradingState.ACTIVE, ()
