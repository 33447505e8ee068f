"""Loads the effective VigilConfig from config/*.yaml and VIGIL_* environment variables.

Precedence: environment > YAML > model defaults. Every problem becomes one line of a ConfigError
naming the file (or env var), the dotted field, the value and the fix. Secrets never come from
here: keys that look like one are refused (infra/secrets.py reads them from the environment).
The error lines themselves are built in infra/config_errors.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.ports import StrategyCatalog
from infra.config_errors import Loc as Loc
from infra.config_errors import _Context, _get, _show, _suggest
from infra.secrets import ENV_API_KEY_ISSUED, SECRET_ENV_NAMES, looks_secret, secret_env_for
from infra.settings import (  # the derived outputs live with the model; re-exported here
    ResolvedPaths,
    VigilConfig,
    config_hash,
    export_schema,
    is_mapping,
    model_of,
    redacted_dump,
    schema_text,
    type_at,
    unwrap,
)

__all__ = [
    "DEPRECATED",
    "FILES",
    "HOME",
    "LoadedConfig",
    "config_hash",
    "export_schema",
    "load_config",
    "redacted_dump",
    "schema_text",
]

POLICY_KEYS = (
    "mode", "read_only", "exchange", "loop", "stream", "http", "paths", "alerts", "sim",
    "clock", "checks", "flatten", "timeframe", "regime", "triggers", "exits", "risk",
    "breakers", "execution", "reconcile",
)  # fmt: skip
FILES: dict[str, tuple[str, ...]] = {
    "policy.yaml": POLICY_KEYS,
    "universe.yaml": ("universe",),
    "strategies.yaml": ("strategies", "strategies_path"),
}
HOME = {key: name for name, keys in FILES.items() for key in keys}
ENV_PREFIX = "VIGIL_"
# VIGIL_TEST_FAULT is the integration tests' hook (runner/guards.py), not a config key.
RESERVED_ENV = SECRET_ENV_NAMES | {"VIGIL_CONFIG", "VIGIL_TEST_FAULT", ENV_API_KEY_ISSUED}
DEPRECATED = {
    "risk.max_positions": "risk.max_open_positions",
    "loop.interval": "loop.interval_seconds",
}
# Maps keyed by asset ticker: a coin called TOKEN is not a secret.
_ASSET_MAPS = {("universe", "themes"), ("sim", "starting_balances")}


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: VigilConfig
    config_hash: str
    sources: tuple[str, ...]  # files read, env vars and flags applied, in order
    warnings: tuple[str, ...] = ()  # deprecations, one line each
    origins: Mapping[str, str] = field(default_factory=dict)  # dotted key -> file, env, flag
    # Absolute directories the user strategies were loaded from (strategies_path, then
    # --strategy-path): another process (a sweep worker) loads the same with
    # runner.strategy_loader.load_user_strategies(strategy_dirs) before validating a config.
    strategy_dirs: tuple[Path, ...] = ()
    config_dir: Path = Path("config")  # absolute when built by load_config

    @property
    def base_dir(self) -> Path:
        """Where relative paths in the config point from: the config directory's parent."""
        return self.config_dir.parent

    def paths(self, *, replay: bool = False) -> ResolvedPaths:
        """The runtime paths, absolute; `replay` gives the replay daemon's own set."""
        return self.config.paths.resolved(self.base_dir, replay=replay)


# A value given on the command line: (dotted key, the flag's name, the value).
Flag = tuple[str, str, Any]


# --------------------------------------------------------------------------- loading


