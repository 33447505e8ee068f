"""`vigil strategies list` rows and the --strategy flag parsing, in-process."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import PipelineConfig, StrategyConfig
from core.errors import ConfigError
from core.models import Regime
from runner.cli_strategies import _type_name, describe, require_enabled, strategy_options


def test_a_builtin_row_has_source_description_and_typed_params() -> None:
    row = describe("ema_cross", enabled=False)
    assert row["source"] == "strategy/ema_cross.py" and row["origin"] == "built-in"
    assert row["description"].startswith("Enter on a golden EMA cross")
    fast = next(p for p in row["params"] if p["name"] == "fast")
    assert fast == {
        "name": "fast",
        "type": "int",
        "default": 12,
        "description": "Fast EMA period (candles).",
    }
    regimes = next(p for p in row["params"] if p["name"] == "regimes")
    assert regimes["type"] == "tuple[Regime, ...]" and regimes["default"] == ["bull", "chop"]


def test_type_names_drop_module_prefixes() -> None:
    assert _type_name(int) == "int"
    assert _type_name(Decimal | None) == "Decimal | None"
    assert _type_name(tuple[Regime, ...]) == "tuple[Regime, ...]"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (None, None),
        (["rules"], ["rules"]),
        (["rules,ema_cross"], ["rules", "ema_cross"]),
        (["rules", " ema_cross , "], ["rules", "ema_cross"]),
    ],
)
def test_strategy_flag_takes_commas_and_repeats(
    flags: list[str] | None, expected: list[str] | None
) -> None:
    args = argparse.Namespace(only_strategies=flags, strategy_paths=[Path("x")])
    assert strategy_options(args) == {"strategy_paths": [Path("x")], "only_strategies": expected}


def test_an_empty_strategy_flag_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        strategy_options(argparse.Namespace(only_strategies=[" , "], strategy_paths=[]))


def test_nothing_enabled_is_refused_with_the_known_names() -> None:
    off = PipelineConfig(strategies={"rules": StrategyConfig(enabled=False)})
    with pytest.raises(ConfigError, match=r"no strategy is enabled.*known: ema_cross, rules"):
        require_enabled(off)
    require_enabled(PipelineConfig())  # the default profile enables rules
