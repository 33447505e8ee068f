"""Resolves strategies by name from config. Each plugin declares its parameter model.

Built-ins register on first use. User strategies (a directory, or packages exposing the
`vigil.strategies` entry-point group) are imported by runner/strategy_loader.py, and register
themselves here the same way, through `@register`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.config import PipelineConfig
from core.cycle import StrategySlot
from core.errors import ConfigError
from strategy.base import BaseStrategy

_REGISTRY: dict[str, type[BaseStrategy]] = {}

S = TypeVar("S", bound=type[BaseStrategy])


_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")
BUILTIN_MODULES = ("strategy.ema_cross", "strategy.rules")


class DuplicateStrategy(ValueError):
    """A second class tried to take a strategy name already registered."""

    def __init__(self, name: str, existing: type[BaseStrategy]) -> None:
        super().__init__(
            f"strategy name {name!r} is already taken by {existing.__module__}."
            f"{existing.__qualname__}"
        )
        self.name = name
        self.existing = existing


def register(name: str) -> Callable[[S], S]:
    """Class decorator: `@register("ema_cross")`. Names are lower case (letters, digits, _),
    as they appear in strategies.yaml and in VIGIL_STRATEGIES__<NAME>__... variables."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"strategy name {name!r}: use lower-case letters, digits and _ (start with a letter)"
        )

    def wrap(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, BaseStrategy)):
            raise TypeError(f"@register({name!r}) decorates a class derived from BaseStrategy")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise DuplicateStrategy(name, existing)
        params = getattr(cls, "Params", None)
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise TypeError(f"strategy {name!r}: Params must be a pydantic BaseModel subclass")
        if cls.propose is BaseStrategy.propose:
            raise TypeError(f"strategy {name!r}: implement propose(self, ctx)")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def is_builtin(name: str) -> bool:
    _load_builtins()
    cls = _REGISTRY.get(name)
    return cls is not None and cls.__module__ in BUILTIN_MODULES


def _load_builtins() -> None:
    # The built-in strategies register themselves on import.
    import strategy.ema_cross
    import strategy.rules  # noqa: F401


def known() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> type[BaseStrategy]:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"strategies.{name}: unknown strategy {name!r}; known strategies: {', '.join(known())}"
        ) from None


def resolve_params(name: str, params: Mapping[str, Any]) -> Any:
    """Validate `params` against the strategy's own model; errors name the field."""
    cls = get(name)
    try:
        return cls.Params.model_validate(dict(params))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(["params", *(str(p) for p in first["loc"])])
        raise ConfigError(
            f"strategies.{name}.{loc}: {first['msg']} (got {first.get('input')!r})"
        ) from None


def resolve(config: PipelineConfig) -> tuple[StrategySlot, ...]:
    """The enabled strategies of `config`, ready for the cycle: each looked up by name, its
    params validated against its own model, and built once, with its budget. The runner
    calls this when it composes the engine; errors are ConfigErrors naming the field."""
    return tuple(
        StrategySlot(name, get(name)(resolve_params(name, spec.params)), spec.budget)
        for name, spec in config.enabled_strategies()
    )


def check_params(config: PipelineConfig) -> None:
    """Validate every configured strategy's params, enabled or not (a disabled one may be
    enabled by an environment variable or --strategy later): ConfigError on the first bad one."""
    for name, spec in sorted(config.strategies.items()):
        resolve_params(name, spec.params)
