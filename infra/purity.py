"""The purity rule for decision code: no I/O, no wall clock, no global randomness.

One rule set, used twice: tests/core/test_purity.py holds core/ and strategy/ to it, and the
user-strategy loader (runner/strategy_loader.py) refuses a user module that breaks it. The
checker reads the syntax tree rather than grepping, so aliases (`import time as t`,
`from datetime import datetime as dt`), submodules (`ccxt.async_support`) and bare references
(`now=time.time` as a default) are caught as well as plain calls.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Modules that reach the network, the disk or other processes. A dotted entry forbids that
# submodule only (`urllib.parse` is pure string work; `urllib.request` is not).
FORBIDDEN_MODULES = frozenset(
    {
        "ccxt",
        "aiohttp",
        "sqlite3",
        "apprise",
        "prometheus_client",
        "socket",
        "ssl",
        "requests",
        "httpx",
        "urllib3",
        "urllib.request",
        "http.client",
        "ftplib",
        "smtplib",
        "subprocess",
        "shutil",
        "tempfile",
    }
)
# Builtins and functions that open files.
FILE_IO = frozenset({"open", "io.open", "builtins.open", "os.open", "os.fdopen"})
WALL_CLOCK = frozenset(
    {
        "time.time",
        "time.time_ns",
        "time.sleep",
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.datetime.today",
        "datetime.date.today",
        "asyncio.sleep",
    }
)
# Entropy sources other than `random`: they would make the same inputs give different decisions.
ENTROPY = frozenset({"os.urandom", "uuid.uuid1", "uuid.uuid4", "secrets.token_hex"})
RANDOM_CLASS = "random.Random"
DYNAMIC_IMPORTS = frozenset({"importlib.import_module", "__import__"})


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.detail}"


def is_forbidden(module: str) -> bool:
    """True if importing `module` (dotted) pulls in a forbidden module or submodule."""
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN_MODULES)


def _type_checking_ids(tree: ast.AST) -> set[int]:
    """ids of every node inside an `if TYPE_CHECKING:` body (imports there are type-only)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for stmt in node.body:
                out.update(id(n) for n in ast.walk(stmt))
    return out


def _annotation_ids(tree: ast.AST) -> set[int]:
    """ids of every node that sits inside a type annotation."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg):
                if arg is not None and arg.annotation is not None:
                    roots.append(arg.annotation)
            if node.returns is not None:
                roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots for n in ast.walk(root)}


def _qualify(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        if node.id in aliases:
            return ".".join([aliases[node.id], *reversed(parts)])
        if node.id in ("__import__", "open") and not parts:
            return node.id  # the builtins, unless an import rebound the name
    return None


def check_source(source: str, path: str) -> list[Violation]:
    """Every violation in one module's source, sorted; raises SyntaxError if it does not parse."""
    tree = ast.parse(source, filename=path)
    type_only = _type_checking_ids(tree)
    in_annotation = _annotation_ids(tree)
    aliases: dict[str, str] = {}
    found: set[Violation] = set()
    random_imports: list[tuple[ast.stmt, str]] = []  # (import node, bound name)

    def flag(node: ast.AST, rule: str, detail: str) -> None:
        found.add(Violation(path, getattr(node, "lineno", 0), rule, detail))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                root = a.name.split(".")[0]
                bound = a.asname or root
                aliases[bound] = a.name if a.asname else root
                if is_forbidden(a.name):
                    flag(node, "forbidden-import", a.name)
                if root == "random" and id(node) not in type_only:
                    random_imports.append((node, bound))
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module is None:
                continue  # relative imports stay inside the project
            module = node.module
            if is_forbidden(module):
                flag(node, "forbidden-import", module)
            for a in node.names:
                qualified = f"{module}.{a.name}"
                aliases[a.asname or a.name] = qualified
                if is_forbidden(qualified) and not is_forbidden(module):
                    flag(node, "forbidden-import", qualified)
                elif qualified in WALL_CLOCK:
                    flag(node, "wall-clock", qualified)
                elif qualified in ENTROPY:
                    flag(node, "entropy", qualified)
                elif qualified in FILE_IO:
                    flag(node, "file-io", qualified)
                elif module == "random" and qualified != RANDOM_CLASS:
                    flag(node, "module-random", qualified)
                elif qualified == RANDOM_CLASS and id(node) not in type_only:
                    random_imports.append((node, a.asname or a.name))

    for node, bound in random_imports:
        uses = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Name) and n.id == bound and isinstance(n.ctx, ast.Load)
        ]
        # `import random` only to annotate `rng: random.Random` is fine; anything else is not.
        if not uses or any(id(n) not in in_annotation for n in uses):
            flag(node, "random-import", "random imported for use outside type annotations")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
            q = _qualify(node, aliases)
            if q is None:
                continue
            if q in WALL_CLOCK:
                flag(node, "wall-clock", q)
            elif q in ENTROPY:
                flag(node, "entropy", q)
            elif q in FILE_IO:
                flag(node, "file-io", q)
            elif q.startswith("random.") and not q.startswith(RANDOM_CLASS):
                flag(node, "module-random", q)
        elif isinstance(node, ast.Call):
            q = _qualify(node.func, aliases)
            if q == RANDOM_CLASS and not node.args and not node.keywords:
                flag(node, "module-random", "random.Random() without a seed")
            first = node.args[0] if node.args else None
            if (
                q in DYNAMIC_IMPORTS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and is_forbidden(first.value)
            ):
                flag(node, "forbidden-import", f"{q}({first.value!r})")
    return sorted(found)


def check_file(path: Path, label: str | None = None) -> list[Violation]:
    """check_source on a file; violations name it as `label` (default: the path as given)."""
    return check_source(path.read_text(encoding="utf-8"), label or str(path))


def check_tree(root: Path, packages: tuple[str, ...]) -> tuple[list[Violation], list[Path]]:
    """Every .py file under root/<package>, checked; paths in violations are relative to root."""
    files = sorted(p for pkg in packages for p in (root / pkg).rglob("*.py"))
    violations: list[Violation] = []
    for f in files:
        violations.extend(check_file(f, f.relative_to(root).as_posix()))
    return violations, files
