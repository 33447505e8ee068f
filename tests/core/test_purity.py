"""core/ and strategy/ stay pure: no I/O libraries, no wall clock, no global randomness.

The checker reads the syntax tree rather than grepping, so aliases (`import time as t`,
`from datetime import datetime as dt`), submodules (`ccxt.async_support`) and bare references
(`now=time.time` as a default) are caught as well as plain calls.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PURE_PACKAGES = ("core", "strategy")

FORBIDDEN_MODULES = frozenset({"ccxt", "aiohttp", "sqlite3", "apprise", "prometheus_client"})
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
        if node.id == "__import__" and not parts:
            return "__import__"
    return None


def check_source(source: str, path: str) -> list[Violation]:
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
                if root in FORBIDDEN_MODULES:
                    flag(node, "forbidden-import", a.name)
                if root == "random" and id(node) not in type_only:
                    random_imports.append((node, bound))
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module is None:
                continue  # relative imports stay inside the project
            module = node.module
            if module.split(".")[0] in FORBIDDEN_MODULES:
                flag(node, "forbidden-import", module)
            for a in node.names:
                qualified = f"{module}.{a.name}"
                aliases[a.asname or a.name] = qualified
                if qualified in WALL_CLOCK:
                    flag(node, "wall-clock", qualified)
                elif qualified in ENTROPY:
                    flag(node, "entropy", qualified)
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
                and first.value.split(".")[0] in FORBIDDEN_MODULES
            ):
                flag(node, "forbidden-import", f"{q}({first.value!r})")
    return sorted(found)


def check_tree(root: Path, packages: tuple[str, ...]) -> tuple[list[Violation], list[Path]]:
    files = sorted(p for pkg in packages for p in (root / pkg).rglob("*.py"))
    violations: list[Violation] = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        violations.extend(check_source(f.read_text(encoding="utf-8"), rel))
    return violations, files


# --------------------------------------------------------------------------- the real tree


def test_core_and_strategy_are_pure() -> None:
    violations, files = check_tree(REPO, PURE_PACKAGES)
    names = {f.relative_to(REPO).as_posix() for f in files}
    # Guard against a vacuous pass (wrong root, renamed packages).
    assert {"core/cycle.py", "core/risk.py", "core/models.py", "strategy/rules.py"} <= names
    assert violations == [], "impure code in core/ or strategy/:\n" + "\n".join(
        str(v) for v in violations
    )


# --------------------------------------------------------------------------- the checker itself

PLANTED = [
    ("import ccxt\n", "forbidden-import"),
    ("import ccxt.async_support as cx\n", "forbidden-import"),
    ("from aiohttp import web\n", "forbidden-import"),
    ("from aiohttp.web import Application\n", "forbidden-import"),
    ("import sqlite3\n", "forbidden-import"),
    ("from apprise import Apprise\n", "forbidden-import"),
    ("import prometheus_client\n", "forbidden-import"),
    ("from prometheus_client.core import GaugeMetricFamily\n", "forbidden-import"),
    ("import importlib\nm = importlib.import_module('ccxt.pro')\n", "forbidden-import"),
    ("m = __import__('sqlite3')\n", "forbidden-import"),
    ("import time\nx = time.time()\n", "wall-clock"),
    ("import time as t\nx = t.time_ns()\n", "wall-clock"),
    ("from time import time\n", "wall-clock"),
    ("from time import time as now\nx = now()\n", "wall-clock"),
    ("import time\ndef f(now=time.time):\n    return now()\n", "wall-clock"),
    ("import time\ntime.sleep(1)\n", "wall-clock"),
    ("from datetime import datetime\nx = datetime.now()\n", "wall-clock"),
    ("import datetime\nx = datetime.datetime.utcnow()\n", "wall-clock"),
    ("from datetime import datetime as dt\nx = dt.today()\n", "wall-clock"),
    ("import datetime as d\nx = d.date.today()\n", "wall-clock"),
    ("from datetime import date\nx = date.today()\n", "wall-clock"),
    ("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n", "wall-clock"),
    ("from asyncio import sleep\n", "wall-clock"),
    ("import os\nx = os.urandom(8)\n", "entropy"),
    ("import uuid\nx = uuid.uuid4()\n", "entropy"),
    ("import random\nx = random.random()\n", "module-random"),
    ("import random\nrandom.seed(1)\n", "module-random"),
    ("import random\nx = random.randint(1, 6)\n", "module-random"),
    ("import random as r\nx = r.uniform(0, 1)\n", "module-random"),
    ("import random\nrandom.shuffle([1, 2])\n", "module-random"),
    ("from random import choice as pick\n", "module-random"),
    ("from random import *\n", "module-random"),
    ("import random\nrng = random.Random()\n", "module-random"),
    ("from random import Random\nrng = Random()\n", "module-random"),
    ("import random\n", "random-import"),
    ("import random\nrng = random.Random(7)\n", "random-import"),
    ("from random import Random\nrng = Random(7)\n", "random-import"),
]


@pytest.mark.parametrize(("source", "rule"), PLANTED, ids=[s for s, _ in PLANTED])
def test_checker_catches_planted_violation(tmp_path: Path, source: str, rule: str) -> None:
    pkg = tmp_path / "core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "planted.py").write_text('"""planted"""\n' + source)
    violations, files = check_tree(tmp_path, ("core",))
    assert len(files) == 2
    assert rule in {v.rule for v in violations}, violations
    assert all(v.path == "core/planted.py" and v.line >= 2 for v in violations)


def test_checker_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "strategy").mkdir()
    (tmp_path / "strategy" / "bad.py").write_text("x = 1\n\nimport time\nnow = time.time()\n")
    violations, _ = check_tree(tmp_path, ("strategy",))
    assert [str(v) for v in violations] == ["strategy/bad.py:4: wall-clock: time.time"]


CLEAN = """
from __future__ import annotations

import random
from datetime import datetime, timezone
from random import Random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random as rnd


def jitter(rng: random.Random, base: float) -> float:
    return base * (1 + rng.uniform(-0.1, 0.1))


def pick(rng: Random, items: list[int]) -> int:
    return rng.choice(items)


def parse(ts_ms: int) -> datetime:
    # Converting a given timestamp is pure; only reading "now" is not.
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)


def later(rng: rnd.Random, now_ms: int) -> int:
    time = now_ms + 1  # a local called `time` is not the time module
    return time
"""


def test_checker_accepts_clean_code(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "clean.py").write_text(CLEAN)
    violations, _ = check_tree(tmp_path, ("core",))
    assert violations == []