class _Problems(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def check_config_dir(config_dir: Path, label: str = "--config") -> Path:
    """The config directory made absolute, or a ConfigError saying what is wrong with it: a
    missing directory, a file, or a directory with none of the config files would otherwise
    mean "all defaults", which trades every market of the quote currency."""
    path = Path(os.path.abspath(config_dir))
    names = ", ".join(FILES)
    if not path.exists():
        raise ConfigError(
            f"{label} {path}: no such directory; point {label} at the directory that holds {names}"
        )
    if not path.is_dir():
        raise ConfigError(
            f"{label} {path}: is a file, not a directory; pass the directory that holds it "
            f"({path.parent})"
        )
    if not any((path / name).is_file() for name in FILES):
        raise ConfigError(
            f"{label} {path}: holds none of {names}; point {label} at the config directory "
            "(the repository's is config/)"
        )
    return path


def load_config(
    config_dir: Path,
    env: Mapping[str, str],
    flags: Sequence[Flag] = (),
    *,
    strategies: StrategyCatalog,
    strategy_paths: Sequence[Path] = (),
    only_strategies: Sequence[str] | None = None,
) -> LoadedConfig:
    """Read config_dir/{policy,universe,strategies}.yaml, apply VIGIL_* overrides, then the
    command-line `flags` (each names its flag in errors), import the user strategies
    (strategies_path, then `strategy_paths`, then installed entry points) through `strategies`
    and validate, each strategy's params against its own model.
    `only_strategies` (the --strategy flag) enables exactly those, for this run.

    Precedence: flags > environment > YAML > defaults."""
    config_dir = check_config_dir(config_dir)
    problems: list[str] = []
    warnings: list[str] = []
    sources: list[str] = []
    files: dict[str, tuple[str, dict[str, Any]]] = {}
    if config_dir.exists() and not config_dir.is_dir():
        raise ConfigError(f"{config_dir}: not a directory; --config takes the config directory")
    for name in FILES:
        path = config_dir / name
        if not path.is_file():
            if path.exists() or path.is_symlink():  # never run on defaults instead of it
                kind = "a dangling symlink" if not path.exists() else "not a regular file"
                problems.append(f"{path}: {kind}; point it at the YAML file or remove it")
            continue
        label = str(path)
        sources.append(label)
        try:
            files[name] = (label, _read_yaml(path, label))
        except _Problems as exc:
            problems += exc.lines
    for label, data in files.values():
        problems += _secret_problems(data, (), label)
    problems += _placement_problems(files)
    if problems:
        raise ConfigError("\n".join(problems))

    merged: dict[str, Any] = {}
    origins: dict[Loc, str] = {}
    for label, data in files.values():
        for key, value in data.items():
            if value is None:  # an empty section means "all defaults"
                continue
            merged[key] = value
            _record(origins, (key,), value, label)
    problems += _apply_deprecations(merged, origins, warnings)
    env_raw: dict[Loc, str] = {}
    problems += _apply_env(env, merged, origins, warnings, env_raw, sources)
    for dotted, flag, value in flags:
        loc = tuple(dotted.split("."))
        _set(merged, loc, value)
        _record(origins, loc, value, flag)
        env_raw.pop(loc, None)
        sources.append(flag)
    if problems:
        raise ConfigError("\n".join(problems))

    strategy_dirs = _load_user_strategies(
        merged, origins, strategy_paths, config_dir.parent, strategies
    )
    if only_strategies is not None:
        _enable_only(merged, origins, only_strategies, strategies)
        sources.append("--strategy " + ",".join(only_strategies))
    ctx = _Context(merged, origins, env_raw)
    problems += _strategy_problems(ctx, strategies)
    try:
        config = VigilConfig.model_validate(merged)
    except ValidationError as exc:
        problems += [ctx.describe(err, (), VigilConfig) for err in exc.errors()]
    except ConfigError as exc:  # raised by a strategy registry inside a validator
        if not problems:
            problems.append(f"{ctx.source(('strategies',))}: {exc}")
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))
    return LoadedConfig(
        config=config,
        config_hash=config_hash(config),
        sources=tuple(sources),
        warnings=tuple(warnings),
        origins={".".join(k): v for k, v in sorted(origins.items())},
        strategy_dirs=strategy_dirs,
        config_dir=config_dir,
    )


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
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


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
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


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path, label: str) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except OSError as exc:
        raise _Problems([f"{label}: cannot be read: {exc.strerror or exc}"]) from None
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
        raise _Problems([f"{label}: {where}: {what}{context}; fix: {fix}"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _Problems([f"{label}: cannot be read as YAML ({type(exc).__name__})"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _Problems(
            [f"{label}: top level is a {type(data).__name__}; fix: write `section: settings` lines"]
        )
    return data


def _record(origins: dict[Loc, str], loc: Loc, value: Any, label: str) -> None:
    # Mappings merge key by key (see _set), so only the leaves they carry change hands.
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            _record(origins, (*loc, str(key)), sub, label)
        return
    for k in [k for k in origins if k[: len(loc)] == loc or loc[: len(k)] == k]:
        del origins[k]
    origins[loc] = label


def _secret_problems(data: Any, loc: Loc, label: str) -> list[str]:
    # The value is never echoed: it is the secret.
    out: list[str] = []
    if isinstance(data, list):
        for i, item in enumerate(data):
            out += _secret_problems(item, (*loc, str(i)), label)
    if not isinstance(data, dict) or loc in _ASSET_MAPS:
        return out
    for key, value in data.items():
        here = (*loc, str(key))
        if looks_secret(str(key)):
            out.append(
                f"{label}: {'.'.join(here)}: secrets only from environment variables: set "
                f"{secret_env_for(str(key))} instead, and delete the key from the file"
            )
        else:
            out += _secret_problems(value, here, label)
    return out


def _placement_problems(files: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    where: dict[str, list[str]] = {}
    for name, (_, data) in files.items():
        for key in data:
            where.setdefault(str(key), []).append(name)
    out = []
    for key, names in where.items():
        labels = [files[n][0] for n in names]
        if key not in HOME:
            fix = _suggest(key, list(HOME)) or f"top-level keys of {names[0]}: " + ", ".join(
                FILES[names[0]]
            )
            out.append(f"{labels[0]}: {key}: unknown key; {fix}")
        elif len(names) > 1:
            out.append(
                f"{labels[0]} and {labels[1]}: {key}: set in both files; keep it only in "
                f"{HOME[key]}"
            )
        elif names[0] != HOME[key]:
            out.append(f"{labels[0]}: {key}: belongs in {HOME[key]}, not {names[0]}; move it there")
    return out


def _apply_deprecations(
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
            _set(merged, new_loc, value)
            origins.pop(old_loc, None)
            _record(origins, new_loc, value, label)
            warnings.append(f"{label}: {old} is deprecated; renamed to {new} (update the file)")
        else:
            out.append(
                f"{label}: {old} = {_show(value)}: deprecated name of {new}, which is also set; "
                f"fix: delete {old}"
            )
    return out


def _set(data: dict[str, Any], loc: Loc, value: Any) -> None:
    for key in loc[:-1]:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    old = data.get(loc[-1])
    if isinstance(old, dict) and isinstance(value, dict):
        for k, v in value.items():
            _set(old, (str(k),), v)
    else:
        data[loc[-1]] = value


# --------------------------------------------------------------------------- environment


def _apply_env(
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
        except _Problems as exc:
            out += exc.lines
            continue
        if loc in claimed:
            out.append(f"env {name}: {'.'.join(loc)}: also set by {claimed[loc]}; unset one")
            continue
        claimed[loc] = name
        raw = env[name]
        try:
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
        except yaml.YAMLError:
            value = raw  # not YAML: take it as plain text and let validation judge it
        _set(merged, loc, value)
        _record(origins, loc, value, f"env {name}")
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
            raise _Problems([f"env {name}: empty name segment; fix: separate keys with one __"])
        if looks_secret(part):
            raise _Problems(
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
                raise _Problems([f"env {name}: {dotted}: unknown key; {hint}"])
            tp = model.model_fields[key].annotation
        elif is_mapping(tp):
            try:
                existing = _get(merged, loc)
            except KeyError:
                existing = None
            keys = {str(k).lower(): str(k) for k in existing} if isinstance(existing, dict) else {}
            # Asset tickers keep the case they were written in; every other name is lower case.
            key = keys.get(part.lower(), part if loc in _ASSET_MAPS else part.lower())
            tp = get_args(unwrap(tp))[-1]
        else:
            raise _Problems(
                [
                    f"env {name}: {'.'.join(loc)} is a single value, not a section; fix: drop the "
                    f"part after {'__'.join(parts[:i])}"
                ]
            )
        loc = (*loc, key)
        i += 1
    return loc


def _strategy_problems(ctx: _Context, strategies: StrategyCatalog) -> list[str]:
    """Check each strategy's params against its own model, so errors name the file and every
    problem (the registry raises only the first)."""
    known = strategies.known()
    specs = ctx.merged.get("strategies")
    if not isinstance(specs, dict):
        return []
    out = []
    for name, spec in specs.items():
        loc: Loc = ("strategies", str(name))
        if str(name) not in known:
            hint = _suggest(str(name), known) or "known: " + ", ".join(known)
            out.append(
                f"{ctx.source(loc)}: {'.'.join(loc)}: unknown strategy; {hint} (your own "
                f"strategies load from strategies_path or --strategy-path DIR)"
            )
            continue
        params = spec.get("params", {}) if isinstance(spec, dict) else {}
        if not isinstance(params, dict):
            continue  # the wrong type: VigilConfig's own validation reports it
        model = strategies.params_model(str(name))
        try:
            resolved = model.model_validate(params)
        except ValidationError as exc:
            base = (*loc, "params")
            out += [ctx.describe(e, base, model) for e in exc.errors()]
            continue
        out += _feature_problems(str(name), strategies, resolved)
    return out


def _feature_problems(name: str, strategies: StrategyCatalog, params: BaseModel) -> list[str]:
    """A strategy asking for an indicator the pipeline does not have fails here, naming its
    file, not later inside the engine."""
    from core.features import indicator_kinds, parse_key
    from core.indicators import BUILTIN

    file = strategies.origin(name)
    where = f"{file}: strategy {name!r}" if file else f"strategy {name!r}"
    try:
        kinds = indicator_kinds((*BUILTIN, *strategies.indicators(name)))
    except Exception as exc:
        return [f"{where}: indicators: {type(exc).__name__}: {exc}"]
    try:
        keys = sorted(strategies.required_features(name, params))
        for key in keys:
            parse_key(key, kinds)
    except Exception as exc:  # the user's code: any failure is one line, not a traceback
        return [f"{where}: required_features: {type(exc).__name__}: {exc}"]
    return []


def _load_user_strategies(
    merged: dict[str, Any],
    origins: dict[Loc, str],
    extra: Sequence[Path],
    base: Path,
    strategies: StrategyCatalog,
) -> tuple[Path, ...]:
    """Import user strategies before validation: the config names them. A relative
    strategies_path is taken from `base` (the config directory's parent), like every path in
    the config; --strategy-path is relative to the working directory, like any flag."""
    dirs = list(extra)
    configured = merged.get("strategies_path")
    if isinstance(configured, str | Path) and str(configured):
        path = base / Path(configured)
        if not path.is_dir():
            label = origins.get(("strategies_path",), "config")
            what = "is not a directory" if path.exists() else "no such directory"
            raise ConfigError(
                f"{label}: strategies_path = {str(configured)!r}: {what} (relative paths are "
                f"taken from {base}, the config directory's parent)"
            )
        dirs.insert(0, path)
    strategies.load(dirs)
    return tuple(dict.fromkeys(d.resolve() for d in dirs))


def _enable_only(
    merged: dict[str, Any],
    origins: dict[Loc, str],
    names: Sequence[str],
    strategies: StrategyCatalog,
) -> None:
    """--strategy a,b: exactly these enabled, every other configured strategy disabled."""
    known = strategies.known()
    for name in names:
        if name not in known:
            hint = _suggest(name, known) or ""
            raise ConfigError(
                f"--strategy {name}: unknown strategy; {hint + ' ' if hint else ''}known: "
                f"{', '.join(known)} (user strategies need --strategy-path DIR or "
                f"strategies_path)"
            )
    specs = merged.get("strategies")
    if specs is None:
        specs = merged["strategies"] = {}  # the built-in default (rules enabled) is replaced
    if not isinstance(specs, dict):
        return  # the wrong type: validation reports it
    for name in list(specs):
        if isinstance(specs[name], dict):
            specs[name]["enabled"] = name in names
        elif specs[name] is None:
            specs[name] = {"enabled": name in names}
    for name in names:
        if name not in specs:  # not configured: its settings are the defaults
            origins[("strategies", name)] = "--strategy"
        spec = specs.setdefault(name, {})
        if isinstance(spec, dict):
            spec["enabled"] = True
    for name in specs:
        origins[("strategies", str(name), "enabled")] = "--strategy"
