"""The backtest package's commands reach `vigil` through the `vigil.commands` entry points
(runner may not import backtest): installed by `pip install -e .`, listed in order, run the
same as before, and a broken group cannot take the other commands down."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from backtest import cli_backtest, cli_data, cli_sweep
from runner.cli import build_parser, main
from runner.cli_plugins import CommandGroup, expand_aliases, installed_groups, ordered

BIN = Path(sys.executable).parent


def test_the_installed_vigil_lists_the_backtest_commands() -> None:
    vigil = BIN / "vigil"
    assert vigil.is_file(), f"{vigil}: not installed; run make .venv/.installed-stamp"
    out = subprocess.run(
        [str(vigil), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    commands = [ln.split()[0] for ln in out.splitlines() if ln[:4] == "    " and ln[4] != " "]
    for name in ("backtest", "backtest-compare", "download-data", "data", "sweep"):
        assert name in commands, out
    # The order of `vigil --help` (and docs/cli.md) is the one it always was.
    assert commands.index("shadow") < commands.index("backtest") < commands.index("strategies")
    assert commands.index("strategies") < commands.index("data") < commands.index("state")
    assert commands[-1] == "sweep"


def test_entry_points_name_the_backtest_groups() -> None:
    groups = installed_groups()
    assert groups["backtest"] is cli_backtest.COMMANDS
    assert groups["data"] is cli_data.COMMANDS
    assert groups["sweep"] is cli_sweep.COMMANDS


def test_python_m_runner_cli_runs_a_backtest_command(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runner.cli", "backtest", "compare", "a.json", "b.json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out  # the reports do not exist: "compare error", exit 2
    assert out.stderr.startswith("compare error:"), out.stderr


def test_without_the_groups_the_parser_has_only_runners_commands() -> None:
    sub = build_parser({})._subparsers._group_actions[0]  # type: ignore[union-attr]
    assert "backtest" not in sub.choices and "run" in sub.choices and "state" in sub.choices


def test_a_plugged_command_dispatches_to_its_group(capsys: pytest.CaptureFixture[str]) -> None:
    seen = []

    def add(sub, common, epilog):  # type: ignore[no-untyped-def]
        sub.add_parser("hello", help="say hello", epilog=epilog).add_argument("--log-level")

    def run(args):  # type: ignore[no-untyped-def]
        seen.append(args.cmd)
        return 0

    group = CommandGroup(add=add, dispatch=run, aliases={("say", "hello"): "hello"})
    parser = build_parser({"hello": group})
    args = parser.parse_args(expand_aliases(["say", "hello"], {"hello": group}))
    from runner.cli import dispatch

    assert dispatch(args) == 0 and seen == ["hello"]


def test_ordered_keeps_the_known_order_then_names() -> None:
    assert ordered(["z", "sweep", "a", "backtest"], ("backtest", "data", "sweep")) == [
        "backtest",
        "sweep",
        "a",
        "z",
    ]


def _package(root: Path, entry_points: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).write_text(text)
    info = root / "vigil_cmd_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vigil-cmd-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vigil.commands]\n" + entry_points)


def test_a_broken_group_is_one_warning_and_the_rest_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _package(
        tmp_path,
        "boom = vigil_cmd_boom:COMMANDS\nodd = vigil_cmd_odd:COMMANDS\n",
        {
            "vigil_cmd_boom.py": "raise RuntimeError('no\\nluck')\n",
            "vigil_cmd_odd.py": "COMMANDS = 1\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    groups = installed_groups()
    assert "boom" not in groups and "odd" not in groups and "backtest" in groups
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: commands boom = vigil_cmd_boom:COMMANDS not loaded: RuntimeError: no luck",
        "warning: commands odd = vigil_cmd_odd:COMMANDS not loaded: is a int, not a CommandGroup",
    ]
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


class _OldInstall:
    """The metadata of a vigil installed before its commands became entry points."""

    version = "0.0.9"
    entry_points: tuple[object, ...] = ()


def _no_groups(monkeypatch: pytest.MonkeyPatch, dist: object) -> None:
    def distribution(name: str) -> object:
        assert name == "vigil"
        if dist is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return dist

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr("runner.cli.installed_groups", lambda: {})


@pytest.mark.parametrize(
    ("dist", "state"),
    [
        (None, "vigil is not installed in this Python"),
        (_OldInstall(), "the installed vigil 0.0.9 is older than its entry points"),
    ],
)
def test_a_command_missing_for_want_of_an_install_says_so(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dist: object,
    state: str,
) -> None:
    _no_groups(monkeypatch, dist)
    assert main(["backtest", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: no command 'backtest' here: part of vigil's commands are registered when it is "
        f"installed, and {state}; run `make` (or `pip install -e .`) in the checkout\n"
    )


def test_with_vigil_installed_a_typo_is_argparses_plain_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bakctest"])
    assert exc.value.code == 2
    assert "invalid choice: 'bakctest'" in capsys.readouterr().err
