"""core/ and strategy/ stay pure: no I/O libraries, no wall clock, no global randomness.

The rule set lives in infra/purity.py: the user-strategy loader applies the same one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.purity import check_tree

REPO = Path(__file__).resolve().parents[2]
PURE_PACKAGES = ("core", "strategy")


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
    ("import socket\n", "forbidden-import"),
    ("import requests\n", "forbidden-import"),
    ("import urllib.request\n", "forbidden-import"),
    ("from urllib import request\n", "forbidden-import"),
    ("from http.client import HTTPConnection\n", "forbidden-import"),
    ("import subprocess\n", "forbidden-import"),
    ("x = open('f.txt').read()\n", "file-io"),
    ("import io\nx = io.open('f.txt')\n", "file-io"),
    ("from builtins import open as o\n", "file-io"),
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


def split(url: str) -> str:
    from urllib.parse import urlsplit  # string work, no network

    return urlsplit(url).netloc


def later(rng: rnd.Random, now_ms: int) -> int:
    time = now_ms + 1  # a local called `time` is not the time module
    return time
"""


def test_checker_accepts_clean_code(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "clean.py").write_text(CLEAN)
    violations, _ = check_tree(tmp_path, ("core",))
    assert violations == []
