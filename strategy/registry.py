"""Resolves strategies by name from config. Each plugin declares its parameter model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from core.errors import ConfigError
from strategy.base import BaseStrategy

_REGISTRY: dict[str, type[BaseStrategy]] = {}

S = TypeVar("S", bound=type[BaseStrategy])


def register(name: str) -> Callable[[S], S]:
    """Class decorator: `@register("ema_cross")`."""

    def wrap(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"strategy name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


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
