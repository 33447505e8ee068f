"""Shared pieces of the config models: the frozen base and read-only mappings."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)

V = TypeVar("V")


def _freeze(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _thaw(value: Mapping[str, Any], handler: SerializerFunctionWrapHandler) -> Any:
    return handler(dict(value))


# A mapping that is read-only after validation: the config whose hash was logged is the one
# that runs. Serialises as a plain dict.
FrozenMap = Annotated[Mapping[str, V], AfterValidator(_freeze), WrapSerializer(_thaw)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
