"""Error lines of the config loader: each names the file (or env var) that set the key, the
dotted field, the value as the operator wrote it (URL credentials masked; an unknown key's value
is left out, as it may be a misnamed secret) and a fix.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from infra.schema_walk import default_at, model_of, type_at
from infra.settings import VigilConfig

Loc = tuple[str, ...]


def _suggest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word.lower(), choices, n=1)
    return f"did you mean {close[0]}?" if close else None


def _get(data: Any, loc: Loc) -> Any:
    for key in loc:
        if not isinstance(data, dict) or key not in data:
            raise KeyError(loc)
        data = data[key]
    return data


_FIXES = {  # pydantic error type -> fix; {placeholders} come from the error's ctx
    "missing": "add this key",
    "int_parsing": "give a whole number",
    "int_type": "give a whole number",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number",
    "finite_number": "give a finite number (not .inf or .nan), e.g. 60",
    "float_type": "give a number",
    "decimal_parsing": "give a number, e.g. 2.5",
    "decimal_type": "give a number, e.g. 2.5",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "string_type": "give text (quote it in YAML)",
    "dict_type": "give a mapping of `key: value` lines",
    "model_type": "give a mapping of `key: value` lines",
    "tuple_type": "give a list, e.g. [a, b]",
    "list_type": "give a list, e.g. [a, b]",
    "path_type": "give a file path",
    "less_than": "use a value below {lt}",
    "less_than_equal": "use at most {le}",
    "greater_than": "use a value above {gt}",
    "greater_than_equal": "use at least {ge}",
    "too_short": "give at least {min_length} item(s)",
    "too_long": "give at most {max_length} item(s)",
    "literal_error": "use one of {expected}",
    "enum": "use one of {expected}",
    "string_pattern_mismatch": "match the pattern {pattern}",
}


def _fix_for(err: Mapping[str, Any]) -> str | None:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        alts = re.fullmatch(r"\^\(([\w|]+)\)\$", str(ctx.get("pattern", "")))
        if alts:  # an either/or pattern reads better as a list
            return "use one of " + ", ".join(alts.group(1).split("|"))
    if kind == "value_error":
        # Most validators already say what to do; only add a fix where the message has none.
        said = re.search(r";|\b(use|set|lower|raise|remove|delete|make|give)\b", err["msg"])
        return None if said else "change the values so the rule holds"
    try:
        return _FIXES[kind].format(**ctx)
    except (KeyError, IndexError):
        return "see docs/configuration.md"


def _show(value: Any, limit: int = 80) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, Decimal):
        text = str(value)
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, default=str, separators=(", ", ": "))
    text = re.sub(r"://[^/@\s]+@", "://***@", text)  # credentials in a URL
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Context:
    """What an error line needs: the merged input, who set each key, and raw env values."""

    def __init__(self, merged: dict[str, Any], origins: dict[Loc, str], env_raw: dict[Loc, str]):
        self.merged, self.origins, self.env_raw = merged, origins, env_raw

    def source(self, loc: Loc) -> str:
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origins:
                return self.origins[loc[:n]]
        below = sorted(v for k, v in self.origins.items() if k[: len(loc)] == loc)
        return below[0] if below else "defaults"

    def value(self, loc: Loc) -> str:
        if loc in self.env_raw:  # show what the operator typed, not what YAML made of it
            return _show(self.env_raw[loc])
        try:
            return _show(_get(self.merged, loc))
        except KeyError:
            pass
        try:
            return _show(default_at(VigilConfig, loc)) + " (default)"
        except (KeyError, AttributeError):
            return "(not set)"

    def describe(self, err: Mapping[str, Any], base: Loc, model: Any) -> str:
        rel = tuple(str(p) for p in err["loc"])
        loc = (*base, *rel)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = model_of(type_at(model, rel[:-1]))
            known = list(parent.model_fields) if parent else []
            hint = _suggest(rel[-1], known) or "remove it; known keys: " + ", ".join(known)
            # The value is left out: an unknown key may well be a misnamed secret.
            return f"{self.source(loc)}: {'.'.join(loc)}: unknown key; {hint}"
        if err["type"] == "value_error" and model_of(type_at(model, rel)) is not None:
            loc = self._field_named_in(msg, base, rel, model) or loc
        elif err["type"] == "value_error":
            loc, msg = self._key_named_in(msg, loc)
        fix = _fix_for(err)
        tail = f"; fix: {fix}" if fix else ""
        return f"{self.source(loc)}: {'.'.join(loc)} = {self.value(loc)}: {msg}{tail}"

    def _key_named_in(self, msg: str, loc: Loc) -> tuple[Loc, str]:
        """A check inside a mapping (check_number) names the key first ("slow: ..."): point
        at that key, so the line shows who set it and its own value."""
        match = re.match(r"([\w-]+(?:\.[\w-]+)*): ", msg)
        if match is None:
            return loc, msg
        sub = (*loc, *match.group(1).split("."))
        try:
            _get(self.merged, sub)
        except KeyError:
            return loc, msg
        return sub, msg[match.end() :]

    def _field_named_in(self, msg: str, base: Loc, rel: Loc, model: Any) -> Loc | None:
        """A model-level check failed; find the field its message is about, preferring one the
        user set (that is where the fix goes)."""
        named: list[Loc] = []
        for token in re.findall(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*", msg):
            sub = (*rel, *token.split("."))
            if type_at(model, sub) is not None and sub != rel:
                named.append((*base, *sub))
        for loc in named:
            if any(k[: len(loc)] == loc for k in self.origins):
                return loc
        return named[0] if named else None
