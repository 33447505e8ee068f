"""Field types and the base model shared by the ccxt wire modules (ccxt_wire, ccxt_wire_orders).

Numbers arrive as floats (ccxt's default) or strings (`exchange.number = str`); both go through
str() into Decimal, never Decimal(float). Anything missing or malformed raises
core.errors.BadResponse naming the structure and the field.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from core.errors import BadResponse

# -- field types -------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {str(value)[:40]!r}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    number = _decimal(value)
    if number is None or number != number.to_integral_value() or number < 0:
        raise ValueError(f"expected epoch milliseconds, got {str(value)[:40]!r}")
    return int(number)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return str(value)


Num = Annotated[Decimal | None, BeforeValidator(_decimal)]
Ms = Annotated[int | None, BeforeValidator(_ms)]
Text = Annotated[str | None, BeforeValidator(_text)]


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def parse(cls, raw: Any) -> Self:
        """Validate one ccxt structure; BadResponse names the field that is wrong."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise BadResponse(_describe(cls.__name__, exc)) from None


def _describe(what: str, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    got = repr(first.get("input"))[:60]
    return f"bad {what} from the exchange: field {where!r}: {first['msg']} (got {got}){more}"


def _bad(what: str, field: str, problem: str) -> BadResponse:
    return BadResponse(f"bad {what} from the exchange: field {field!r}: {problem}")


def _need(value: Decimal | None, what: str, field: str, *, positive: bool = False) -> Decimal:
    if value is None:
        raise _bad(what, field, "missing")
    if value < 0 or (positive and value == 0):
        raise _bad(what, field, f"must be {'positive' if positive else '>= 0'}, got {value}")
    return value
