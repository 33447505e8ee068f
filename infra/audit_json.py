"""Plain JSON values for audit records: `to_jsonable` turns domain objects (dataclasses,
Decimal, Enum, pydantic models, collections) into what canonical_json can hash and write.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any, Final

from pydantic import BaseModel

from infra.audit_format import canonical_json

# A Decimal like 1E+60 would expand to a wall of zeros; past this length keep str(d).
_MAX_PLAIN_DECIMAL: Final = 40


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from domain objects: dataclasses, Decimal, Enum, pydantic, collections.

    Decimals become strings (exact, no exponent where that stays short); non-finite floats become
    strings ("nan", "inf") because strict JSON has no spelling for them. Anything else raises
    TypeError naming the type.
    """
    kind = type(obj)
    if kind is str or kind is int or kind is bool or obj is None:
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, Decimal):
        return decimal_text(obj)
    if kind is dict:
        return _mapping(obj)
    if kind is list or kind is tuple:
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # fields() rather than __dict__ or asdict(): works for slotted classes and converts
        # nested values our way.
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump(mode="json"))
    if isinstance(obj, Mapping):
        return _mapping(obj)
    if isinstance(obj, set | frozenset):
        items = [to_jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=canonical_json)
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, numbers.Integral):  # numpy integers and friends
        return int(obj)
    if isinstance(obj, numbers.Real):  # numpy floats
        return to_jsonable(float(obj))
    if isinstance(obj, PurePath):
        return str(obj)
    raise TypeError(
        f"cannot record a {type(obj).__name__} in the audit log: pass dataclasses, Decimal, "
        "Enum, pydantic models, mappings, lists, sets, str, int, float, bool or None"
    )


def decimal_text(d: Decimal) -> str:
    """Exact text of a Decimal, spelled out without an exponent unless that gets long."""
    text = str(d)
    if "E" not in text or not d.is_finite():
        return text
    plain = format(d, "f")
    return plain if len(plain) <= _MAX_PLAIN_DECIMAL else text


def _mapping(m: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in m.items():
        text = _key_text(key)
        if text in out:
            raise TypeError(f"audit record keys collide once turned into text: {text!r}")
        out[text] = to_jsonable(value)
    return out


def _key_text(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, Enum):
        value = to_jsonable(key.value)
        return value if isinstance(value, str) else canonical_json(value)
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, Decimal):
        return decimal_text(key)
    raise TypeError(
        f"cannot use a {type(key).__name__} as a key in an audit record: use str, int, "
        "Decimal or Enum keys"
    )
