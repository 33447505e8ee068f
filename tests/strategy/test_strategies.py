"""Strategies: the rules engine, the EMA-cross trend follower, the registry and aggregation."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal
from typing import Any

import pytest

from core.config import PipelineConfig, StrategyConfig
from core.errors import ConfigError
from core.features import FeatureBank, SymbolFeatures
from core.models import ProposalKind, Regime, Side, TradeProposal
from core.proposals import aggregate
from strategy import registry
from strategy.base import BaseStrategy, NoParams
from strategy.ema_cross import EmaCrossParams, EmaCrossStrategy
from strategy.rules import RulesParams, RulesStrategy
from tests.core.helpers import (
    T0,
    TF,
    context,
    make_features,
    position,
    quote,
    series,
    trigger,
)

A, B, C = "A/USDT", "B/USDT", "C/USDT"


def rules(**kw: Any) -> RulesStrategy:
    return RulesStrategy(RulesParams(**kw))


def ema(**kw: Any) -> EmaCrossStrategy:
    return EmaCrossStrategy(EmaCrossParams(**kw))


def priced(*symbols: str) -> dict[str, Any]:
    return {s: quote(s, 100) for s in symbols}


# --------------------------------------------------------------------------- rules engine


def test_rules_noisy_or_score() -> None:
    ctx = context(
        params=None,
        triggers=[trigger(A, "breakout", 1.0), trigger(A, "momentum", 1.0)],
        quotes=priced(A),
    )
    (p,) = rules().propose(ctx)
    assert p.confidence == pytest.approx(1 - (1 - 0.6) * (1 - 0.35))
    assert p.confidence == 0.74
    assert (p.strategy, p.symbol, p.side, p.kind) == ("rules", A, Side.BUY, ProposalKind.ENTRY)
    assert p.reason == "breakout+momentum"
    assert p.ref_price == Decimal(100) and p.quantity is None and not p.reduce_only


def test_rules_strength_scales_the_weight() -> None:
    ctx = context(params=None, triggers=[trigger(A, "breakout", 0.5)], quotes=priced(A))
    assert rules().propose(ctx) == []  # 0.6 x 0.5 = 0.3 < min_score 0.5
    ctx = context(params=None, triggers=[trigger(A, "breakout", 0.9)], quotes=priced(A))
    (p,) = rules().propose(ctx)
    assert p.confidence == 0.54


def test_rules_min_score_is_inclusive() -> None:
    ctx = context(params=None, triggers=[trigger(A, "rsi_reversion", 1.0)], quotes=priced(A))
    (p,) = rules().propose(ctx)
    assert p.confidence == 0.5
    assert rules(min_score=0.51).propose(ctx) == []


def test_rules_min_triggers_counts_distinct_kinds() -> None:
    one = [trigger(A, "breakout", 1.0)]
    two = [*one, trigger(A, "volume_spike", 0.5)]
    assert rules(min_triggers=2).propose(context(params=None, triggers=one, quotes=priced(A))) == []
    (p,) = rules(min_triggers=2).propose(context(params=None, triggers=two, quotes=priced(A)))
    assert p.reason == "breakout+volume_spike"


def test_rules_ignores_kinds_it_has_no_weight_for() -> None:
    trig = [trigger(A, "breakout", 1.0), trigger(A, "sentiment", 1.0)]
    ctx = context(params=None, triggers=trig, quotes=priced(A))
    assert rules(min_triggers=2).propose(ctx) == []
    (p,) = rules().propose(ctx)
    assert p.confidence == 0.6 and p.reason == "breakout"


def test_rules_contribution_is_capped_at_one() -> None:
    ctx = context(params=None, triggers=[trigger(A, "breakout", 1.0)], quotes=priced(A))
    (p,) = rules(weights={"breakout": 1.0}).propose(ctx)
    assert p.confidence == 1.0


@pytest.mark.parametrize("regime", [Regime.BEAR, Regime.CRASH])
def test_rules_regime_filter(regime: Regime) -> None:
    trig = [trigger(A, "breakout", 1.0)]
    ctx = context(params=None, regime=regime, triggers=trig, quotes=priced(A))
    assert not rules().propose(ctx)
    assert len(rules(regimes=(Regime.BEAR, Regime.CRASH)).propose(ctx)) == 1


def test_rules_skips_held_symbols() -> None:
    trig = [trigger(A, "breakout", 1.0), trigger(B, "breakout", 1.0)]
    ctx = context(params=None, triggers=trig, quotes=priced(A, B), positions={A: position(A)})
    assert [p.symbol for p in rules().propose(ctx)] == [B]


def test_rules_order_is_by_symbol_whatever_the_trigger_order() -> None:
    trig = [trigger(s, "breakout", 1.0) for s in (C, A, B)]
    outs = set()
    for perm in itertools.permutations(trig):
        ctx = context(params=None, triggers=perm, quotes=priced(A, B, C))
        outs.add(tuple(rules().propose(ctx)))
    assert len(outs) == 1
    assert [p.symbol for p in outs.pop()] == [A, B, C]


def test_rules_reference_price_falls_back_to_the_close() -> None:
    trig = [trigger(A, "breakout", 1.0), trigger(B, "breakout", 1.0)]
    ctx = context(params=None, triggers=trig, features={A: make_features(A, close=123.45)})
    (p,) = rules().propose(ctx)  # B has neither a quote nor features: no proposal
    assert p.symbol == A and p.ref_price == Decimal("123.45")


def test_rules_without_triggers_proposes_nothing() -> None:
    assert rules().propose(context(params=None, quotes=priced(A))) == ()


# --------------------------------------------------------------------------- ema cross

KF, KS = "ema:12", "ema:26"


def crossing(
    symbol: str = A, *, prev: tuple[float, float], now: tuple[float, float]
) -> SymbolFeatures:
    return make_features(symbol, values={KF: now[0], KS: now[1]}, prev={KF: prev[0], KS: prev[1]})


def ectx(*fs: SymbolFeatures, **kw: Any) -> Any:
    kw.setdefault("eligible", [f.symbol for f in fs])
    kw.setdefault("quotes", priced(*(f.symbol for f in fs)))
    return context(params=None, features={f.symbol: f for f in fs}, **kw)


def test_ema_cross_required_features() -> None:
    assert EmaCrossStrategy.required_features(EmaCrossParams(fast=5, slow=9)) == {"ema:5", "ema:9"}


def test_golden_cross_enters() -> None:
    (p,) = ema().propose(ectx(crossing(prev=(99.0, 100.0), now=(101.0, 100.0))))
    assert (p.strategy, p.symbol, p.side, p.kind) == ("ema_cross", A, Side.BUY, ProposalKind.ENTRY)
    assert p.reason == "ema_cross_up" and p.confidence == 0.8  # 0.6 + 1% gap x 20


def test_a_cross_from_equal_counts() -> None:
    assert len(ema().propose(ectx(crossing(prev=(100.0, 100.0), now=(100.5, 100.0))))) == 1


def test_confidence_is_capped_at_one() -> None:
    (p,) = ema().propose(ectx(crossing(prev=(90.0, 100.0), now=(110.0, 100.0))))
    assert p.confidence == 1.0


@pytest.mark.parametrize(
    ("prev", "now"),
    [
        ((101.0, 100.0), (102.0, 100.0)),  # already above: no new cross
        ((98.0, 100.0), (99.0, 100.0)),  # still below
        ((99.0, 100.0), (100.0, 100.0)),  # touching is not crossing
    ],
)
def test_no_entry_without_a_cross(prev: tuple[float, float], now: tuple[float, float]) -> None:
    assert ema().propose(ectx(crossing(prev=prev, now=now))) == []


def test_min_gap() -> None:
    f = crossing(prev=(99.0, 100.0), now=(101.0, 100.0))
    assert ema(min_gap_pct=2.0).propose(ectx(f)) == []
    assert len(ema(min_gap_pct=1.0).propose(ectx(f))) == 1


def test_only_eligible_symbols_enter() -> None:
    f = crossing(prev=(99.0, 100.0), now=(101.0, 100.0))
    assert ema().propose(ectx(f, eligible=[])) == []


def test_no_entry_on_a_held_symbol() -> None:
    f = crossing(prev=(99.0, 100.0), now=(101.0, 100.0))
    held = {A: position(A, strategy="ema_cross")}
    assert ema().propose(ectx(f, positions=held)) == []


def test_no_entry_while_warming_up() -> None:
    f = make_features(A, values={KF: 101.0, KS: 100.0}, prev={KF: None, KS: 100.0})
    assert ema().propose(ectx(f)) == []


def test_entries_follow_the_regime_filter() -> None:
    f = crossing(prev=(99.0, 100.0), now=(101.0, 100.0))
    assert ema().propose(ectx(f, regime=Regime.BEAR)) == []
    assert len(ema(regimes=(Regime.BEAR,)).propose(ectx(f, regime=Regime.BEAR))) == 1


def dead(symbol: str = A) -> SymbolFeatures:
    return crossing(symbol, prev=(101.0, 100.0), now=(99.0, 100.0))


def test_death_cross_exits_its_own_position() -> None:
    held = {A: position(A, "0.5", strategy="ema_cross")}
    (p,) = ema().propose(ectx(dead(), positions=held))
    assert (p.side, p.kind, p.reason) == (Side.SELL, ProposalKind.EXIT, "ema_cross_down")
    assert p.quantity == Decimal("0.5") and p.reduce_only and p.confidence == 1.0


def test_death_cross_leaves_other_strategies_positions_alone() -> None:
    held = {A: position(A, strategy="rules"), B: position(B, strategy="")}
    assert ema().propose(ectx(dead(A), dead(B), positions=held)) == []


def test_death_cross_exits_even_when_entries_are_blocked_or_not_eligible() -> None:
    held = {A: position(A, strategy="ema_cross")}
    got = ema().propose(ectx(dead(), positions=held, regime=Regime.CRASH, eligible=[]))
    assert [(p.symbol, p.kind) for p in got] == [(A, ProposalKind.EXIT)]


def test_death_cross_exit_can_be_turned_off() -> None:
    held = {A: position(A, strategy="ema_cross")}
    assert ema(exit_on_cross_down=False).propose(ectx(dead(), positions=held)) == []


def test_no_exit_without_a_cross() -> None:
    held = {A: position(A, strategy="ema_cross")}
    below = crossing(prev=(99.0, 100.0), now=(98.0, 100.0))
    assert ema().propose(ectx(below, positions=held)) == []


def test_golden_cross_on_a_real_feature_bank_fires_once_at_the_cross() -> None:
    params = EmaCrossParams(fast=3, slow=6)
    keys = EmaCrossStrategy.required_features(params)
    closes = [100 - i for i in range(15)] + [86 + 2 * i for i in range(15)]
    bank = FeatureBank(keys)
    fired: list[int] = []
    crosses: list[int] = []
    for i, c in enumerate(series(closes)):
        f = bank.push_candle(A, c)
        fast, slow = f.values["ema:3"], f.values["ema:6"]
        pf, ps = f.prev.get("ema:3"), f.prev.get("ema:6")
        if None not in (fast, slow, pf, ps) and pf <= ps and fast > slow:  # type: ignore[operator]
            crosses.append(i)
        if EmaCrossStrategy(params).propose(ectx(f)):
            fired.append(i)
    assert len(crosses) == 1 and fired == crosses
    assert 15 < fired[0] < 25


# --------------------------------------------------------------------------- params via config


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("ema_cross", {"fast": 26, "slow": 26}, "fast"),
        ("ema_cross", {"fast": 30, "slow": 20}, "fast"),
        ("ema_cross", {"fast": "quick"}, "params.fast"),
        ("ema_cross", {"slow": 2}, "params.slow"),
        ("ema_cross", {"bogus": 1}, "params.bogus"),
        ("rules", {"min_score": 2}, "params.min_score"),
        ("rules", {"min_triggers": 0}, "params.min_triggers"),
        ("rules", {"regimes": ["moon"]}, "params.regimes"),
    ],
)
def test_bad_params_raise_config_error_naming_the_field(
    name: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        registry.resolve(PipelineConfig(strategies={name: {"enabled": True, "params": params}}))
    msg = str(exc.value)
    assert msg.startswith(f"strategies.{name}.params")
    assert field in msg


def test_params_are_resolved_to_the_strategy_model() -> None:
    cfg = PipelineConfig(
        strategies={"ema_cross": {"enabled": True, "params": {"fast": 5, "slow": 9}}}
    )
    ((name, instance, budget),) = ((s.name, s.strategy, s.budget) for s in registry.resolve(cfg))
    assert name == "ema_cross" and isinstance(instance, EmaCrossStrategy)
    resolved = instance.params
    assert isinstance(resolved, EmaCrossParams) and (resolved.fast, resolved.slow) == (5, 9)
    assert budget is cfg.strategies["ema_cross"].budget


def test_only_enabled_strategies_are_resolved_and_every_configured_one_is_checked() -> None:
    cfg = PipelineConfig(
        strategies={
            "rules": {"enabled": True},
            "ema_cross": {"enabled": False, "params": {"fast": 30, "slow": 10}},
        }
    )
    assert [s.name for s in registry.resolve(cfg)] == ["rules"]
    with pytest.raises(ConfigError, match=r"strategies\.ema_cross\.params"):
        registry.check_params(cfg)


def test_unknown_strategy_is_refused_naming_known_ones() -> None:
    cfg = PipelineConfig(strategies={"nope": StrategyConfig(enabled=True)})
    with pytest.raises(ConfigError, match=r"unknown strategy 'nope'.*ema_cross"):
        registry.resolve(cfg)


def test_unknown_strategy_in_config_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"strategies\.nope: unknown strategy 'nope'; known "):
        registry.check_params(PipelineConfig(strategies={"nope": {}}))


# --------------------------------------------------------------------------- registry


def test_registry_knows_the_builtins() -> None:
    assert {"rules", "ema_cross"} <= set(registry.known())
    assert registry.get("rules") is RulesStrategy
    assert registry.get("ema_cross") is EmaCrossStrategy


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        registry.get("emacross")
    assert "'emacross'" in str(exc.value)
    assert ", ".join(registry.known()) in str(exc.value)


def test_a_name_cannot_be_registered_twice() -> None:
    class Impostor(BaseStrategy):
        pass

    with pytest.raises(registry.DuplicateStrategy, match=r"already taken by strategy\.rules"):
        registry.register("rules")(Impostor)
    assert registry.get("rules") is RulesStrategy


@pytest.mark.parametrize("name", ["RSI", "1x", "my-dip", "", "a" * 49])
def test_a_name_must_be_lower_case_letters_digits_underscores(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        registry.register(name)


def test_register_refuses_a_class_without_propose_or_a_params_model() -> None:
    class NoPropose(BaseStrategy):
        pass

    class BadParams(BaseStrategy):
        Params = dict  # type: ignore[assignment]

        def propose(self, ctx: object) -> list[object]:  # type: ignore[override]
            return []

    with pytest.raises(TypeError, match="implement propose"):
        registry.register("no_propose_here")(NoPropose)
    with pytest.raises(TypeError, match="Params must be a pydantic"):
        registry.register("bad_params_here")(BadParams)
    assert "no_propose_here" not in registry.known()


def test_registering_the_same_class_again_is_harmless() -> None:
    assert registry.register("rules")(RulesStrategy) is RulesStrategy


def test_base_strategy_defaults() -> None:
    assert BaseStrategy.Params is NoParams and BaseStrategy.supports_backtest
    assert BaseStrategy.required_features(NoParams()) == frozenset()
    with pytest.raises(NotImplementedError):
        BaseStrategy(NoParams()).propose(context(params=None))


def test_strategy_context_is_immutable() -> None:
    ctx = context(params=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.regime = Regime.CRASH  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.positions["X"] = position("X")  # type: ignore[index]


# --------------------------------------------------------------------------- enabled flags


def test_new_strategies_default_to_disabled() -> None:
    assert StrategyConfig().enabled is False
    cfg = PipelineConfig(strategies={"ema_cross": {}, "rules": {"enabled": True}})
    assert [n for n, _ in cfg.enabled_strategies()] == ["rules"]


def test_the_default_profile_runs_only_the_rules_engine() -> None:
    assert [n for n, _ in PipelineConfig().enabled_strategies()] == ["rules"]


# --------------------------------------------------------------------------- aggregate


def prop(
    strategy: str, symbol: str, confidence: float, kind: ProposalKind = ProposalKind.ENTRY
) -> TradeProposal:
    return TradeProposal(
        strategy=strategy,
        symbol=symbol,
        side=Side.BUY if kind is ProposalKind.ENTRY else Side.SELL,
        kind=kind,
        confidence=confidence,
        reason="r",
        ref_price=Decimal(100),
    )


def test_aggregate_keeps_the_highest_confidence_per_symbol() -> None:
    got = aggregate([prop("rules", A, 0.6), prop("ema_cross", A, 0.8), prop("rules", B, 0.7)])
    assert [(p.strategy, p.symbol) for p in got] == [("ema_cross", A), ("rules", B)]


def test_aggregate_keeps_entries_and_exits_apart() -> None:
    got = aggregate([prop("rules", A, 0.6), prop("exits", A, 1.0, ProposalKind.EXIT)])
    assert [(p.symbol, p.kind) for p in got] == [(A, ProposalKind.EXIT), (A, ProposalKind.ENTRY)]


def test_aggregate_ties_go_to_the_first_strategy_name() -> None:
    for order in itertools.permutations(
        [prop("zeta", A, 0.7), prop("alpha", A, 0.7), prop("mid", A, 0.7)]
    ):
        (p,) = aggregate(order)
        assert p.strategy == "alpha"


def test_aggregate_tie_between_a_name_and_its_extension_goes_to_the_shorter() -> None:
    for order in itertools.permutations([prop("rules_v2", A, 0.5), prop("rules", A, 0.5)]):
        (p,) = aggregate(order)
        assert p.strategy == "rules"


def test_aggregate_is_independent_of_input_order() -> None:
    props = [
        prop("rules", A, 0.6),
        prop("ema_cross", A, 0.6),
        prop("rules", B, 0.9),
        prop("ema_cross", C, 0.9),
        prop("exits", B, 1.0, ProposalKind.EXIT),
        prop("ema_cross", B, 1.0, ProposalKind.EXIT),
        prop("rules", C, 0.3),
    ]
    results = {tuple(aggregate(list(p))) for p in itertools.permutations(props)}
    assert len(results) == 1
    got = [(p.strategy, p.symbol, p.kind.value) for p in results.pop()]
    assert got == [
        ("ema_cross", B, "exit"),
        ("rules", B, "entry"),
        ("ema_cross", C, "entry"),
        ("ema_cross", A, "entry"),
    ]


def test_aggregate_of_nothing() -> None:
    assert aggregate([]) == []


def test_helpers_build_consistent_candles() -> None:
    # series() is what the real-bank tests above rely on.
    cs = series([100, 101, 99])
    assert [c.ts for c in cs] == [T0, T0 + TF, T0 + 2 * TF]
    assert cs[1].open == Decimal(100) and cs[1].high == Decimal(101) and cs[2].low == Decimal(99)
