"""Shared pieces of the config models: the frozen base and read-only mappings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    WrapSerializer,
    field_validator,
)

# Every number in the config is finite and at most this large in magnitude, unless its field
# says less: larger values are typos (or 1e300), and every integer stays far inside SQLite's
# int64 when the daemon stores what it derives from them (e.g. minutes turned into ms).
MAX_NUMBER = 10**12

V = TypeVar("V")


def _freeze(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _thaw(value: Mapping[str, Any], handler: SerializerFunctionWrapHandler) -> Any:
    return handler(dict(value))


# A mapping that is read-only after validation: the config whose hash was logged is the one
# that runs. Serialises as a plain dict.
FrozenMap = Annotated[Mapping[str, V], AfterValidator(_freeze), WrapSerializer(_thaw)]


def check_number(value: Any, where: str = "") -> Any:
    """Refuse NaN, infinities and numbers past MAX_NUMBER, inside lists and mappings too (typed
    fields meet allow_inf_nan=False first; this also covers values typed Any). `where` names
    the key or index inside a list or mapping, for the message."""
    at = f"{where}: " if where else ""
    if isinstance(value, bool):
        return value
    if isinstance(value, float | Decimal) and not math.isfinite(value):
        raise ValueError(f"{at}{value} is not a finite number; give a finite number, e.g. 1.5")
    if isinstance(value, int | float | Decimal):
        if value > MAX_NUMBER or value < -MAX_NUMBER:
            raise ValueError(
                f"{at}{value} is too large; use a value between -{MAX_NUMBER} and {MAX_NUMBER}"
            )
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            check_number(item, f"{where}[{index}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_number(item, f"{where}.{key}" if where else str(key))
    return value


class Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    @field_validator("*")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        return check_number(value)
