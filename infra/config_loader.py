"""Loads the effective VigilConfig from config/*.yaml and VIGIL_* environment variables.

Precedence: environment > YAML > model defaults. Every problem becomes one line of a ConfigError
naming the file (or env var), the dotted field, the value and the fix. Secrets never come from
here: keys that look like one are refused (infra/secrets.py reads them from the environment).
This module checks the config directory and its files (placement of keys, no secrets) and puts
the layers together; reading YAML, merging and env overrides are in infra/config_sources.py, the
strategies part in infra/config_strategies.py, the error lines in infra/config_errors.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import ConfigError
from core.ports import StrategyCatalog
from infra.config_errors import Loc, _Context, _suggest
from infra.config_sources import (
    ASSET_MAPS,
    ConfigProblems,
    apply_deprecations,
    apply_env,
    read_yaml,
    record_origin,
    set_key,
)
from infra.config_strategies import enable_only, load_user_strategies, strategy_problems
from infra.runtime_paths import ResolvedPaths
from infra.secrets import looks_secret, secret_env_for
from infra.settings import VigilConfig, config_hash

__all__ = [
    "FILES",
    "HOME",
    "Flag",
    "LoadedConfig",
    "check_config_dir",
    "load_config",
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
            files[name] = (label, read_yaml(path, label))
        except ConfigProblems as exc:
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
            record_origin(origins, (key,), value, label)
    problems += apply_deprecations(merged, origins, warnings)
    env_raw: dict[Loc, str] = {}
    problems += apply_env(env, merged, origins, warnings, env_raw, sources)
    for dotted, flag, value in flags:
        loc = tuple(dotted.split("."))
        set_key(merged, loc, value)
        record_origin(origins, loc, value, flag)
        env_raw.pop(loc, None)
        sources.append(flag)
    if problems:
        raise ConfigError("\n".join(problems))

    strategy_dirs = load_user_strategies(
        merged, origins, strategy_paths, config_dir.parent, strategies
    )
    if only_strategies is not None:
        enable_only(merged, origins, only_strategies, strategies)
        sources.append("--strategy " + ",".join(only_strategies))
    ctx = _Context(merged, origins, env_raw)
    problems += strategy_problems(ctx, strategies)
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


def _secret_problems(data: Any, loc: Loc, label: str) -> list[str]:
    # The value is never echoed: it is the secret.
    out: list[str] = []
    if isinstance(data, list):
        for i, item in enumerate(data):
            out += _secret_problems(item, (*loc, str(i)), label)
    if not isinstance(data, dict) or loc in ASSET_MAPS:
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
