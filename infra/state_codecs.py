"""Column codecs of the state database: how model dataclasses become table rows and back, and
how kv values are stored as JSON, with every Decimal exact (exponent and trailing zeros kept).

The tables themselves are defined in infra/state_schema.py; docs/state.md describes both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Generic, TypeVar, get_args, get_type_hints

from core.models import Balance, BreakerState, Fill, Order, Position

T = TypeVar("T")


# -- row codecs ------------------------------------------------------------------------------
# Columns are named after the dataclass fields, so a field added to a model without a
# migration fails loudly at the first write instead of being dropped.


def decimal_text(value: object, what: str) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{what} must be a finite Decimal, got {value!r}")
    return str(value)


def text_decimal(text: object) -> Decimal:
    if not isinstance(text, str):
        raise TypeError(f"expected Decimal text, found {text!r}")
    value = Decimal(text)
    if not value.is_finite():
        raise InvalidOperation(f"non-finite value {text!r}")
    return value


def _converters(name: str, hint: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if hint is Decimal:
        return (lambda v: decimal_text(v, name)), text_decimal
    if set(get_args(hint)) == {Decimal, type(None)}:
        return (
            lambda v: None if v is None else decimal_text(v, name),
            lambda t: None if t is None else text_decimal(t),
        )
    if isinstance(hint, type) and issubclass(hint, Enum):
        return (lambda v: v.value), hint
    if hint is bool:
        return int, bool
    if hint is int or hint is str:
        return hint, hint
    raise TypeError(f"no column codec for {name}: {hint!r}")


class RowCodec(Generic[T]):
    """Maps a frozen dataclass to one table row and back, exactly."""

    def __init__(self, table: str, cls: type[T]) -> None:
        hints = get_type_hints(cls)
        names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        pairs = [_converters(f"{cls.__name__}.{n}", hints[n]) for n in names]
        self.table = table
        self.cls = cls
        self.columns = names
        self.select = f"SELECT {', '.join(names)} FROM {table}"
        marks = ", ".join("?" for _ in names)
        self.insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"
        updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
        self.upsert = f"{self.insert} ON CONFLICT({names[0]}) DO UPDATE SET {updates}"
        self._enc = tuple(p[0] for p in pairs)
        self._dec = tuple(p[1] for p in pairs)

    def encode(self, obj: T) -> tuple[Any, ...]:
        return tuple(enc(getattr(obj, n)) for enc, n in zip(self._enc, self.columns, strict=True))

    def decode(self, row: Sequence[Any]) -> T:
        """Raises ValueError naming the column when a stored value cannot be read."""
        values = {}
        for dec, name, raw in zip(self._dec, self.columns, row, strict=True):
            try:
                values[name] = dec(raw)
            except (InvalidOperation, ValueError, TypeError) as exc:
                raise ValueError(f"column {name}: {raw!r} ({exc})") from exc
        return self.cls(**values)


POSITIONS = RowCodec("positions", Position)
ORDERS = RowCodec("orders", Order)
FILLS = RowCodec("fills", Fill)
BALANCES = RowCodec("balances", Balance)
BREAKERS = RowCodec("breakers", BreakerState)


# -- kv values: JSON with Decimals tagged so they come back exact --------------------------

_DECIMAL_TAG = "$decimal"


def stored_decimal(value: object) -> Decimal:
    # A float here would mean someone wrote the row by hand; refuse rather than round.
    if not isinstance(value, Decimal):
        raise TypeError(f"expected a tagged Decimal, found {value!r}")
    return value


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return {_DECIMAL_TAG: decimal_text(value, "kv value")}
    raise TypeError(f"kv values must be JSON data or Decimal, not {type(value).__name__}")


def _json_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _DECIMAL_TAG in obj:
        return Decimal(obj[_DECIMAL_TAG])
    return obj


def dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, allow_nan=False, sort_keys=True)


def loads(text: str) -> Any:
    return json.loads(text, object_hook=_json_hook)
