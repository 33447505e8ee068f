"""The config's input layers, before validation: the strict YAML reader (no duplicate keys, no
aliases), merging keys while recording which file, env var or flag set each one, the renames of
deprecated keys, and VIGIL_* environment overrides.

infra/config_loader.py puts the layers together and validates the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml

from infra.config_errors import Loc, _get, _show, _suggest
from infra.schema_walk import is_mapping, model_of, type_at, unwrap
from infra.secrets import ENV_API_KEY_ISSUED, SECRET_ENV_NAMES, looks_secret, secret_env_for
from infra.settings import VigilConfig

ENV_PREFIX = "VIGIL_"
# VIGIL_TEST_FAULT is the integration tests' hook (runner/guards.py), not a config key.
RESERVED_ENV = SECRET_ENV_NAMES | {"VIGIL_CONFIG", "VIGIL_TEST_FAULT", ENV_API_KEY_ISSUED}
DEPRECATED = {
    "risk.max_positions": "risk.max_open_positions",
    "loop.interval": "loop.interval_seconds",
}
# Maps keyed by asset ticker: a coin called TOKEN is not a secret.
ASSET_MAPS = {("universe", "themes"), ("sim", "starting_balances")}


class ConfigProblems(Exception):
    """Error lines found while reading one source; load_config collects them."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """SafeLoader that refuses duplicate keys (plain PyYAML silently keeps the last one) and
    aliases: `*name` repeats a node, and nested aliases grow exponentially (a 430-byte
    "billion laughs" file would keep validation busy for minutes). Config files spell values
    out instead."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML alias *{event.anchor} is not accepted in vigil config",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=True)
    return mapping


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, label: str) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except OSError as exc:
        raise ConfigProblems([f"{label}: cannot be read: {exc.strerror or exc}"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        what = exc.problem or "YAML syntax error"
        context = f" ({exc.context})" if exc.context else ""
        if what.startswith("duplicate"):
            fix = "keep only one"
        elif "alias" in what:
            fix = "write the value out where the alias stands, and drop the &anchor"
        else:
            fix = "check indentation and quoting"
        raise ConfigProblems([f"{label}: {where}: {what}{context}; fix: {fix}"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigProblems([f"{label}: cannot be read as YAML ({type(exc).__name__})"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigProblems(
            [f"{label}: top level is a {type(data).__name__}; fix: write `section: settings` lines"]
        )
    return data


def record_origin(origins: dict[Loc, str], loc: Loc, value: Any, label: str) -> None:
    # Mappings merge key by key (see set_key), so only the leaves they carry change hands.
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            record_origin(origins, (*loc, str(key)), sub, label)
        return
    for k in [k for k in origins if k[: len(loc)] == loc or loc[: len(k)] == k]:
        del origins[k]
    origins[loc] = label


def set_key(data: dict[str, Any], loc: Loc, value: Any) -> None:
    """Set the dotted key `loc`; a mapping given for a mapping merges into it key by key."""
    for key in loc[:-1]:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    old = data.get(loc[-1])
    if isinstance(old, dict) and isinstance(value, dict):
        for k, v in value.items():
            set_key(old, (str(k),), v)
    else:
        data[loc[-1]] = value


def apply_deprecations(
    merged: dict[str, Any], origins: dict[Loc, str], warnings: list[str]
) -> list[str]:
    out = []
    for old, new in DEPRECATED.items():
        old_loc, new_loc = tuple(old.split(".")), tuple(new.split("."))
        try:
            value = _get(merged, old_loc)
        except KeyError:
            continue
        label = origins.get(old_loc, "config")
        try:
            _get(merged, new_loc)
        except KeyError:
            del _get(merged, old_loc[:-1])[old_loc[-1]]
            set_key(merged, new_loc, value)
            origins.pop(old_loc, None)
            record_origin(origins, new_loc, value, label)
            warnings.append(f"{label}: {old} is deprecated; renamed to {new} (update the file)")
        else:
            out.append(
                f"{label}: {old} = {_show(value)}: deprecated name of {new}, which is also set; "
                f"fix: delete {old}"
            )
    return out


# --------------------------------------------------------------------------- environment


def apply_env(
    env: Mapping[str, str],
    merged: dict[str, Any],
    origins: dict[Loc, str],
    warnings: list[str],
    env_raw: dict[Loc, str],
    sources: list[str],
) -> list[str]:
    out: list[str] = []
    claimed: dict[Loc, str] = {}
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in RESERVED_ENV:
            continue
        try:
            loc = _env_loc(name, merged, warnings)
        except ConfigProblems as exc:
            out += exc.lines
            continue
        if loc in claimed:
            out.append(f"env {name}: {'.'.join(loc)}: also set by {claimed[loc]}; unset one")
            continue
        claimed[loc] = name
        raw = env[name]
        try:
            value = yaml.load(raw, Loader=StrictLoader) if raw.strip() else None
        except yaml.YAMLError:
            value = raw  # not YAML: take it as plain text and let validation judge it
        set_key(merged, loc, value)
        record_origin(origins, loc, value, f"env {name}")
        env_raw[loc] = raw
        sources.append(f"env {name}")
    return out


def _env_loc(name: str, merged: dict[str, Any], warnings: list[str]) -> Loc:
    parts = name[len(ENV_PREFIX) :].split("__")
    loc: Loc = ()
    tp: Any = VigilConfig
    i = 0
    while i < len(parts):
        part = parts[i]
        if not part:
            raise ConfigProblems(
                [f"env {name}: empty name segment; fix: separate keys with one __"]
            )
        if looks_secret(part):
            raise ConfigProblems(
                [
                    f"env {name}: secrets only from environment variables: set "
                    f"{secret_env_for(part)} instead, and unset {name}"
                ]
            )
        model = model_of(tp)
        if model is not None:
            key = part.lower()
            dotted = ".".join((*loc, key))
            if key not in model.model_fields and dotted in DEPRECATED:
                new = tuple(DEPRECATED[dotted].split("."))
                warnings.append(f"env {name}: {dotted} is deprecated; use {'.'.join(new)}")
                loc, tp, i = new, type_at(VigilConfig, new), i + 1
                continue
            if key not in model.model_fields:
                hint = _suggest(key, list(model.model_fields)) or "known keys: " + ", ".join(
                    model.model_fields
                )
                raise ConfigProblems([f"env {name}: {dotted}: unknown key; {hint}"])
            tp = model.model_fields[key].annotation
        elif is_mapping(tp):
            try:
                existing = _get(merged, loc)
            except KeyError:
                existing = None
            keys = {str(k).lower(): str(k) for k in existing} if isinstance(existing, dict) else {}
            # Asset tickers keep the case they were written in; every other name is lower case.
            key = keys.get(part.lower(), part if loc in ASSET_MAPS else part.lower())
            tp = get_args(unwrap(tp))[-1]
        else:
            raise ConfigProblems(
                [
                    f"env {name}: {'.'.join(loc)} is a single value, not a section; fix: drop the "
                    f"part after {'__'.join(parts[:i])}"
                ]
            )
        loc = (*loc, key)
        i += 1
    return loc
