"""Imports user strategies: the .py files of a directory, and installed packages' entry points
in the `vigil.strategies` group. Each module is checked by the purity rule (infra/purity.py)
before it runs, then imported; its `@register` calls add it to strategy.registry. This lives
in runner because it composes strategy (the registry) with infra (the purity rule);
`STRATEGIES` is the StrategyCatalog (core/ports.py) runner hands the config loader.

Every problem is one ConfigError line naming the file (and line where there is one): a name
clash, an import error, a module that registers nothing, a purity violation. Loading is
idempotent per file, so config loads repeated in one process (tests, sweeps) are harmless.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType, TracebackType

from pydantic import BaseModel

from core.errors import ConfigError
from core.indicators import Indicator
from core.ports import StrategyCatalog
from infra.purity import check_file
from strategy import registry
from strategy.base import BaseStrategy

ENTRY_POINT_GROUP = "vigil.strategies"
MODULE_PREFIX = "vigil_user_"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a user strategy came from, for `vigil strategies list` and error messages."""

    file: str
    origin: str  # "user directory", or "package NAME, entry point X"
    sha256: str = ""  # of the module file as loaded, for the audit log's config record


_SOURCES: dict[str, Source] = {}  # strategy name -> where it came from
_FILES: dict[Path, tuple[str, ...]] = {}  # resolved file -> the names it registered
_ENTRY_POINTS: dict[str, tuple[str, ...]] = {}  # "dist:name=value" -> the names registered


def source_of(name: str) -> Source | None:
    """The source of a loaded user strategy; None for a built-in or an unknown name."""
    return _SOURCES.get(name)


def strategy_files(directory: Path) -> list[Path]:
    """The modules of a strategies directory: *.py except tests and private helpers."""
    return sorted(
        p
        for p in directory.glob("*.py")
        if not p.name.startswith(("_", "test_")) and not p.name.endswith("_test.py")
    )


def load_user_strategies(dirs: Sequence[Path], *, entry_points: bool = True) -> list[str]:
    """Load every strategy module in `dirs`, then (optionally) the installed entry points.
    Returns the names registered by this call (none for modules loaded before)."""
    registry.known()  # built-ins first, so a clash names the built-in
    new: list[str] = []
    for d in dirs:
        new += load_strategy_dir(d)
    if entry_points:
        new += load_entry_points()
    return new


def load_strategy_dir(directory: Path) -> list[str]:
    if not directory.exists():
        raise ConfigError(f"{directory}: strategies directory not found")
    if not directory.is_dir():
        raise ConfigError(f"{directory}: is a file; strategies_path names a directory")
    new: list[str] = []
    for f in strategy_files(directory):
        new += load_strategy_file(f)
    return new


def load_strategy_file(path: Path) -> list[str]:
    key = path.resolve()
    if key in _FILES:
        return []
    registry.known()
    _check_purity(path, str(path))
    name = f"{MODULE_PREFIX}{_slug(key.stem)}_{hashlib.sha256(str(key).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, key)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    origin = Source(str(path), "user directory", _digest(key))
    names, _ = _run_import(partial(_exec, spec, module), name, str(path), key, origin)
    if not names:
        sys.modules.pop(name, None)
        raise ConfigError(
            f"{path}: registers no strategy; decorate a BaseStrategy subclass with "
            f'@register("name") (or start the file name with _ if it is a helper)'
        )
    _FILES[key] = names
    return list(names)


def load_entry_points() -> list[str]:
    new: list[str] = []
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(eps, key=lambda e: (e.name, e.value)):
        dist = ep.dist.name if ep.dist is not None else "?"
        key = f"{dist}:{ep.name}={ep.value}"
        if key in _ENTRY_POINTS:
            continue
        label = f"entry point {ep.name} = {ep.value} (package {dist})"
        file = _module_file(ep.module, label)
        if file is not None:
            _check_purity(file, str(file))
        where = str(file) if file is not None else label
        origin = Source(
            where, f"package {dist}, entry point {ep.name}", _digest(file) if file else ""
        )
        names, obj = _run_import(ep.load, ep.module, where, file, origin)
        if not names:
            names = _entry_point_class(obj, ep.name, where, label, origin)
        _ENTRY_POINTS[key] = names
        new += names
    return new


