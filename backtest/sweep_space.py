"""The search space of a parameter sweep: read from YAML, checked against the config models.

A space file names each parameter by its dotted config path and gives a range or choices:

    parameters:
      strategies.ema_cross.params.fast: {int: [5, 20]}
      strategies.ema_cross.params.slow: {int: [20, 80], step: 5}
      exits.stop_loss_pct: {float: [-8, -2]}
      risk.position_size_pct: {float: [1, 10], log: true}
      exits.take_profit_pct: {choices: [null, 10, 20]}

Paths are checked against the very models the config loader validates with (VigilConfig and
each strategy's own `Params`): an unknown path, a range on a field of the wrong type, or an
endpoint or choice the field refuses is a ConfigError naming the parameter. Cross-field rules
(e.g. fast below slow) can only be checked per trial: such a trial fails with the model's message.
"""

from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from core.config import StrategyConfig
from core.errors import ConfigError
from infra.settings import VigilConfig
from strategy.registry import get as get_strategy

# The config sections a sweep may vary. Timeframe, universe, loop and sim are left out: they
# decide which candles are loaded, and a sweep loads its candles once for all trials.
SWEEPABLE_ROOTS = ("strategies", "risk", "exits", "triggers", "regime")


@dataclass(frozen=True, slots=True)
class Param:
    """One searched parameter: `kind` is int, float or choices."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        import optuna.distributions as d

        if self.kind == "int":
            return d.IntDistribution(
                int(self.low or 0), int(self.high or 0), log=self.log, step=int(self.step or 1)
            )
        if self.kind == "float":
            return d.FloatDistribution(
                float(self.low or 0), float(self.high or 0), log=self.log, step=self.step
            )
        return d.CategoricalDistribution(self.choices)

    def grid_values(self) -> list[Any]:
        """Every value of this parameter on a grid; a float range needs a step."""
        if self.kind == "choices":
            return list(self.choices)
        if self.step is None and self.kind == "float":
            raise ConfigError(f"{self.path}: a grid sweep needs a step for a float range")
        low, high = self.low or 0, self.high or 0
        step = self.step or 1
        n = round((high - low) / step) + 1
        if self.kind == "int":
            return [int(low) + i * int(step) for i in range(n)]
        return [round(float(low) + i * float(step), 12) for i in range(n)]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.kind == "choices":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, step=self.step, log=self.log)
        return out


@dataclass(frozen=True, slots=True)
class Space:
    params: tuple[Param, ...]

    def distributions(self) -> dict[str, Any]:
        return {p.path: p.distribution() for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        return {p.path: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        n = 1
        for values in self.grid().values():
            n *= len(values)
        return n

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.params]

    def digest(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def load_space(path: Path, strategies: Sequence[str]) -> Space:
    """Read and check a space file; every problem is a ConfigError naming the parameter."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the search space ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict):
        raise ConfigError(f"{path}: expected a top-level `parameters:` mapping of path -> range")
    if set(data) - {"parameters"}:
        extra = ", ".join(sorted(map(str, set(data) - {"parameters"})))
        raise ConfigError(f"{path}: unknown top-level key(s) {extra}; only `parameters:`")
    if not data["parameters"]:
        raise ConfigError(f"{path}: `parameters:` is empty; name at least one parameter")
    return parse_space(data["parameters"], strategies, label=str(path))


def parse_space(raw: Mapping[Any, Any], strategies: Sequence[str], *, label: str) -> Space:
    params = [_parse_param(str(key), spec, strategies, label) for key, spec in sorted(raw.items())]
    return Space(tuple(params))


