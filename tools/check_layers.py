"""The layer rule, checked on the syntax tree: which of our packages may import which.

core imports nothing of ours; strategy imports core; infra imports core; runner composes core,
strategy and infra; backtest drives runner (and may use what runner uses). tools/ and tests/ sit
outside the rule. Every import statement counts, wherever it stands: at the top, inside a
function, under `if TYPE_CHECKING:` or `try:`; relative imports are resolved first, and
`importlib.import_module("pkg...")` / `__import__("pkg")` with a literal name count too, so a
string cannot hide a dependency.

.venv/bin/python tools/check_layers.py [ROOT]   (exit 1 and one line per violation)
tests/test_layers.py runs the same check in `make test` and `make lint` (docs/architecture.md).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Package -> the packages of ours it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "strategy": frozenset({"core"}),
    "infra": frozenset({"core"}),
    "runner": frozenset({"core", "strategy", "infra"}),
    "backtest": frozenset({"core", "strategy", "infra", "runner"}),
    # Operator and developer tools (fake exchange, drills, benches) sit on top; nothing below
    # imports them (`vigil drill` plugs in through an entry point).
    "tools": frozenset({"core", "strategy", "infra", "runner", "backtest"}),
}
PACKAGES = tuple(ALLOWED)
DYNAMIC = frozenset({"importlib.import_module", "import_module", "__import__"})


@dataclass(frozen=True, order=True)
class Violation:
    path: str  # relative to the root, with forward slashes
    line: int
    module: str  # what was imported, fully resolved

    def __str__(self) -> str:
        pkg = self.path.split("/", 1)[0]
        allowed = ", ".join(sorted(ALLOWED[pkg])) or "nothing of ours"
        return f"{self.path}:{self.line}: {pkg} imports {self.module} ({pkg} may import {allowed})"


def _package_of(rel: Path) -> list[str]:
    """The dotted package a file's relative imports start from."""
    parts = list(rel.with_suffix("").parts)
    return parts[:-1]  # core/x.py -> core; core/__init__.py -> core as well


def imported_modules(tree: ast.AST, package: list[str]) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(package) - (node.level - 1)
                base = package[: max(keep, 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module:  # `from pkg import sub`: sub is inside pkg, so pkg decides
                yield node.lineno, module
            else:  # `from .. import runner` at the top: each name is a package
                for alias in node.names:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.Call) and _dynamic_name(node.func) in DYNAMIC:
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value


def _dynamic_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def check_file(root: Path, path: Path) -> list[Violation]:
    rel = path.relative_to(root)
    pkg = rel.parts[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for line, module in imported_modules(tree, _package_of(rel)):
        top = module.split(".", 1)[0]
        if top in ALLOWED and top != pkg and top not in ALLOWED[pkg]:
            out.append(Violation(rel.as_posix(), line, module))
    return out


def check_tree(root: Path) -> tuple[list[Violation], list[Path]]:
    """Violations under root's packages, and the files read (to guard against a vacuous
    pass)."""
    files = sorted(f for pkg in PACKAGES for f in (root / pkg).rglob("*.py"))
    violations = [v for f in files for v in check_file(root, f)]
    return sorted(violations), files


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    violations, files = check_tree(root)
    for v in violations:
        print(v, file=sys.stderr)
    if not files:
        print(f"{root}: none of {', '.join(PACKAGES)} found", file=sys.stderr)
        return 1
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