def _entry_point_class(
    obj: object, ep_name: str, where: str, label: str, origin: Source
) -> tuple[str, ...]:
    """An entry point whose import registered nothing new: a plain BaseStrategy subclass takes
    the entry point's name; a module or class registered before is fine; anything else not."""
    if isinstance(obj, type) and issubclass(obj, BaseStrategy):
        if registry._REGISTRY.get(obj.name) is obj:
            return ()
        try:
            registry.register(ep_name)(obj)
        except registry.DuplicateStrategy as exc:
            raise ConfigError(
                f"{where}: {label}: strategy name {exc.name!r} clashes with "
                f"{_describe(exc.name)}; rename one of them"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {label}: {_one_line(exc)}") from None
        _SOURCES[ep_name] = origin
        return (ep_name,)
    if isinstance(obj, ModuleType) and _registered_in(obj):
        return ()
    raise ConfigError(
        f"{where}: {label} registers no strategy; point it at a module with "
        f'@register("name") classes, or at a BaseStrategy subclass'
    )


# --------------------------------------------------------------------------- helpers


def _check_purity(path: Path, label: str) -> None:
    try:
        found = check_file(path, label)
    except SyntaxError as exc:
        raise ConfigError(f"{label}:{exc.lineno}: syntax error: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot be read ({type(exc).__name__}: {exc})") from None
    if found:
        also = "".join(f"; also line {v.line}: {v.rule}: {v.detail}" for v in found[1:])
        raise ConfigError(
            f"{found[0]}: refused: strategies may not do I/O, read the wall clock or use global "
            f"randomness (docs/strategies.md, Purity){also}"
        )


def _exec(spec: importlib.machinery.ModuleSpec, module: ModuleType) -> None:
    sys.modules[spec.name] = module
    assert spec.loader is not None
    spec.loader.exec_module(module)


def _run_import(
    do: Callable[[], object], module_name: str, label: str, file: Path | None, origin: Source
) -> tuple[tuple[str, ...], object]:
    """Run an import; return the names it registered, or raise one ConfigError line. A failed
    import leaves neither its module nor its half-registered names behind."""
    before = set(registry.known())
    try:
        result = do()
    except Exception as exc:
        sys.modules.pop(module_name, None)
        for n in set(registry.known()) - before:
            registry._REGISTRY.pop(n, None)
        line = _user_line(exc.__traceback__, file)
        where = f"{label}:{line}" if line else label
        if isinstance(exc, registry.DuplicateStrategy):
            raise ConfigError(
                f"{where}: strategy name {exc.name!r} clashes with {_describe(exc.name)}; "
                f"rename one of them"
            ) from None
        raise ConfigError(
            f"{where}: import failed: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    names = tuple(sorted(set(registry.known()) - before))
    for n in names:
        _SOURCES[n] = origin
    return names, result


def _describe(name: str) -> str:
    if registry.is_builtin(name):
        return f"the built-in strategy {name!r}"
    src = _SOURCES.get(name)
    return f"{name!r} from {src.file}" if src else f"the strategy {name!r}"


def _registered_in(module: ModuleType) -> bool:
    return any(registry.get(n).__module__ == module.__name__ for n in registry.known())


def _module_file(module: str, label: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{label}: cannot find module {module!r}: {_one_line(exc)}") from None
    if spec is None:
        raise ConfigError(f"{label}: module {module!r} is not installed")
    return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None


def _user_line(tb: TracebackType | None, file: Path | None) -> int | None:
    """The line of the deepest frame inside the user's file (where their code failed)."""
    if file is None:
        return None
    target = str(file.resolve())
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if str(Path(frame.f_code.co_filename).resolve()) == target:
            line = lineno
    return line


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def user_frame(tb: TracebackType | None) -> str | None:
    """ "file:line" of the deepest traceback frame inside a loaded user strategy module, so a
    strategy's runtime error can be reported as one line naming its own code."""
    files = {str(p) for p in _FILES} | {s.file for s in _SOURCES.values()}
    found = None
    for frame, lineno in traceback.walk_tb(tb):
        name = frame.f_code.co_filename
        if name in files or str(Path(name).resolve()) in files:
            found = f"{name}:{lineno}"
    return found


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def user_sources(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """{name: {file, origin, sha256}} for the user strategies among `names` (built-ins are
    covered by the version): what the daemon records beside the config hash."""
    return {
        n: {"file": s.file, "origin": s.origin, "sha256": s.sha256}
        for n in sorted(names)
        if (s := _SOURCES.get(n)) is not None
    }


def _slug(stem: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in stem)


class RegistryCatalog:
    """The StrategyCatalog port (core/ports.py) over strategy.registry and this loader."""

    def load(self, dirs: Sequence[Path]) -> None:
        load_user_strategies(dirs)

    def known(self) -> list[str]:
        return registry.known()

    def params_model(self, name: str) -> type[BaseModel]:
        return registry.get(name).Params

    def required_features(self, name: str, params: BaseModel) -> frozenset[str]:
        return frozenset(registry.get(name).required_features(params))

    def indicators(self, name: str) -> Sequence[type[Indicator]]:
        return registry.get(name).indicators

    def origin(self, name: str) -> str | None:
        src = source_of(name)
        return src.file if src is not None else None


STRATEGIES: StrategyCatalog = RegistryCatalog()