def _parse_param(path: str, spec: Any, strategies: Sequence[str], label: str) -> Param:
    where = f"{label}: {path}"
    field = field_at(path, strategies, where)
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: expected {{int: [low, high]}}, {{float: [..]}} or {{choices: [..]}}"
        )
    kinds = [k for k in ("int", "float", "choices") if k in spec]
    unknown = set(spec) - {"int", "float", "choices", "step", "log"}
    if len(kinds) != 1 or unknown:
        raise ConfigError(f"{where}: give exactly one of int, float or choices (plus step, log)")
    kind = kinds[0]
    # Annotated built at run time from the field: a value, not a type mypy can follow.
    check: TypeAdapter[Any] = TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]
    if kind == "choices":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or set(spec) != {"choices"}:
            raise ConfigError(f"{where}: choices must be a non-empty list (no step or log)")
        for c in choices:
            if c is not None and not isinstance(c, bool | int | float | str):
                # optuna stores choices as JSON scalars; lists and mappings cannot be choices.
                raise ConfigError(f"{where}: choices must be numbers, text, true/false or null")
            _check_value(check, c, where)
        if len({json.dumps(c, sort_keys=True, default=str) for c in choices}) != len(choices):
            raise ConfigError(f"{where}: choices repeat a value")
        return Param(path, "choices", choices=tuple(choices))
    bounds, step, log = spec[kind], spec.get("step"), bool(spec.get("log", False))
    base = _base_type(field.annotation)
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, number) and not isinstance(b, bool) for b in bounds)
    ):
        raise ConfigError(f"{where}: {kind} needs [low, high] as {kind} numbers")
    low, high = bounds
    if low >= high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if base is int and kind == "float":
        raise ConfigError(f"{where}: the field takes whole numbers; use int: [{low}, {high}]")
    if base not in (int, float, Decimal):
        raise ConfigError(f"{where}: the field is not a number; use choices: [...]")
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, number) or step <= 0 or step > high - low
    ):
        raise ConfigError(f"{where}: step must be a positive {kind} no larger than high - low")
    if log and (low <= 0 or (step is not None and (kind == "float" or step != 1))):
        raise ConfigError(f"{where}: log needs low > 0 and no step")  # optuna's rule
    for v in (low, high):
        _check_value(check, v, where)
    return Param(path, kind, low=low, high=high, step=step, log=log)


def _check_value(check: TypeAdapter[Any], value: Any, where: str) -> None:
    try:
        check.validate_python(value)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {value!r} out of bounds: {exc.errors()[0]['msg']}") from None


def _base_type(annotation: Any) -> Any:
    """int for `int | None`, Decimal for `Decimal`, ...; the annotation itself otherwise."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def field_at(path: str, strategies: Sequence[str], where: str) -> FieldInfo:
    """The pydantic field a dotted path names, walking VigilConfig and strategy Params."""
    parts = path.split(".")
    if parts[0] not in SWEEPABLE_ROOTS:
        raise ConfigError(
            f"{where}: unknown or unsweepable section {parts[0]!r}; "
            f"use one of {', '.join(SWEEPABLE_ROOTS)}"
        )
    model: type[BaseModel] = VigilConfig
    if parts[0] == "strategies":
        if len(parts) < 3 or parts[1] not in strategies:
            raise ConfigError(
                f"{where}: strategy paths look like strategies.NAME.params.FIELD with NAME "
                f"one of the swept strategies ({', '.join(strategies)})"
            )
        if parts[2] == "params":
            model, parts = get_strategy(parts[1]).Params, parts[3:]
        elif parts[2] == "budget":
            model, parts = StrategyConfig, parts[2:]
        else:
            raise ConfigError(f"{where}: only params.* and budget.* of a strategy can be swept")
    info: FieldInfo | None = None
    for i, name in enumerate(parts):
        fields = model.model_fields
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown field {name!r}; known here: {known}")
        info = fields[name]
        sub = _base_type(info.annotation)
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            if i == len(parts) - 1:
                raise ConfigError(f"{where}: names a section, not a single setting")
            model = sub
        elif i != len(parts) - 1:
            raise ConfigError(f"{where}: {name!r} is a single setting, not a section")
    if info is None:
        raise ConfigError(f"{where}: names no field")
    return info


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the config data `base` with each dotted path set to its value."""
    out: dict[str, Any] = json.loads(json.dumps(base))
    for path, value in params.items():
        node = out
        *parents, leaf = path.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[leaf] = value
    return out


def params_yaml(strategies: Sequence[str], params: Mapping[str, Any]) -> str:
    """The best parameters as config YAML: sections nested as in strategies.yaml/policy.yaml,
    with each swept strategy enabled."""
    tree: dict[str, Any] = {"strategies": {name: {"enabled": True} for name in strategies}}
    tree = apply_params(tree, params)
    return str(yaml.safe_dump(tree, sort_keys=True, default_flow_style=False))
