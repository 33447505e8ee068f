"""Your own strategy, as docs/strategies.md tells a newcomer to do it, run from outside the repo:
`vigil strategies new`, edit nothing, list it, run its generated test, backtest it (it trades),
run it in a replay daemon; and the unhappy paths exit 2 with one line naming the file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner import exit_codes
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration

FAST = ("--speed", "1000000000")


def vigil(ws: Workspace, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=cwd,
        env={**ws.env, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == exit_codes.CONFIG, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line and line != "config error:"]
    assert len(lines) == 1, res.stderr
    return lines[0].removeprefix("error: ")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "elsewhere"
    d.mkdir()
    return d


def test_new_strategy_from_template_lists_tests_backtests_and_runs(
    ws: Workspace, outside: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "my_strategies"
    cfg = ("--config", str(ws.config))
    made = vigil(ws, outside, "strategies", "new", "my_dip", "--dir", str(mine))
    assert made.returncode == 0, made.stderr
    assert (mine / "my_dip.py").is_file() and (mine / "test_my_dip.py").is_file()

    listed = vigil(ws, outside, "strategies", "list", "--strategy-path", str(mine), *cfg)
    assert listed.returncode == 0, listed.stderr
    assert f"my_dip  (disabled in config; user directory: {mine / 'my_dip.py'})" in listed.stdout
    assert "- rsi_period: int = 14  RSI period (candles)." in listed.stdout
    as_json = vigil(ws, outside, "strategies", "list", "--json", "--strategy-path", str(mine), *cfg)
    rows = {r["name"]: r for r in json.loads(as_json.stdout)}
    assert set(rows) == {"ema_cross", "rules", "my_dip"}
    assert rows["my_dip"]["description"].startswith("Buy RSI dips")

    # The generated test passes as written.
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(mine)],
        cwd=mine,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-2000:]
    assert "3 passed" in test.stdout

    # A backtest with --strategy runs it alone, and it trades.
    report = tmp_path / "report.json"
    bt = vigil(
        ws,
        outside,
        "backtest",
        "--strategy",
        "my_dip",
        "--strategy-path",
        str(mine),
        "--data",
        str(ws.candles),
        "--output",
        str(report),
        "--no-progress",
        *cfg,
    )
    assert bt.returncode == 0, bt.stderr[-3000:]
    rep = json.loads(report.read_text())
    assert rep["summary"]["trades"] > 0, rep["summary"]
    assert set(rep["metadata"]["strategies"]) == {"my_dip"}
    assert {t["strategy"] for t in rep["trades"]} == {"my_dip"}

    # The daemon runs it the same way (replay, PAPER): its proposals reach the audit log.
    run = vigil(
        ws,
        outside,
        "run",
        "--replay",
        str(ws.candles),
        *FAST,
        "--strategy",
        "my_dip",
        "--strategy-path",
        str(mine),
        *cfg,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    recs = ws.records()
    loaded = next(r for r in recs if r["kind"] == "config_loaded")
    assert "strategies=my_dip " in loaded["data"]["banner"]
    digest = hashlib.sha256((mine / "my_dip.py").read_bytes()).hexdigest()
    assert loaded["data"]["user_strategies"] == {
        "my_dip": {"file": str(mine / "my_dip.py"), "origin": "user directory", "sha256": digest}
    }
    strategies = {r["data"]["strategy"] for r in recs if r["kind"] == "proposal"}
    assert "my_dip" in strategies and "rules" not in strategies
    assert any(r["kind"] == "fill" for r in recs)

    # A 4-trial sweep of it on 2 workers (Ray when installed) ends with a best-params YAML
    # that loads the strategy again where it is pasted.
    space = tmp_path / "space.yaml"
    space.write_text(
        "parameters:\n"
        "  strategies.my_dip.params.entry_below: {float: [20, 40], step: 5}\n"
        "  strategies.my_dip.params.rsi_period: {int: [7, 21]}\n"
    )
    out = tmp_path / "sweep"
    sw = vigil(
        ws,
        outside,
        "sweep",
        "--strategy",
        "my_dip",
        "--strategy-path",
        str(mine),
        "--space",
        str(space),
        "--trials",
        "4",
        "--workers",
        "2",
        "--data",
        str(ws.candles),
        "--out",
        str(out),
        "--no-progress",
        *cfg,
    )
    assert sw.returncode == 0, sw.stderr[-3000:]
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 4 and all(t["state"] == "complete" for t in trials), trials
    best = (out / "best_params.yaml").read_text()
    assert "my_dip:" in best and f"strategies_path: {mine}" in best


def test_nothing_enabled_is_exit_2_in_backtest_and_daemon(ws: Workspace, outside: Path) -> None:
    off = {"VIGIL_STRATEGIES__RULES__ENABLED": "false"}
    cfg = ("--config", str(ws.config))
    bt = vigil(ws, outside, "backtest", "--data", str(ws.candles), *cfg, **off)
    assert one_line_error(bt).startswith("no strategy is enabled")
    run = vigil(ws, outside, "run", "--replay", str(ws.candles), *FAST, *cfg, **off)
    assert one_line_error(run).startswith("no strategy is enabled")
    assert not ws.state_db.exists()  # refused before the state was opened


def test_a_broken_strategy_file_is_exit_2_naming_file_and_line(
    ws: Workspace, outside: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    bad = mine / "peek.py"
    bad.write_text("import time\n\nSTARTED = time.time()\n")
    cfg = ("--config", str(ws.config))
    for args in (
        ("strategies", "list"),
        ("backtest", "--data", str(ws.candles), "--strategy", "rules"),
        ("run", "--replay", str(ws.candles), *FAST),
    ):
        res = vigil(ws, outside, *args, "--strategy-path", str(mine), *cfg)
        assert one_line_error(res).startswith(f"{bad}:3: wall-clock: time.time: refused")
    unknown = vigil(
        ws, outside, "backtest", "--data", str(ws.candles), "--strategy", "my_dipp", *cfg
    )
    assert one_line_error(unknown).startswith("--strategy my_dipp: unknown strategy")


def test_strategies_new_refuses_to_overwrite_and_bad_names(
    ws: Workspace, outside: Path, tmp_path: Path
) -> None:
    d = tmp_path / "s"
    assert vigil(ws, outside, "strategies", "new", "dip", "--dir", str(d)).returncode == 0
    again = vigil(ws, outside, "strategies", "new", "dip", "--dir", str(d))
    assert (
        one_line_error(again)
        == f"{d / 'dip.py'}: already exists; not overwritten (pick another name)"
    )
    assert "lower-case" in one_line_error(vigil(ws, outside, "strategies", "new", "My-Dip"))
    assert "built-in" in one_line_error(vigil(ws, outside, "strategies", "new", "rules"))


def test_a_strategy_that_raises_stops_the_backtest_with_one_line_naming_its_code(
    ws: Workspace, outside: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "boom.py").write_text(
        "from strategy.base import BaseStrategy\n"
        "from strategy.registry import register\n"
        "\n"
        "\n"
        '@register("boom")\n'
        "class Boom(BaseStrategy):\n"
        "    def propose(self, ctx):\n"
        "        return [1 / 0] if ctx.eligible else []\n"
    )
    res = vigil(
        ws,
        outside,
        "backtest",
        "--data",
        str(ws.candles),
        "--strategy",
        "boom",
        "--strategy-path",
        str(mine),
        "--no-progress",
        "--output",
        str(tmp_path / "r.json"),
        "--config",
        str(ws.config),
    )
    assert res.returncode == exit_codes.FAILURE, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"strategy error: {mine / 'boom.py'}:8: ZeroDivisionError: division by zero"
    )


def test_an_indicator_that_raises_in_warm_up_stops_the_daemon_with_one_line(
    ws: Workspace, outside: Path, tmp_path: Path
) -> None:
    """A user indicator failing on the history is a configuration the daemon cannot run:
    exit 2 (systemd does not restart it) naming the user's file and line."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "boom.py").write_text(
        "from strategy.base import BaseStrategy, Indicator\n"
        "from strategy.registry import register\n"
        "\n"
        "\n"
        "class Boom(Indicator):\n"
        '    kind = "boom"\n'
        "\n"
        "    def update(self, o, h, lo, c, v):\n"
        "        return 1.0 / (c - c)\n"
        "\n"
        "\n"
        '@register("boomy")\n'
        "class Boomy(BaseStrategy):\n"
        "    indicators = (Boom,)\n"
        "\n"
        "    @classmethod\n"
        "    def required_features(cls, params):\n"
        '        return frozenset({"boom:3"})\n'
        "\n"
        "    def propose(self, ctx):\n"
        "        return []\n"
    )
    run = vigil(
        ws,
        outside,
        "run",
        "--replay",
        str(ws.candles),
        *FAST,
        "--strategy",
        "boomy",
        "--strategy-path",
        str(mine),
        "--config",
        str(ws.config),
    )
    assert run.returncode == exit_codes.CONFIG, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "error: strategy error at start-up: "
        f"{mine / 'boom.py'}:9: ZeroDivisionError: float division by zero"
    )
