"""Walking the config's pydantic model types by dotted key: the annotation or default at a key,
and what kind of type it is. The loader resolves env var names and points error lines at a field
with these; tools/export_schema.py writes the reference with them.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def unwrap(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def model_of(tp: Any) -> type[BaseModel] | None:
    tp = unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def is_mapping(tp: Any) -> bool:
    origin = get_origin(unwrap(tp))
    return origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping))


def type_at(model: Any, loc: tuple[str, ...]) -> Any:
    """The annotation at `loc` below `model`, or None when the path leaves the schema."""
    tp = model
    for key in loc:
        m = model_of(tp)
        if m is not None:
            if key not in m.model_fields:
                return None
            tp = m.model_fields[key].annotation
        elif is_mapping(tp):
            tp = get_args(unwrap(tp))[-1]
        elif get_origin(unwrap(tp)) in (tuple, list):
            tp = get_args(unwrap(tp))[0]
        else:
            return None
    return tp


def default_at(model: type[BaseModel], loc: tuple[str, ...]) -> Any:
    """The default value at `loc` below `model`; KeyError when there is none."""
    obj: Any = model
    for key in loc:
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            info = obj.model_fields.get(key)
            if info is None:
                raise KeyError(loc)
            obj = info.get_default(call_default_factory=True)
        elif isinstance(obj, BaseModel):
            obj = getattr(obj, key)
        elif isinstance(obj, Mapping):
            obj = obj[key]
        else:
            raise KeyError(loc)
    return obj
