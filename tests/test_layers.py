"""Imports run one way (docs/architecture.md): the checker in tools/check_layers.py
holds the real tree to the rule and fails on a planted forbidden import."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.check_layers import check_tree

REPO = Path(__file__).resolve().parents[1]


def test_real_tree_keeps_the_layers() -> None:
    violations, files = check_tree(REPO)
    names = {f.relative_to(REPO).as_posix() for f in files}
    # A wrong root or renamed packages must not pass vacuously.
    assert {"core/ports.py", "strategy/base.py", "infra/feeds.py", "runner/cli.py"} <= names
    assert {"backtest/runner.py", "infra/exchange/sim.py"} <= names
    found = [str(v) for v in violations]
    assert found == [], "imports against the layer rule:\n" + "\n".join(found)


# --------------------------------------------------------------------------- the checker itself


def _tree(root: Path, files: dict[str, str]) -> Path:
    for pkg in ("core", "strategy", "infra", "runner", "backtest"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


FORBIDDEN = [
    ("core/x.py", "import runner.engine\n", "runner.engine"),
    ("core/x.py", "from infra import feeds\n", "infra"),
    ("core/x.py", "import strategy\n", "strategy"),
    ("core/x.py", "def f():\n    from backtest.data import load\n", "backtest.data"),
    (
        "core/x.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runner.engine import E\n",
        "runner.engine",
    ),
    ("core/x.py", "try:\n    import infra.http\nexcept ImportError:\n    pass\n", "infra.http"),
    ("core/x.py", "from .. import runner\n", "runner"),
    ("core/sub/y.py", "from ...infra import feeds\n", "infra"),
    ("core/x.py", "import importlib\nm = importlib.import_module('runner.cli')\n", "runner.cli"),
    ("core/x.py", "m = __import__('infra')\n", "infra"),
    ("strategy/s.py", "from infra.clock import LiveClock\n", "infra.clock"),
    ("strategy/s.py", "import runner\n", "runner"),
    ("infra/x.py", "from runner.engine import CandleSink\n", "runner.engine"),
    ("infra/x.py", "from backtest.data import CandleSeries\n", "backtest.data"),
    ("infra/x.py", "from strategy import registry\n", "strategy"),
    ("infra/exchange/x.py", "from ...runner import engine\n", "runner"),
    ("runner/x.py", "from backtest.runner import run_backtest\n", "backtest.runner"),
    ("runner/x.py", "import backtest.sweep as s\n", "backtest.sweep"),
]


@pytest.mark.parametrize(("rel", "source", "module"), FORBIDDEN, ids=[s for _, s, _ in FORBIDDEN])
def test_checker_fails_on_a_forbidden_import(
    tmp_path: Path, rel: str, source: str, module: str
) -> None:
    root = _tree(tmp_path, {rel: '"""planted"""\n' + source})
    violations, files = check_tree(root)
    assert len(files) == 6
    assert [(v.path, v.module) for v in violations] == [(rel, module)]
    assert violations[0].line >= 2


ALLOWED = {
    "core/a.py": "import numpy\nfrom core.models import Candle\nfrom . import b\n",
    "core/b.py": "from .a import Candle\n",
    "strategy/s.py": "from core.models import Candle\n",
    "infra/i.py": "from core.ports import Exchange\nimport importlib\n"
    "m = importlib.import_module(name)\n",
    "runner/r.py": "from core import ports\nfrom strategy import registry\nimport infra.http\n",
    "backtest/b.py": "from runner.app import build_engine\nfrom infra.feeds import ReplayFeed\n"
    "from strategy.base import BaseStrategy\nfrom core.models import Candle\n",
    "tools/t.py": "import backtest.runner\n",  # outside the rule
}


def test_checker_accepts_the_allowed_directions(tmp_path: Path) -> None:
    root = _tree(tmp_path, ALLOWED)
    violations, _ = check_tree(root)
    assert violations == []


def test_violation_names_file_line_and_rule(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"infra/x.py": "x = 1\nfrom runner.engine import CandleSink\n"})
    violations, _ = check_tree(root)
    assert [str(v) for v in violations] == [
        "infra/x.py:2: infra imports runner.engine (infra may import core)"
    ]


def test_the_script_exits_1_with_one_line_per_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.check_layers import main

    clean = _tree(tmp_path / "clean", {"runner/r.py": "import infra\n"})
    assert main([str(clean)]) == 0
    bad = _tree(tmp_path / "bad", {"core/x.py": "import runner.engine\nfrom infra import feeds\n"})
    capsys.readouterr()
    assert main([str(bad)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "core/x.py:1: core imports runner.engine (core may import nothing of ours)",
        "core/x.py:2: core imports infra (core may import nothing of ours)",
    ]
    assert main([str(tmp_path / "empty")]) == 1
