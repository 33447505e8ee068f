"""Circuit breakers: conditions, latching and clearing, equity marks, loss stops, state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.breakers import (
    ORDER,
    BreakerEvent,
    Condition,
    count_recent,
    data_conditions,
    latch,
    loss_conditions,
    roll_marks,
    spec_of,
    trading_state,
)
from core.config import BreakersConfig, BreakerSpec, RiskConfig
from core.models import BreakerState, EquityMarks, Regime, TradingState
from core.reasons import Breaker as B

CFG = BreakersConfig()  # clear after 300 s
CLEAR_MS = CFG.clear_after_seconds * 1000
NOW = 1_704_067_200_000  # 2024-01-01T00:00:00Z, Monday


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, milli: int = 0) -> int:
    t = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    return int(t.timestamp()) * 1000 + milli


def test_the_known_epoch_is_what_it_says() -> None:
    assert ms(2024, 1, 1) == NOW


# --------------------------------------------------------------------------- count_recent


def test_count_recent_window_edges() -> None:
    window = 60_000
    ts = [NOW - window, NOW - window + 1, NOW - 1, NOW, NOW + 1]
    # Strictly after the window start, up to and including now; the future does not count.
    assert count_recent(ts, NOW, window) == 3
    assert count_recent([], NOW, window) == 0


# --------------------------------------------------------------------------- data conditions


def conds(**kw: object) -> dict[str, Condition]:
    args: dict[str, object] = {
        "now_ms": NOW,
        "data_age_ms": 0,
        "api_errors": (),
        "rejections": (),
        "degraded_share_pct": Decimal(0),
        "regime": Regime.BULL,
    }
    args.update(kw)
    return {c.name: c for c in data_conditions(CFG, **args)}  # type: ignore[arg-type]


def active(cs: Mapping[str, Condition]) -> set[str]:
    return {n for n, c in cs.items() if c.active}


def test_all_clear() -> None:
    cs = conds()
    assert set(cs) == {
        B.STALE_DATA,
        B.API_ERRORS,
        B.REJECTIONS,
        B.DEGRADED_PRODUCTS,
        B.CRASH_REGIME,
    }
    assert active(cs) == set()


def test_stale_data_threshold() -> None:
    limit = CFG.stale_data_seconds * 1000
    assert active(conds(data_age_ms=limit)) == set()
    cs = conds(data_age_ms=limit + 1)
    assert active(cs) == {B.STALE_DATA} and cs[B.STALE_DATA].reason == "data 900s old"


def test_no_data_at_all_is_stale() -> None:
    cs = conds(data_age_ms=None)
    assert active(cs) == {B.STALE_DATA} and cs[B.STALE_DATA].reason == "no data"


def test_api_error_burst_threshold() -> None:
    four = tuple(NOW - i * 1000 for i in range(4))
    assert active(conds(api_errors=four)) == set()
    five = (*four, NOW - 59_999)
    assert active(conds(api_errors=five)) == {B.API_ERRORS}
    old = (*four, NOW - 60_000)  # the fifth fell out of the 60 s window
    assert active(conds(api_errors=old)) == set()


def test_rejection_burst_threshold() -> None:
    assert active(conds(rejections=(NOW, NOW - 1))) == set()
    assert active(conds(rejections=(NOW, NOW - 1, NOW - 299_999))) == {B.REJECTIONS}


def test_degraded_products_threshold() -> None:
    assert active(conds(degraded_share_pct=Decimal("49.99"))) == set()
    assert active(conds(degraded_share_pct=Decimal(50))) == {B.DEGRADED_PRODUCTS}


@pytest.mark.parametrize("regime", list(Regime))
def test_crash_regime_condition(regime: Regime) -> None:
    assert (B.CRASH_REGIME in active(conds(regime=regime))) == (regime is Regime.CRASH)


# --------------------------------------------------------------------------- latch


def on(name: str = B.API_ERRORS, reason: str = "burst") -> list[Condition]:
    return [Condition(name, True, reason)]


def off(name: str = B.API_ERRORS) -> list[Condition]:
    return [Condition(name, False, "")]


def test_trips_at_once() -> None:
    states, events = latch({}, on(), CFG, NOW)
    assert states[B.API_ERRORS] == BreakerState(B.API_ERRORS, True, NOW, 0, "burst")
    assert events == [BreakerEvent(B.API_ERRORS, "trip", "burst")]


def test_stays_latched_while_active_without_new_events() -> None:
    states, _ = latch({}, on(), CFG, NOW)
    again, events = latch(states, on(reason="still"), CFG, NOW + 10_000)
    assert events == [] and again == states
    assert again[B.API_ERRORS].tripped_ms == NOW and again[B.API_ERRORS].reason == "burst"


def test_clears_only_after_clear_after_seconds_of_calm() -> None:
    states, _ = latch({}, on(), CFG, NOW)
    t1 = NOW + 1_000
    states, events = latch(states, off(), CFG, t1)
    assert events == [] and states[B.API_ERRORS].tripped
    assert states[B.API_ERRORS].clear_since_ms == t1
    states, events = latch(states, off(), CFG, t1 + CLEAR_MS - 1)
    assert events == [] and states[B.API_ERRORS].tripped
    assert states[B.API_ERRORS].clear_since_ms == t1  # the timer is not restarted
    states, events = latch(states, off(), CFG, t1 + CLEAR_MS)
    assert states[B.API_ERRORS] == BreakerState(B.API_ERRORS)
    assert events == [BreakerEvent(B.API_ERRORS, "clear", "clear for 300s")]


def test_a_re_trip_resets_the_clear_timer() -> None:
    states, _ = latch({}, on(), CFG, NOW)
    states, _ = latch(states, off(), CFG, NOW + 1_000)
    states, events = latch(states, on(), CFG, NOW + 2_000)
    assert events == []  # still the same trip
    assert states[B.API_ERRORS].clear_since_ms == 0
    assert states[B.API_ERRORS].tripped_ms == NOW
    t = NOW + 3_000
    states, _ = latch(states, off(), CFG, t)
    states, events = latch(states, off(), CFG, NOW + 1_000 + CLEAR_MS)
    assert events == [] and states[B.API_ERRORS].tripped  # would have cleared without the re-trip
    states, events = latch(states, off(), CFG, t + CLEAR_MS)
    assert not states[B.API_ERRORS].tripped and [e.event for e in events] == ["clear"]


def test_flapping_condition_does_not_flap_the_breaker() -> None:
    states: Mapping[str, BreakerState] = {}
    tripped = []
    for i in range(100):
        cs = on() if i % 2 == 0 else off()
        states, _ = latch(states, cs, CFG, NOW + i * 60_000)  # flips every minute
        tripped.append(states[B.API_ERRORS].tripped)
    assert all(tripped)


def test_clear_after_zero_clears_on_the_first_calm_cycle() -> None:
    cfg = BreakersConfig(clear_after_seconds=0)
    states, _ = latch({}, on(), cfg, NOW)
    states, events = latch(states, off(), cfg, NOW + 1)
    assert not states[B.API_ERRORS].tripped and events[0].event == "clear"


def test_a_disabled_breaker_does_not_trip() -> None:
    cfg = BreakersConfig(api_errors=BreakerSpec(enabled=False))
    states, events = latch({}, on(), cfg, NOW)
    assert events == [] and B.API_ERRORS not in states


def test_disabling_a_latched_breaker_clears_it_at_once() -> None:
    states, _ = latch({}, on(), CFG, NOW)
    cfg = BreakersConfig(api_errors=BreakerSpec(enabled=False))
    states, events = latch(states, on(), cfg, NOW + 1)
    assert states[B.API_ERRORS] == BreakerState(B.API_ERRORS)
    assert events == [BreakerEvent(B.API_ERRORS, "clear", "breaker disabled")]


def test_nothing_changes_when_all_is_calm() -> None:
    current: Mapping[str, BreakerState] = {}
    states, events = latch(current, [*off(), *off(B.STALE_DATA)], CFG, NOW)
    assert states is current and events == []


def test_breakers_are_independent() -> None:
    states, _ = latch({}, [*on(B.API_ERRORS), *off(B.STALE_DATA)], CFG, NOW)
    states, events = latch(states, [*off(B.API_ERRORS), *on(B.STALE_DATA)], CFG, NOW + 1)
    assert states[B.API_ERRORS].tripped and states[B.STALE_DATA].tripped
    assert events == [BreakerEvent(B.STALE_DATA, "trip", "burst")]


def test_latched_states_are_read_only() -> None:
    states, _ = latch({}, on(), CFG, NOW)
    with pytest.raises(TypeError):
        states[B.API_ERRORS] = BreakerState(B.API_ERRORS)  # type: ignore[index]


# --------------------------------------------------------------------------- equity marks


def test_first_mark_sets_every_reference() -> None:
    t = ms(2024, 1, 3, 15, 30)  # Wednesday afternoon
    m = roll_marks(EquityMarks(), Decimal(1000), t)
    assert m == EquityMarks(
        Decimal(1000), ms(2024, 1, 3), Decimal(1000), ms(2024, 1, 1), Decimal(1000)
    )


def test_marks_hold_within_the_day() -> None:
    m = roll_marks(EquityMarks(), Decimal(1000), ms(2024, 1, 3, 0, 0))
    later = roll_marks(m, Decimal(900), ms(2024, 1, 3, 23, 59, 59, 999))
    assert later is m


def test_new_utc_day_resets_the_day_but_not_the_week() -> None:
    m = roll_marks(EquityMarks(), Decimal(1000), ms(2024, 1, 3, 23, 59, 59, 999))
    m2 = roll_marks(m, Decimal(950), ms(2024, 1, 4))
    assert m2.day_start_ms == ms(2024, 1, 4) and m2.day_start_equity == Decimal(950)
    assert m2.week_start_ms == ms(2024, 1, 1) and m2.week_start_equity == Decimal(1000)
    assert m2.hwm == Decimal(1000)


def test_new_iso_week_starts_on_monday_utc() -> None:
    sunday_night = ms(2024, 1, 7, 23, 59, 59, 999)
    m = roll_marks(EquityMarks(), Decimal(1000), sunday_night)
    assert m.week_start_ms == ms(2024, 1, 1)
    monday = ms(2024, 1, 8)
    m2 = roll_marks(m, Decimal(800), monday)
    assert m2.week_start_ms == monday and m2.week_start_equity == Decimal(800)
    assert m2.day_start_ms == monday and m2.day_start_equity == Decimal(800)


def test_a_week_across_a_year_end() -> None:
    # 2025-01-01 is a Wednesday: its ISO week began on Monday 2024-12-30.
    m = roll_marks(EquityMarks(), Decimal(1), ms(2025, 1, 1, 12))
    assert m.week_start_ms == ms(2024, 12, 30)
    assert m.day_start_ms == ms(2025, 1, 1)


def test_high_water_mark_only_rises() -> None:
    t = ms(2024, 1, 3)
    m = roll_marks(EquityMarks(), Decimal(1000), t)
    m = roll_marks(m, Decimal(1100), t + 1)
    assert m.hwm == Decimal(1100) and m.day_start_equity == Decimal(1000)
    m = roll_marks(m, Decimal(900), t + 2)
    assert m.hwm == Decimal(1100)


# --------------------------------------------------------------------------- loss stops

RISK = RiskConfig()  # daily -3%, weekly -6%, drawdown -15%


def losses(equity: str, *, day: str = "1000", week: str = "1000", hwm: str = "1000") -> set[str]:
    marks = EquityMarks(Decimal(hwm), 0, Decimal(day), 0, Decimal(week))
    return {c.name for c in loss_conditions(RISK, marks, Decimal(equity)) if c.active}


def test_daily_loss_at_the_threshold() -> None:
    assert losses("970", week="970", hwm="970") == {B.DAILY_LOSS}
    assert losses("970.01", week="970", hwm="970") == set()


def test_weekly_loss_at_the_threshold() -> None:
    assert losses("940", day="940", hwm="940") == {B.WEEKLY_LOSS}
    assert losses("940.01", day="940", hwm="940") == set()


def test_drawdown_at_the_threshold_includes_unrealized() -> None:
    # Equity is marked to market, so the drawdown sees unrealized losses.
    assert losses("850", day="850", week="850") == {B.MAX_DRAWDOWN}
    assert losses("850.01", day="850", week="850") == set()


def test_all_three_at_once() -> None:
    assert losses("800") == {B.DAILY_LOSS, B.WEEKLY_LOSS, B.MAX_DRAWDOWN}


def test_no_reference_equity_means_no_loss() -> None:
    assert {c.active for c in loss_conditions(RISK, EquityMarks(), Decimal(5))} == {False}


def test_loss_condition_reasons_are_readable() -> None:
    marks = EquityMarks(Decimal(1000), 0, Decimal(1000), 0, Decimal(1000))
    got = [c.reason for c in loss_conditions(RISK, marks, Decimal(800))]
    assert got == ["day -20.00%", "week -20.00%", "drawdown -20.00%"]
    # Reasons are formatted only for active conditions: this runs every cycle.
    calm = [c.reason for c in loss_conditions(RISK, marks, Decimal(990))]
    assert calm == ["", "", ""]


# --------------------------------------------------------------------------- trading state


def tripped(*names: str) -> dict[str, BreakerState]:
    return {n: BreakerState(n, True, NOW) for n in names}


def test_active_when_nothing_is_tripped() -> None:
    calm = {B.API_ERRORS: BreakerState(B.API_ERRORS)}
    assert trading_state(calm, CFG, kill_switch=False) == (TradingState.ACTIVE, ())


def test_reducing_breakers() -> None:
    got = trading_state(tripped(B.REJECTIONS, B.DAILY_LOSS), CFG, kill_switch=False)
    assert got == (TradingState.REDUCING, (B.DAILY_LOSS, B.REJECTIONS))


def test_halted_beats_reducing() -> None:
    got = trading_state(tripped(B.REJECTIONS, B.STALE_DATA, B.API_ERRORS), CFG, kill_switch=False)
    assert got == (TradingState.HALTED, (B.API_ERRORS, B.STALE_DATA))


def test_kill_switch_beats_everything() -> None:
    got = trading_state(tripped(B.STALE_DATA, B.REJECTIONS), CFG, kill_switch=True)
    assert got == (TradingState.HALTED, ("kill_switch",))
    assert trading_state({}, CFG, kill_switch=True)[0] is TradingState.HALTED


def test_breaker_action_is_configurable() -> None:
    cfg = BreakersConfig(crash_regime=BreakerSpec(action="HALTED"))
    assert trading_state(tripped(B.CRASH_REGIME), cfg, kill_switch=False)[0] is TradingState.HALTED
    assert (
        trading_state(tripped(B.CRASH_REGIME), CFG, kill_switch=False)[0] is TradingState.REDUCING
    )


def test_default_actions() -> None:
    got = {b: spec_of(CFG, b).action for b in B}
    assert got == {
        B.STALE_DATA: "HALTED",
        B.API_ERRORS: "HALTED",
        B.REJECTIONS: "REDUCING",
        B.DEGRADED_PRODUCTS: "REDUCING",
        B.CRASH_REGIME: "REDUCING",
        B.DAILY_LOSS: "REDUCING",
        B.WEEKLY_LOSS: "REDUCING",
        B.MAX_DRAWDOWN: "REDUCING",
    }


def test_loss_stops_cannot_be_disabled_or_made_to_halt() -> None:
    for b in (B.DAILY_LOSS, B.WEEKLY_LOSS, B.MAX_DRAWDOWN):
        spec = spec_of(BreakersConfig(), b)
        assert spec.enabled and spec.action == "REDUCING"


def test_breaker_action_must_be_reducing_or_halted() -> None:
    with pytest.raises(ValueError, match="action"):
        BreakerSpec(action="ACTIVE")


# --------------------------------------------------------------------------- lazy reasons

_state = st.one_of(
    st.none(),
    st.builds(
        lambda tripped, since: BreakerState("x", tripped, NOW - 10_000_000, since, "r"),
        st.booleans(),
        st.sampled_from([0, NOW - CLEAR_MS - 1, NOW - CLEAR_MS, NOW - CLEAR_MS + 1, NOW - 1]),
    ),
)


def test_order_is_the_order_conditions_are_listed_in() -> None:
    data = data_conditions(
        CFG,
        now_ms=NOW,
        data_age_ms=0,
        api_errors=(),
        rejections=(),
        degraded_share_pct=Decimal(0),
        regime=Regime.BULL,
    )
    loss = loss_conditions(RiskConfig(), EquityMarks(), Decimal(100))
    assert tuple(c.name for c in data + loss) == ORDER


@settings(max_examples=500, deadline=None)
@given(
    states=st.lists(_state, min_size=len(ORDER), max_size=len(ORDER)),
    actives=st.lists(st.booleans(), min_size=len(ORDER), max_size=len(ORDER)),
    disabled=st.sets(st.sampled_from(ORDER[:5])),
)
def test_reasons_looked_up_on_a_trip_only_give_the_same_latch(
    states: list[BreakerState | None], actives: list[bool], disabled: set[str]
) -> None:
    """evaluate hands the latch its reasons as a lookup, so a cycle where breakers simply
    stay tripped formats none: the outcome is the latch's with the reasons given up front."""
    cfg = BreakersConfig(**{name: BreakerSpec(enabled=False) for name in disabled})
    current = {
        name: BreakerState(name, s.tripped, s.tripped_ms, s.clear_since_ms, s.reason)
        for name, s in zip(ORDER, states, strict=True)
        if s is not None
    }
    conditions = [
        Condition(name, a, f"why {name}" if a else "")
        for name, a in zip(ORDER, actives, strict=True)
    ]
    calls: list[int] = []

    def reasons() -> dict[str, str]:
        calls.append(1)
        return {c.name: c.reason for c in conditions}

    out, events = latch(current, conditions, cfg, NOW)
    bare = [Condition(c.name, c.active) for c in conditions]
    lazy_out, lazy_events = latch(current, bare, cfg, NOW, reasons=reasons)
    assert lazy_events == events
    assert dict(lazy_out) == dict(out)
    assert (lazy_out is current) == (out is current) == (not events and dict(out) == current)
    assert len(calls) == (1 if any(e.event == "trip" for e in events) else 0)
