"""Metrics: real CycleDecisions from run_cycle (or built directly) into a Metrics instance,
read back through the Prometheus text parser, as a scraper would."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.config import PipelineConfig
from core.cycle import MarketSnapshot, run_cycle
from core.features import FeatureBank
from core.models import (
    BreakerState,
    CycleDecision,
    EngineState,
    Order,
    OrderStatus,
    OrderType,
    ProposalKind,
    Regime,
    RiskVerdict,
    Side,
    TradeProposal,
    TradingState,
    UniverseResult,
)
from core.portfolio import Portfolio
from core.reasons import Breaker, NoTradeReason, RiskReason
from infra.metrics import Metrics
from infra.metrics_labels import OTHER, clean_label, reason_code
from runner.engine_parts import Health
from runner.execution import OrderBookkeeper
from strategy.registry import resolve
from tests.core.helpers import T0, TF, market, position, quote, series

CONFIG = PipelineConfig()
BTC, ETH = "BTC/USDT", "ETH/USDT"
LAST_OPEN = T0 + 9 * TF  # open time of the tenth (last) candle fed below
NOW = LAST_OPEN + TF + 30_000  # the last candle closed 30 s ago


# --------------------------------------------------------------------------- builders


@dataclass
class StubEngine:
    """The attributes Metrics and health_report read, built from the real types."""

    config: PipelineConfig
    bank: FeatureBank
    portfolio: Portfolio
    book: OrderBookkeeper = field(default_factory=OrderBookkeeper)
    state: EngineState = field(default_factory=EngineState)
    health: Health = field(default_factory=Health)
    last_decision: CycleDecision | None = None
    kill_file: bool = False
    exits_only: dict[str, str] = field(default_factory=dict)

    def kill_active(self) -> bool:
        return self.kill_file or self.state.kill_switch


def make_bank(symbols: tuple[str, ...] = (BTC, ETH), close: int = 10_000) -> FeatureBank:
    bank = FeatureBank(["ema:3"])
    for sym in symbols:
        for c in series([close] * 10):
            bank.push_candle(sym, c)
    return bank


def buy_order(cid: str = "vg-1", amount: str = "0.01", price: str = "9000") -> Order:
    return Order(
        client_order_id=cid,
        symbol=ETH,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        amount=Decimal(amount),
        price=Decimal(price),
        status=OrderStatus.OPEN,
        created_ms=T0,
        updated_ms=T0,
    )


def make_engine(*, holding: bool = True) -> StubEngine:
    positions = {BTC: position(BTC, "0.1", 10_000)} if holding else {}
    return StubEngine(
        config=CONFIG,
        bank=make_bank(),
        portfolio=Portfolio(cash=Decimal(9_000), positions=MappingProxyType(positions)),
        book=OrderBookkeeper([buy_order()]),
    )


def decide(engine: StubEngine, now_ms: int = NOW, *, kill: bool = False) -> CycleDecision:
    """A real decision from the real pipeline on a two-symbol snapshot."""
    snapshot = MarketSnapshot(
        ts=now_ms,
        markets={BTC: market(BTC), ETH: market(ETH)},
        features=engine.bank.latest(),
        quotes={BTC: quote(BTC, 10_000, ts=now_ms), ETH: quote(ETH, 10_000, ts=now_ms)},
        open_orders=tuple(engine.book.live()),
        state=engine.state,
        kill_switch=kill,
    )
    d = run_cycle(
        snapshot,
        engine.portfolio,
        engine.config,
        now_ms,
        strategies=resolve(engine.config),
        timer=_ticks(),
    )
    engine.state = d.state
    engine.last_decision = d
    return d


def _ticks() -> object:
    """A deterministic timer: every stage takes exactly 0.5 ms."""
    t = [0.0]

    def timer() -> float:
        t[0] += 0.0005
        return t[0]

    return timer


def proposal(symbol: str = ETH) -> TradeProposal:
    return TradeProposal(
        strategy="rules",
        symbol=symbol,
        side=Side.BUY,
        kind=ProposalKind.ENTRY,
        confidence=0.9,
        reason="breakout",
        ref_price=Decimal(10_000),
    )


def direct_decision(
    *,
    verdicts: tuple[RiskVerdict, ...] = (),
    no_trade: str | None = NoTradeReason.ALL_REJECTED,
    state: TradingState = TradingState.ACTIVE,
    regime: Regime = Regime.BULL,
    eligible: tuple[str, ...] = (BTC, ETH),
    ts: int = NOW,
) -> CycleDecision:
    return CycleDecision(
        ts=ts,
        trading_state=state,
        regime=regime,
        risk_multiplier=Decimal(1),
        universe=UniverseResult(eligible=eligible, excluded=()),
        triggers=(),
        proposals=tuple(v.proposal for v in verdicts),
        verdicts=verdicts,
        intents=(),
        cancels=(),
        no_trade_reason=no_trade,
        state=EngineState(),
        equity=Decimal(10_000),
        timings_ms=(("gate", 0.02), ("risk", 1.5)),
    )


# --------------------------------------------------------------------------- reading back


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(m: Metrics) -> Samples:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    return parse(body.decode())


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def val(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not exported"
    return samples[key]


def families(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


# --------------------------------------------------------------------------- tests


def test_cycles_from_the_real_pipeline_fill_the_core_families() -> None:
    m = Metrics()
    eng = make_engine()
    for i in range(3):
        d = decide(eng, NOW + i * 60_000)
        m.cycle(d, eng, 0.012)
    s = scrape(m)
    assert val(s, "vigil_cycles_total") == 3
    assert val(s, "vigil_cycle_seconds_count") == 3
    assert val(s, "vigil_cycle_seconds_sum") == pytest.approx(0.036)
    assert val(s, "vigil_cycle_budget_exceeded_total") == 0
    # run_cycle's own stage names, each observed once per cycle at the 0.5 ms the timer gave
    stages = {dict(lbl)["stage"] for name, lbl in s if name == "vigil_stage_latency_seconds_count"}
    assert {"gate", "universe", "regime", "breakers", "plan"} <= stages
    assert val(s, "vigil_stage_latency_seconds_count", stage="gate") == 3
    assert val(s, "vigil_stage_latency_seconds_sum", stage="gate") == pytest.approx(0.0015)
    assert val(s, "vigil_stage_latency_seconds_bucket", stage="gate", le="0.0005") == 3
    assert val(s, "vigil_stage_latency_seconds_bucket", stage="gate", le="0.00025") == 0
    # 9000 cash + 0.1 BTC at 10000: equity 10000, 10% of it held
    assert val(s, "vigil_equity") == pytest.approx(10_000)
    assert val(s, "vigil_exposure", scope="total") == pytest.approx(1_000)
    assert val(s, "vigil_exposure", scope="pending_buys") == pytest.approx(90)
    assert val(s, "vigil_exposure_pct") == pytest.approx(10.0)
    assert val(s, "vigil_positions") == 1
    assert val(s, "vigil_open_orders") == 1
    assert val(s, "vigil_last_cycle_timestamp_seconds") == pytest.approx((NOW + 120_000) / 1000)
    assert d.no_trade_reason is not None
    assert val(s, "vigil_no_trade_total", reason=reason_code(d.no_trade_reason)) == 3


def test_every_breaker_state_and_regime_is_exported_one_hot() -> None:
    m = Metrics()
    eng = make_engine()
    m.cycle(decide(eng), eng, 0.01)
    s = scrape(m)
    for b in Breaker:
        assert val(s, "vigil_breaker_tripped", breaker=b.value) == 0
    assert val(s, "vigil_kill_switch") == 0
    assert sum(val(s, "vigil_trading_state", state=t.value) for t in TradingState) == 1
    assert sum(val(s, "vigil_regime", regime=r.value) for r in Regime) == 1

    tripped = BreakerState(Breaker.STALE_DATA.value, tripped=True, tripped_ms=NOW, reason="old")
    eng.state = replace(eng.state, breakers=MappingProxyType({tripped.name: tripped}))
    d = direct_decision(state=TradingState.HALTED, regime=Regime.CRASH, no_trade="BREAKER_HALT:x")
    m.cycle(d, eng, 0.01)
    s = scrape(m)
    assert val(s, "vigil_breaker_tripped", breaker="stale_data") == 1
    assert val(s, "vigil_breaker_tripped", breaker="api_errors") == 0
    assert val(s, "vigil_trading_state", state="HALTED") == 1
    assert val(s, "vigil_trading_state", state="ACTIVE") == 0
    assert val(s, "vigil_regime", regime="crash") == 1
    assert val(s, "vigil_regime", regime="bull") == 0


def test_kill_switch_from_the_pipeline_and_from_the_loop() -> None:
    m = Metrics()
    eng = make_engine()
    d = decide(eng, kill=True)
    m.cycle(d, eng, 0.01)
    s = scrape(m)
    assert val(s, "vigil_kill_switch") == 1
    assert val(s, "vigil_no_trade_total", reason="KILL_SWITCH") == 1
    assert val(s, "vigil_trading_state", state="HALTED") == 1

    m2 = Metrics()
    m2.observe_kill_latency(0.0002, 0.3)
    m2.observe_kill_latency(0.0004, 1.2)
    s2 = scrape(m2)
    assert val(s2, "vigil_kill_switch") == 1
    assert val(s2, "vigil_kill_switch_latency_seconds_count", phase="block") == 2
    assert val(s2, "vigil_kill_switch_latency_seconds_sum", phase="cancel") == pytest.approx(1.5)
    assert val(s2, "vigil_kill_switch_latency_seconds_bucket", phase="cancel", le="0.5") == 1

    # re-armed between cycles: update_state reads the engine at once
    m2.update_state(make_engine())
    assert val(scrape(m2), "vigil_kill_switch") == 0


def test_rejections_count_by_reason_and_no_trade_details_are_stripped() -> None:
    m = Metrics()
    eng = make_engine()
    p = proposal()
    verdicts = (
        RiskVerdict(p, False, RiskReason.COOLDOWN, detail="until 12:00 for ETH/USDT"),
        RiskVerdict(p, False, RiskReason.COOLDOWN),
        RiskVerdict(p, False, RiskReason.SPREAD_TOO_WIDE, detail="31 bps"),
        RiskVerdict(p, True, RiskReason.APPROVED),
    )
    m.cycle(direct_decision(verdicts=verdicts), eng, 0.01)
    m.cycle(direct_decision(no_trade="MISSING_DATA:quotes,account"), eng, 0.01)
    m.cycle(direct_decision(no_trade=None), eng, 0.01)  # it traded: not a no-trade cycle
    s = scrape(m)
    assert val(s, "vigil_rejections_total", reason="COOLDOWN") == 2
    assert val(s, "vigil_rejections_total", reason="SPREAD_TOO_WIDE") == 1
    assert val(s, "vigil_rejections_total", reason="THIN_BOOK") == 0  # pre-declared at zero
    assert ("vigil_rejections_total", frozenset({("reason", "APPROVED")})) not in s
    assert val(s, "vigil_no_trade_total", reason="ALL_REJECTED") == 1
    assert val(s, "vigil_no_trade_total", reason="MISSING_DATA") == 1
    assert sum(v for (n, _), v in s.items() if n == "vigil_no_trade_total") == 2
    no_trade_labels = {dict(lbl)["reason"] for n, lbl in s if n == "vigil_no_trade_total"}
    assert not any(":" in r for r in no_trade_labels)


def test_events_count_fills_orders_api_errors_and_bad_ticks() -> None:
    m = Metrics()
    m.event("fill", side="buy")
    m.event("fill", side="buy")
    m.event("fill", side="sell")
    for result in ("accepted", "accepted", "rejected", "failed", "blocked"):
        m.event("order", result=result, client_order_id="vg-secret-123")
    m.event("api_error", kind="RateLimited")
    m.event("bad_tick", reason="OUT_OF_ORDER_CANDLE")
    m.event("something_new", detail="ignored")
    s = scrape(m)
    assert val(s, "vigil_fills_total", side="buy") == 2
    assert val(s, "vigil_fills_total", side="sell") == 1
    assert val(s, "vigil_orders_total", result="accepted") == 2
    assert val(s, "vigil_orders_total", result="blocked") == 1
    assert val(s, "vigil_api_errors_total", kind="RateLimited") == 1
    assert val(s, "vigil_bad_ticks_total", reason="OUT_OF_ORDER_CANDLE") == 1
    body = m.render()[0].decode()
    assert "vg-secret-123" not in body  # never a client order id in a label
    assert "something_new" not in body


def test_label_values_stay_bounded_and_clean() -> None:
    m = Metrics(max_label_values=3)
    for i in range(50):
        m.event("api_error", kind=f"Error{i}")
    m.event("bad_tick", reason='weird "value" with spaces\nand a newline')
    s = scrape(m)
    kinds = {dict(lbl)["kind"] for n, lbl in s if n == "vigil_api_errors_total"}
    assert kinds == {"Error0", "Error1", "Error2", OTHER}
    assert val(s, "vigil_api_errors_total", kind=OTHER) == 47
    assert val(s, "vigil_bad_ticks_total", reason="weird__value__with_spaces_and_a_newline") == 1
    assert clean_label("") == "unknown"
    assert len(clean_label("x" * 500)) == 64


def test_data_age_overall_and_per_symbol_follow_universe_and_holdings() -> None:
    m = Metrics()
    s = scrape(m)
    assert math.isnan(val(s, "vigil_data_age_seconds"))  # unknown before the first cycle
    eng = make_engine()
    # BTC held, ETH eligible; SOL has candles but is neither: no series for it
    sol = "SOL/USDT"
    for c in series([50] * 3, start_ms=LAST_OPEN - 2 * TF):
        eng.bank.push_candle(sol, c)
    m.cycle(direct_decision(eligible=(ETH,)), eng, 0.01)
    s = scrape(m)
    assert val(s, "vigil_data_age_seconds") == pytest.approx(30.0)
    assert val(s, "vigil_symbol_data_age_seconds", symbol=BTC) == pytest.approx(30.0)
    assert val(s, "vigil_symbol_data_age_seconds", symbol=ETH) == pytest.approx(30.0)
    assert ("vigil_symbol_data_age_seconds", frozenset({("symbol", sol)})) not in s

    # the position closes and ETH leaves the universe: their series go away
    eng.portfolio = Portfolio(cash=Decimal(10_000))
    m.cycle(direct_decision(eligible=(sol,), ts=NOW + TF), eng, 0.01)
    s = scrape(m)
    ages = {dict(k)["symbol"]: v for (n, k), v in s.items() if n == "vigil_symbol_data_age_seconds"}
    assert ages == {sol: pytest.approx(330.0)}
    assert val(s, "vigil_positions") == 0
    assert val(s, "vigil_exposure", scope="total") == 0
    assert val(s, "vigil_exposure_pct") == 0


def test_no_candles_at_all_reads_as_infinitely_old() -> None:
    m = Metrics()
    eng = make_engine(holding=False)
    eng.bank = FeatureBank(["ema:3"])
    m.cycle(direct_decision(eligible=(BTC,)), eng, 0.01)
    s = scrape(m)
    assert val(s, "vigil_data_age_seconds") == math.inf
    assert val(s, "vigil_symbol_data_age_seconds", symbol=BTC) == math.inf


def test_slow_cycles_count_against_the_budget() -> None:
    m = Metrics(cycle_budget_ms=250)
    eng = make_engine()
    for seconds in (0.1, 0.3, 2.0):
        m.cycle(direct_decision(), eng, seconds)
    s = scrape(m)
    assert val(s, "vigil_cycle_budget_exceeded_total") == 2
    assert val(s, "vigil_cycle_seconds_bucket", le="0.25") == 1
    with pytest.raises(ValueError, match="cycle_budget_ms"):
        Metrics(cycle_budget_ms=0)


def test_info_is_one_series_replaced_on_each_set() -> None:
    m = Metrics()
    m.set_info(version="0.1.0", mode="DRY_RUN", exchange="binance", config_hash="0123abcd4567ef89")
    m.set_info(version="0.1.0", mode="PAPER", exchange="binance", config_hash="0123abcd4567ef89")
    s = scrape(m)
    infos = [dict(lbl) for n, lbl in s if n == "vigil_info"]
    assert infos == [
        {
            "version": "0.1.0",
            "mode": "PAPER",
            "exchange": "binance",
            "config_hash": "0123abcd4567ef89",
        }
    ]


def test_every_documented_family_is_exported_and_all_are_prefixed() -> None:
    m = Metrics()
    eng = make_engine()
    m.cycle(decide(eng), eng, 0.01)
    m.event("api_error", kind="ExchangeDown")
    m.event("bad_tick", reason="BAD_PRICE")
    m.observe_kill_latency(0.001, 0.01)
    m.set_info(version="v", mode="DRY_RUN", exchange="sim", config_hash="abc")
    text = m.render()[0].decode()
    # prometheus_client adds a <name>_created gauge beside each counter and histogram
    names = {
        f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
    }
    expected = {
        "vigil_cycle_seconds",
        "vigil_audit_last_seq",
        "vigil_stage_latency_seconds",
        "vigil_cycles",
        "vigil_cycle_budget_exceeded",
        "vigil_equity",
        "vigil_exposure",
        "vigil_exposure_pct",
        "vigil_positions",
        "vigil_open_orders",
        "vigil_fills",
        "vigil_orders",
        "vigil_rejections",
        "vigil_no_trade",
        "vigil_breaker_tripped",
        "vigil_kill_switch",
        "vigil_trading_state",
        "vigil_regime",
        "vigil_data_age_seconds",
        "vigil_symbol_data_age_seconds",
        "vigil_api_errors",
        "vigil_bad_ticks",
        "vigil_kill_switch_latency_seconds",
        "vigil_info",
        "vigil_last_cycle_timestamp_seconds",
        "vigil_shadow_orders",
        "vigil_shadow_slippage_bps",
        "vigil_shadow_sim_vs_live_bps",
        "vigil_shadow_ack_latency_seconds",
        "vigil_cycle_errors",
        "vigil_exits_only",
        "vigil_clock_offset_seconds",
        "vigil_clock_checks",
        "vigil_alerts",
        "vigil_alert_deliveries",
        "vigil_alert_delivery_failures",
        "vigil_api_key_issued_timestamp_seconds",
        "vigil_api_key_max_age_seconds",
        "vigil_rate_limit_headroom_ratio",
    }
    assert names == expected


def test_shadow_records_feed_the_shadow_metrics() -> None:
    m = Metrics()
    m.on_shadow(
        {
            "side": "buy",
            "type": "market",
            "slippage_bps": "8.5",
            "sim_vs_live_bps": "6.5",
            "live": {"status": "FILLED", "ack_latency_ms": 120},
            "sim": {"status": "FILLED"},
        }
    )
    s = scrape(m)
    assert val(s, "vigil_shadow_orders_total", live_status="FILLED", sim_status="FILLED") == 1
    # Histograms with negative buckets export no _sum (OpenMetrics); buckets tell the value.
    assert val(s, "vigil_shadow_slippage_bps_count", side="buy", type="market") == 1
    assert val(s, "vigil_shadow_slippage_bps_bucket", side="buy", type="market", le="5.0") == 0
    assert val(s, "vigil_shadow_slippage_bps_bucket", side="buy", type="market", le="10.0") == 1
    assert val(s, "vigil_shadow_ack_latency_seconds_sum") == 0.12


def test_two_instances_share_nothing_and_the_global_registry_is_untouched() -> None:
    a, b = Metrics(), Metrics()
    eng = make_engine()
    a.cycle(direct_decision(), eng, 0.01)
    a.event("fill", side="buy")
    sb = scrape(b)
    assert val(sb, "vigil_cycles_total") == 0
    assert val(sb, "vigil_fills_total", side="buy") == 0
    assert val(scrape(a), "vigil_cycles_total") == 1
    global_text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "vigil_" not in global_text


def test_declared_label_values_do_not_use_up_the_cap() -> None:
    m = Metrics(max_label_values=2)
    m.event("order", result="accepted")
    m.event("order", result="weird1")
    m.event("order", result="weird2")
    m.event("order", result="weird3")
    s = scrape(m)
    assert val(s, "vigil_rejections_total", reason="TOTAL_EXPOSURE_CAP") == 0
    assert val(s, "vigil_orders_total", result="accepted") == 1
    assert val(s, "vigil_orders_total", result="weird2") == 1
    assert val(s, "vigil_orders_total", result=OTHER) == 1
