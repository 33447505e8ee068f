"""`vigil strategies list|new`, and the --strategy / --strategy-path flags of run and backtest."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from core.config import PipelineConfig
from core.errors import ConfigError
from runner import exit_codes


def add_strategy_flags(p: argparse.ArgumentParser) -> None:
    """--strategy NAME[,NAME] and --strategy-path DIR, shared by `run` and `backtest`."""
    p.add_argument(
        "--strategy",
        dest="only_strategies",
        action="append",
        metavar="NAME[,NAME]",
        help="enable exactly these strategies for this run, overriding the config",
    )
    add_strategy_path_flag(p)


def add_strategy_path_flag(p: argparse.ArgumentParser) -> None:
    """--strategy-path DIR: also `vigil sweep`'s, which has its own --strategy."""
    p.add_argument(
        "--strategy-path",
        dest="strategy_paths",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also load user strategies from DIR (besides strategies_path; repeatable)",
    )


def strategy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The load_config keywords the flags above ask for."""
    only = None
    if getattr(args, "only_strategies", None):
        only = [n.strip() for text in args.only_strategies for n in text.split(",") if n.strip()]
        if not only:
            raise ConfigError("--strategy: give at least one strategy name")
    return {"strategy_paths": getattr(args, "strategy_paths", []), "only_strategies": only}


def require_enabled(config: PipelineConfig) -> None:
    """A backtest or daemon with no strategy enabled would run to the end and trade nothing."""
    if config.enabled_strategies():
        return
    from strategy import registry

    raise ConfigError(
        "no strategy is enabled: set strategies.<name>.enabled: true in strategies.yaml, or "
        f"pass --strategy NAME (known: {', '.join(registry.known())})"
    )


def add_strategies_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    st = sub.add_parser(
        "strategies",
        help="list the strategies, or start a new one from a template",
        epilog=epilog,
    )
    ssub = st.add_subparsers(dest="sub", required=True, metavar="ACTION")
    ls = ssub.add_parser(
        "list",
        help="name, source, description and parameters of every strategy",
        epilog=epilog,
        description="Every strategy vigil can run: the built-ins, the modules in "
        "strategies_path and --strategy-path, and installed packages' vigil.strategies "
        "entry points. Loading them checks them (purity, name clashes, imports): exit 2 names "
        "the file and line of the first problem.",
    )
    common(ls)
    ls.add_argument(
        "--strategy-path",
        dest="strategy_paths",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also load user strategies from DIR (repeatable)",
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    new = ssub.add_parser(
        "new",
        help="write a commented strategy template and a test for it",
        epilog=epilog,
        description="Write DIR/NAME.py (a working RSI-dip strategy to edit) and "
        "DIR/test_NAME.py (a test that backtests it; passes as written). Existing files are "
        "never overwritten.",
    )
    new.add_argument("name", help="strategy name: lower-case letters, digits and _")
    new.add_argument(
        "--dir",
        type=Path,
        default=Path("strategies"),
        help="target directory (default: ./strategies)",
    )
    new.add_argument("--log-level", default="WARNING", help=argparse.SUPPRESS)


def dispatch_strategies(args: argparse.Namespace) -> int:
    if args.sub == "list":
        return cmd_list(args)
    return cmd_new(args.name, args.dir)


# --------------------------------------------------------------------------- list


def describe(name: str, enabled: bool) -> dict[str, Any]:
    from runner.strategy_loader import source_of
    from strategy import registry

    cls = registry.get(name)
    src = source_of(name)
    if src is None:
        module = sys.modules[cls.__module__]
        file = getattr(module, "__file__", None) or cls.__module__
        source, origin = _relative(file), "built-in"
    else:
        source, origin = src.file, src.origin
    return {
        "name": name,
        "source": source,
        "origin": origin,
        "description": _first_line(cls.__doc__) or _first_line(sys.modules[cls.__module__].__doc__),
        "enabled": enabled,
        "params": [_param(n, f) for n, f in cls.Params.model_fields.items()],
    }


def _param(name: str, field: Any) -> dict[str, Any]:
    default: Any
    if field.default is not PydanticUndefined:
        default = field.default
    elif field.default_factory is not None:
        default = field.default_factory()
    else:
        default = "(required)"
    return {
        "name": name,
        "type": _type_name(field.annotation),
        "default": json.loads(json.dumps(default, default=_jsonable)),
        "description": field.description or "",
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, tuple | set | frozenset):
        return list(v)
    return getattr(v, "value", str(v))


def _type_name(tp: Any) -> str:
    """`int`, `Decimal | None`, `tuple[Regime, ...]`: annotations without module prefixes."""
    if getattr(tp, "__args__", None) is None and hasattr(tp, "__name__"):
        return str(tp.__name__)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(tp))


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def _relative(file: str) -> str:
    try:
        return Path(file).resolve().relative_to(Path(__file__).resolve().parents[1]).as_posix()
    except ValueError:
        return file


def cmd_list(args: argparse.Namespace) -> int:
    from infra.config_loader import load_config
    from runner.strategy_loader import STRATEGIES
    from strategy import registry

    loaded = load_config(
        args.config, dict(os.environ), strategies=STRATEGIES, strategy_paths=args.strategy_paths
    )
    enabled = {n for n, _ in loaded.config.enabled_strategies()}
    rows = [describe(n, n in enabled) for n in registry.known()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return exit_codes.OK
    for r in rows:
        state = "enabled" if r["enabled"] else "disabled"
        print(f"{r['name']}  ({state} in config; {r['origin']}: {r['source']})")
        if r["description"]:
            print(f"    {r['description']}")
        for p in r["params"]:
            default = json.dumps(p["default"])
            print(f"    - {p['name']}: {p['type']} = {default}  {p['description']}".rstrip())
        if not r["params"]:
            print("    (no parameters)")
    return exit_codes.OK


# --------------------------------------------------------------------------- new


def cmd_new(name: str, directory: Path) -> int:
    from runner.strategy_template import strategy_source, test_source
    from strategy import registry

    try:
        registry.register(name)  # validates the spelling only; registers nothing
    except ValueError as exc:
        raise ConfigError(f"strategies new: {exc}") from None
    if name in registry.known():
        raise ConfigError(f"strategies new: {name!r} is a built-in strategy; pick another name")
    files = {directory / f"{name}.py": strategy_source(name), directory / f"test_{name}.py": ""}
    files[directory / f"test_{name}.py"] = test_source(name)
    for path in files:
        if path.exists():
            raise ConfigError(f"{path}: already exists; not overwritten (pick another name)")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot write ({exc.strerror or exc})") from None
    strat, test = files
    print(f"wrote {strat} and {test}")
    print("next:")
    print(f"  vigil strategies list --strategy-path {directory}")
    print(f"  python -m pytest {test}")
    print(f"  vigil backtest --strategy {name} --strategy-path {directory} --data DIR")
    return exit_codes.OK
