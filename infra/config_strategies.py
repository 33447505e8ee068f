"""The strategies part of loading a config: importing the user's strategies (strategies_path,
--strategy-path), `--strategy a,b` enabling exactly those, and checking each strategy's params
against its own model and its required features against the pipeline's indicators.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.ports import StrategyCatalog
from infra.config_errors import Loc, _Context, _suggest


def strategy_problems(ctx: _Context, strategies: StrategyCatalog) -> list[str]:
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


def load_user_strategies(
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


def enable_only(
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
