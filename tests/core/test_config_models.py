from __future__ import annotations

import typing
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from core.config import (
    BreakersConfig,
    BreakerSpec,
    ExecutionConfig,
    ExitConfig,
    PipelineConfig,
    RegimeConfig,
    RegimeMultipliers,
    RiskConfig,
    StrategyBudget,
    StrategyConfig,
    TriggerConfig,
    UniverseConfig,
)
from core.models import MarketStatus, Regime
from strategy.registry import get as get_strategy
from strategy.registry import known

D = Decimal


def _models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
        return
    for arg in typing.get_args(tp):
        yield from _models_in(arg)


def all_models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from `root` through its fields (dicts, tuples, optionals too)."""
    seen: list[type[BaseModel]] = []
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for f in cls.model_fields.values():
            todo.extend(_models_in(f.annotation))
    return seen


CONFIG_MODELS = all_models(PipelineConfig)
PARAM_MODELS = [get_strategy(name).Params for name in known()]


def test_the_walk_finds_every_stage_model() -> None:
    expected = {
        PipelineConfig,
        UniverseConfig,
        RegimeConfig,
        RegimeMultipliers,
        TriggerConfig,
        ExitConfig,
        RiskConfig,
        BreakersConfig,
        BreakerSpec,
        ExecutionConfig,
        StrategyConfig,
        StrategyBudget,
    }
    assert expected <= set(CONFIG_MODELS)
    assert len(CONFIG_MODELS) >= 17  # plus the five trigger/outlier models


# --------------------------------------------------------------------------- defaults


def test_conservative_default_profile() -> None:
    cfg = PipelineConfig()
    assert cfg.risk.max_total_exposure_pct == D(25)
    assert cfg.risk.max_open_positions == 5
    assert cfg.exits.stop_loss_pct == D(-10)
    assert cfg.risk.max_asset_exposure_pct == D(5)
    assert cfg.risk.max_theme_exposure_pct == D(10)


def test_other_defaults_are_careful() -> None:
    cfg = PipelineConfig()
    assert cfg.timeframe == "5m" and cfg.timeframe_ms == 300_000
    assert cfg.execution.entry_order_type == "limit" and cfg.execution.post_only
    assert cfg.execution.exit_order_type == "market"
    assert cfg.risk.daily_loss_stop_pct < 0 and cfg.risk.weekly_loss_stop_pct < 0
    assert cfg.risk.weekly_loss_stop_pct <= cfg.risk.daily_loss_stop_pct
    assert cfg.risk.max_drawdown_pct < 0
    assert cfg.risk.position_size_pct <= cfg.risk.max_asset_exposure_pct
    assert cfg.regime.multipliers.of(Regime.CRASH) == 0
    assert cfg.regime.multipliers.of(Regime.BULL) == 1
    assert cfg.universe.tradable_statuses == (MarketStatus.ONLINE,)
    assert cfg.breakers.stale_data.action == "HALTED"


def test_new_strategies_start_disabled_with_a_budget() -> None:
    spec = StrategyConfig()
    assert spec.enabled is False
    assert spec.budget.max_at_risk_pct == D(10)
    assert spec.budget.max_trades_per_cycle == 2
    assert [n for n, _ in PipelineConfig().enabled_strategies()] == ["rules"]


def test_theme_lookup_falls_back_to_the_shared_default() -> None:
    u = UniverseConfig(themes={"SOL": "layer1"})
    assert u.theme_of("SOL") == "layer1"
    assert u.theme_of("DOGE") == "unassigned"


def test_decimal_fields_parse_strings_exactly() -> None:
    r = RiskConfig(max_total_exposure_pct="20.5", max_theme_exposure_pct="7.25")
    assert r.max_total_exposure_pct == D("20.5") and r.max_theme_exposure_pct == D("7.25")
    assert isinstance(r.max_total_exposure_pct, Decimal)


# --------------------------------------------------------------------------- strictness


@pytest.mark.parametrize("model", CONFIG_MODELS + PARAM_MODELS, ids=lambda m: m.__name__)
def test_extra_keys_are_forbidden(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError) as err:
        model.model_validate({"no_such_key": 1})
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    assert "no_such_key" in str(err.value)


def test_nested_typo_is_refused_and_located() -> None:
    with pytest.raises(ValidationError) as err:
        PipelineConfig.model_validate({"risk": {"max_total_exposure": 20}})
    assert err.value.errors()[0]["loc"] == ("risk", "max_total_exposure")


@pytest.mark.parametrize("model", CONFIG_MODELS + PARAM_MODELS, ids=lambda m: m.__name__)
def test_models_are_frozen(model: type[BaseModel]) -> None:
    instance = model()
    name = next(iter(model.model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(instance, name, getattr(instance, name))


@pytest.mark.parametrize("where", ["strategies", "themes", "params"])
def test_nested_mappings_are_read_only(where: str) -> None:
    cfg = PipelineConfig(universe=UniverseConfig(themes={"SOL": "layer1"}))
    target: Any = {
        "strategies": cfg.strategies,
        "themes": cfg.universe.themes,
        "params": cfg.strategies["rules"].params,
    }[where]
    with pytest.raises(TypeError):
        target["x"] = 1


# --------------------------------------------------------------------------- contradictions


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            {"max_total_exposure_pct": 4, "max_asset_exposure_pct": 5},
            "max_asset_exposure_pct .* is above max_total_exposure_pct",
        ),
        (
            {"max_total_exposure_pct": 8, "max_asset_exposure_pct": 5},
            "max_theme_exposure_pct is above max_total_exposure_pct",
        ),
        (
            {"max_asset_exposure_pct": 6, "max_theme_exposure_pct": 5},
            "max_asset_exposure_pct is above max_theme_exposure_pct",
        ),
        (
            {"daily_loss_stop_pct": -3, "weekly_loss_stop_pct": -2},
            "weekly_loss_stop_pct is tighter than daily_loss_stop_pct",
        ),
    ],
)
def test_risk_contradictions_are_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        RiskConfig(**kw)


def test_equal_caps_and_equal_loss_stops_are_consistent() -> None:
    r = RiskConfig(
        max_total_exposure_pct=10,
        max_theme_exposure_pct=10,
        max_asset_exposure_pct=10,
        daily_loss_stop_pct=-5,
        weekly_loss_stop_pct=-5,
    )
    assert r.max_asset_exposure_pct == r.max_total_exposure_pct


@pytest.mark.parametrize("stop", [D(0), D(5), D("0.01")])
def test_non_negative_stop_loss_is_refused(stop: Decimal) -> None:
    with pytest.raises(ValidationError, match="stop_loss_pct"):
        ExitConfig(stop_loss_pct=stop)


@pytest.mark.parametrize(
    "field", ["daily_loss_stop_pct", "weekly_loss_stop_pct", "max_drawdown_pct"]
)
def test_loss_limits_must_be_negative(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        RiskConfig(**{field: 1})


@pytest.mark.parametrize(("fast", "slow"), [(200, 50), (50, 50)])
def test_ema_fast_must_be_below_slow(fast: int, slow: int) -> None:
    with pytest.raises(ValidationError, match=r"ema_fast .* must be below ema_slow"):
        RegimeConfig(ema_fast=fast, ema_slow=slow)


def test_bear_drawdown_must_be_below_crash() -> None:
    with pytest.raises(ValidationError, match="bear_drawdown_pct must be below"):
        RegimeConfig(bear_drawdown_pct=10, crash_drawdown_pct=10)


@pytest.mark.parametrize("tf", ["5x", "0m", "", "1.5h", "five minutes"])
def test_bad_timeframe_is_refused_with_the_accepted_forms(tf: str) -> None:
    with pytest.raises(ValidationError, match=r"bad timeframe .*1s, 1m, 5m, 1h, 1d"):
        PipelineConfig(timeframe=tf)


@pytest.mark.parametrize(
    ("model", "kw"),
    [
        (RiskConfig, {"max_total_exposure_pct": 0}),
        (RiskConfig, {"max_total_exposure_pct": 101}),
        (RiskConfig, {"max_open_positions": 0}),
        (RiskConfig, {"position_size_pct": 0}),
        (RiskConfig, {"min_confidence": 1.5}),
        (RegimeMultipliers, {"bull": D("1.5")}),
        (RegimeMultipliers, {"crash": D("-0.1")}),
        (ExecutionConfig, {"entry_order_type": "stop"}),
        (ExecutionConfig, {"exit_order_type": "LIMIT"}),
        (ExecutionConfig, {"limit_offset_bps": -1}),
        (BreakerSpec, {"action": "ACTIVE"}),
        (StrategyBudget, {"max_at_risk_pct": 0}),
        (UniverseConfig, {"tradable_statuses": ["HALTED_FOREVER"]}),
    ],
)
def test_out_of_range_values_are_refused(model: type[BaseModel], kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(kw))):
        model(**kw)


def test_strategy_names_and_params_are_not_resolved_in_core() -> None:
    """Core keeps a strategy's name and raw params; strategy.registry.resolve (run by the
    runner) looks the name up and validates the params (tests/strategy)."""
    cfg = PipelineConfig(strategies={"nope": StrategyConfig(params={"fast": 30})})
    assert dict(cfg.strategies["nope"].params) == {"fast": 30}


# --------------------------------------------------------------------------- descriptions


def _fields(models: list[type[BaseModel]]) -> list[tuple[str, str, Any]]:
    return [(m.__name__, n, f) for m in models for n, f in m.model_fields.items()]


ALL_FIELDS = _fields(CONFIG_MODELS + PARAM_MODELS)


@pytest.mark.parametrize(
    ("model", "name", "info"), ALL_FIELDS, ids=[f"{m}.{n}" for m, n, _ in ALL_FIELDS]
)
def test_every_field_has_a_description(model: str, name: str, info: Any) -> None:
    assert info.description and info.description.strip(), f"{model}.{name} has no description"


def test_json_schema_carries_the_descriptions() -> None:
    schema = PipelineConfig.model_json_schema()
    risk = schema["$defs"]["RiskConfig"]["properties"]
    assert "equity" in risk["max_total_exposure_pct"]["description"]
