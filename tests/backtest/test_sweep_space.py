"""The sweep's search space: paths and bounds checked against the config models."""

from __future__ import annotations

from pathlib import Path

import pytest

from backtest.sweep_space import apply_params, load_space, parse_space
from core.errors import ConfigError

EMA = ("ema_cross",)


def space(raw: dict, strategies: tuple[str, ...] = EMA):
    return parse_space(raw, strategies, label="space.yaml")


def test_ranges_and_choices_become_distributions() -> None:
    s = space(
        {
            "strategies.ema_cross.params.fast": {"int": [4, 16]},
            "strategies.ema_cross.params.slow": {"int": [20, 60], "step": 5},
            "exits.stop_loss_pct": {"float": [-8, -2]},
            "risk.position_size_pct": {"float": [1, 10], "log": True},
            "exits.take_profit_pct": {"choices": [None, 10, 20]},
            "strategies.ema_cross.budget.max_trades_per_cycle": {"choices": [1, 2]},
            "triggers.breakout.lookback": {"int": [10, 40]},
        }
    )
    d = s.distributions()
    assert d["strategies.ema_cross.params.slow"].step == 5
    assert d["risk.position_size_pct"].log is True
    assert d["exits.take_profit_pct"].choices == (None, 10, 20)
    assert [p.path for p in s.params] == sorted(d)  # sorted: the order is part of the digest


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"strategies.ema_cross.params.fats": {"int": [4, 16]}}, "unknown field 'fats'"),
        ({"strategies.ema_cross.params.fast": {"int": [1, 16]}}, "1 out of bounds"),
        ({"exits.stop_loss_pct": {"float": [-8, 2]}}, "2 out of bounds"),
        ({"risk.max_open_positions": {"float": [1, 4]}}, "whole numbers"),
        ({"sim.seed": {"int": [1, 4]}}, "unsweepable section 'sim'"),
        ({"strategies.rules.params.x": {"int": [1, 4]}}, "swept strategies (ema_cross)"),
        ({"strategies.ema_cross.enabled": {"choices": [True]}}, "only params.* and budget.*"),
        ({"exits": {"int": [1, 4]}}, "names a section"),
        ({"risk.max_open_positions.x": {"int": [1, 4]}}, "single setting"),
        ({"exits.take_profit_pct": {"choices": [10, -1]}}, "-1 out of bounds"),
        ({"exits.take_profit_pct": {"choices": []}}, "non-empty list"),
        ({"exits.take_profit_pct": {"float": [5, 2]}}, "must be below high"),
        ({"exits.take_profit_pct": {"float": [1, 5], "stride": 1}}, "exactly one of"),
        ({"risk.max_open_positions": {"int": [1, 4], "step": 9}}, "step must be"),
        ({"exits.take_profit_pct": {"float": [1, 5], "log": True, "step": 1.0}}, "log needs"),
        ({"strategies.ema_cross.params.regimes": {"int": [1, 4]}}, "not a number"),
        ({"strategies.ema_cross.params.regimes": {"choices": [["bull"]]}}, "must be numbers"),
    ],
)
def test_bad_parameters_name_themselves(raw: dict, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        space(raw)
    path = next(iter(raw))
    assert f"space.yaml: {path}" in str(err.value)
    assert says in str(err.value)


def test_grid_values_and_size() -> None:
    s = space(
        {
            "strategies.ema_cross.params.fast": {"int": [4, 8], "step": 2},
            "exits.stop_loss_pct": {"float": [-3, -1], "step": 0.5},
        }
    )
    assert s.grid()["strategies.ema_cross.params.fast"] == [4, 6, 8]
    assert s.grid()["exits.stop_loss_pct"] == [-3.0, -2.5, -2.0, -1.5, -1.0]
    assert s.grid_size() == 15
    with pytest.raises(ConfigError, match="grid sweep needs a step"):
        space({"exits.stop_loss_pct": {"float": [-3, -1]}}).grid()


def test_load_space_file_problems(tmp_path: Path) -> None:
    f = tmp_path / "space.yaml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_space(f, EMA)
    f.write_text("parameters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(f, EMA)
    f.write_text("params: {}\n")
    with pytest.raises(ConfigError, match="top-level `parameters:`"):
        load_space(f, EMA)
    f.write_text("parameters: {}\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_space(f, EMA)
    f.write_text("parameters:\n  strategies.ema_cross.params.fast: {int: [4, 16]}\n")
    assert load_space(f, EMA).params[0].kind == "int"


def test_apply_params_sets_dotted_paths_on_a_copy() -> None:
    base = {"exits": {"stop_loss_pct": "-10"}, "strategies": {"rules": {"enabled": True}}}
    out = apply_params(base, {"exits.stop_loss_pct": -3.0, "strategies.ema_cross.params.fast": 5})
    assert out["exits"]["stop_loss_pct"] == -3.0
    assert out["strategies"]["ema_cross"] == {"params": {"fast": 5}}
    assert base["exits"]["stop_loss_pct"] == "-10"
