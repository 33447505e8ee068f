"""User strategies: loaded from a directory or an entry point; every problem one line naming the
file (and line), never a traceback; --strategy enables exactly the named ones."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from infra.config_loader import load_config
from runner import strategy_loader
from runner.strategy_loader import STRATEGIES, load_strategy_dir, load_user_strategies, source_of
from runner.strategy_template import strategy_source
from strategy import registry

GOOD = """
from strategy.base import BaseStrategy
from strategy.registry import register


@register("{name}")
class S(BaseStrategy):
    \"\"\"A test strategy.\"\"\"

    def propose(self, ctx):
        return []
"""


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Each test starts from the built-ins alone and leaves nothing behind."""
    registry.known()
    saved = (
        dict(registry._REGISTRY),
        dict(strategy_loader._SOURCES),
        dict(strategy_loader._FILES),
        dict(strategy_loader._ENTRY_POINTS),
    )
    modules = set(sys.modules)
    yield
    for target, snapshot in zip(
        (
            registry._REGISTRY,
            strategy_loader._SOURCES,
            strategy_loader._FILES,
            strategy_loader._ENTRY_POINTS,
        ),
        saved,
        strict=True,
    ):
        target.clear()
        target.update(snapshot)  # type: ignore[attr-defined]
    for m in set(sys.modules) - modules:
        del sys.modules[m]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def error_of(directory: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_strategy_dir(directory)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# --------------------------------------------------------------------------- directory


def test_a_directory_module_registers_and_names_its_source(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.py", GOOD.format(name="mine"))
    write(tmp_path, "test_mine.py", "import pytest\nopen('x')\n")  # tests are not loaded
    write(tmp_path, "_helpers.py", "import socket\n")  # nor private helpers
    assert load_strategy_dir(tmp_path) == ["mine"]
    assert "mine" in registry.known()
    src = source_of("mine")
    assert src is not None and src.file == str(path) and src.origin == "user directory"
    assert load_strategy_dir(tmp_path) == []  # idempotent: a second load is a no-op


def test_the_template_loads_and_validates_its_params(tmp_path: Path) -> None:
    write(tmp_path, "dip.py", strategy_source("dip"))
    assert load_strategy_dir(tmp_path) == ["dip"]
    cls = registry.get("dip")
    assert cls.required_features(cls.Params()) == {"rsi:14", "ema:200"}
    with pytest.raises(ConfigError, match=r"strategies\.dip\.params\.entry_below"):
        registry.resolve_params("dip", {"entry_below": "x"})


def test_a_clash_with_a_builtin_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x.py", GOOD.format(name="ema_cross"))
    assert error_of(tmp_path) == (
        f"{path}:5: strategy name 'ema_cross' clashes with the built-in strategy 'ema_cross'; "
        "rename one of them"
    )
    assert registry.get("ema_cross").__module__ == "strategy.ema_cross"


def test_a_clash_between_two_user_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.py", GOOD.format(name="twin"))
    second = write(tmp_path, "b.py", GOOD.format(name="twin"))
    msg = error_of(tmp_path)
    assert msg.startswith(f"{second}:5: strategy name 'twin' clashes with 'twin' from {first}")


def test_an_import_error_shows_file_line_and_message(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.py", '"""doc"""\nx = 1\ny = x / undefined_thing\n')
    assert error_of(tmp_path) == (
        f"{path}:3: import failed: NameError: name 'undefined_thing' is not defined"
    )
    write(tmp_path, "broken.py", "import no_such_package_here\n")
    assert "broken.py:1: import failed: ModuleNotFoundError" in error_of(tmp_path)


def test_a_failed_import_leaves_nothing_registered(tmp_path: Path) -> None:
    write(tmp_path, "half.py", GOOD.format(name="half") + "\nraise RuntimeError('late')\n")
    assert "import failed: RuntimeError: late" in error_of(tmp_path)
    assert "half" not in registry.known()
    assert not [m for m in sys.modules if m.startswith(strategy_loader.MODULE_PREFIX + "half")]


def test_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.py", "x = 1\ndef f(:\n    pass\n")
    assert error_of(tmp_path).startswith(f"{path}:2: syntax error:")


def test_a_module_that_registers_nothing_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.py", "X = 1\n")
    assert error_of(tmp_path).startswith(f"{path}: registers no strategy")


def test_a_bad_name_or_shape_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "shape.py", GOOD.format(name="Bad-Name"))
    assert error_of(tmp_path).startswith(f"{path}:5: import failed: ValueError: strategy name")


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("import socket\n", "forbidden-import: socket"),
        ("import requests\n", "forbidden-import: requests"),
        ("import ccxt\n", "forbidden-import: ccxt"),
        ("import sqlite3\n", "forbidden-import: sqlite3"),
        ("from aiohttp import ClientSession\n", "forbidden-import: aiohttp"),
        ("DATA = open('prices.csv').read()\n", "file-io: open"),
        ("import time\nNOW = time.time()\n", "wall-clock: time.time"),
        ("from datetime import datetime\nNOW = datetime.now()\n", "wall-clock"),
        ("import random\nX = random.random()\n", "module-random: random.random"),
    ],
)
def test_impure_modules_are_refused_before_they_run(tmp_path: Path, code: str, rule: str) -> None:
    marker = tmp_path / "ran"
    # The strategy would record that it ran; refusal happens before any of it executes.
    body = (
        GOOD.format(name="impure") + f"\nfrom pathlib import Path\nPath({str(marker)!r}).touch()\n"
    )
    path = write(tmp_path / "s", "impure.py", '"""doc"""\n' + code + body)
    msg = error_of(tmp_path / "s")
    assert msg.startswith(f"{path}:"), msg
    assert rule in msg and "refused" in msg
    assert not marker.exists() and "impure" not in registry.known()


def test_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope") == f"{tmp_path / 'nope'}: strategies directory not found"


# --------------------------------------------------------------------------- entry points


def make_package(root: Path, entry_points: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        write(root, rel, text)
    info = root / "vigil_demo_pkg-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vigil-demo-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vigil.strategies]\n" + entry_points)


def test_entry_points_load_modules_and_plain_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = """
    from strategy.base import BaseStrategy


    class Plain(BaseStrategy):
        def propose(self, ctx):
            return []
    """
    make_package(
        tmp_path,
        "ep_mod = vigil_demo_a\nep_plain = vigil_demo_b:Plain\n",
        {"vigil_demo_a/__init__.py": GOOD.format(name="ep_mod"), "vigil_demo_b.py": plain},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert sorted(load_user_strategies([])) == ["ep_mod", "ep_plain"]
    src = source_of("ep_plain")
    assert src is not None and src.file == str(tmp_path / "vigil_demo_b.py")
    assert src.origin == "package vigil-demo-pkg, entry point ep_plain"
    assert load_user_strategies([]) == []  # idempotent


@pytest.mark.parametrize(
    ("entry", "files", "expected"),
    [
        ("bad = vigil_demo_c\n", {"vigil_demo_c.py": "import socket\n"}, "forbidden-import"),
        ("bad = vigil_demo_d\n", {"vigil_demo_d.py": "X = 1\n"}, "registers no strategy"),
        ("bad = vigil_demo_e\n", {"vigil_demo_e.py": "1/0\n"}, "vigil_demo_e.py:1: import failed"),
        ("bad = not_installed_mod\n", {}, "module 'not_installed_mod' is not installed"),
        (
            "bad = vigil_demo_f\n",
            {"vigil_demo_f.py": GOOD.format(name="rules")},
            "clashes with the built-in strategy 'rules'",
        ),
    ],
)
def test_entry_point_problems_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
    files: dict[str, str],
    expected: str,
) -> None:
    make_package(tmp_path, entry, files)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.raises(ConfigError) as info:
        load_user_strategies([])
    assert expected in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- config


def config_dir(tmp_path: Path, strategies_yaml: str) -> Path:
    d = tmp_path / "config"
    write(d, "strategies.yaml", strategies_yaml)
    return d


def test_strategies_path_in_the_config_loads_the_directory(tmp_path: Path) -> None:
    write(tmp_path / "mine", "mine.py", GOOD.format(name="mine"))
    cfg = config_dir(
        tmp_path,
        f"strategies_path: {tmp_path / 'mine'}\nstrategies:\n  mine:\n    enabled: true\n",
    )
    loaded = load_config(cfg, {}, strategies=STRATEGIES)
    assert [n for n, _ in loaded.config.enabled_strategies()] == ["mine"]
    assert loaded.config.strategies_path == tmp_path / "mine"
    extra = tmp_path / "more"
    extra.mkdir()
    both = load_config(cfg, {}, strategy_paths=[extra], strategies=STRATEGIES)
    assert both.strategy_dirs == ((tmp_path / "mine").resolve(), extra.resolve())


def test_a_missing_strategies_path_names_the_file(tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, "strategies_path: nowhere/at/all\n")
    with pytest.raises(ConfigError, match=r"strategies\.yaml: strategies_path = 'nowhere/at/all'"):
        load_config(cfg, {}, strategies=STRATEGIES)


def test_only_strategies_enables_exactly_those(tmp_path: Path) -> None:
    write(tmp_path / "mine", "mine.py", GOOD.format(name="mine"))
    cfg = config_dir(
        tmp_path,
        "strategies:\n  rules:\n    enabled: true\n  ema_cross:\n    enabled: true\n",
    )
    base = load_config(cfg, {}, strategies=STRATEGIES)
    loaded = load_config(
        cfg,
        {},
        strategy_paths=[tmp_path / "mine"],
        only_strategies=["mine", "ema_cross"],
        strategies=STRATEGIES,
    )
    assert [n for n, _ in loaded.config.enabled_strategies()] == ["ema_cross", "mine"]
    assert loaded.config_hash != base.config_hash  # the run's config is the one hashed
    assert "--strategy mine,ema_cross" in loaded.sources
    # Without a strategies section the built-in default (rules) is replaced, not added to.
    bare = load_config(
        config_dir(tmp_path / "bare", "{}\n"),
        {},
        only_strategies=["ema_cross"],
        strategies=STRATEGIES,
    )
    assert [n for n, _ in bare.config.enabled_strategies()] == ["ema_cross"]


def test_only_strategies_refuses_an_unknown_name_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--strategy ema_cros: unknown strategy; did you mean"):
        load_config(
            config_dir(tmp_path, "{}\n"), {}, only_strategies=["ema_cros"], strategies=STRATEGIES
        )


def test_an_unknown_feature_key_names_the_strategy_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mine",
        "wants_sma.py",
        GOOD.format(name="wants_sma")
        + """
    @classmethod
    def required_features(cls, params):
        return frozenset({"sma:20"})
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(
            config_dir(tmp_path, "{}\n"),
            {},
            strategy_paths=[path.parent],
            only_strategies=["wants_sma"],
            strategies=STRATEGIES,
        )
    assert str(info.value).startswith(
        f"{path}: strategy 'wants_sma': required_features: ValueError: bad feature key 'sma:20'"
    )
