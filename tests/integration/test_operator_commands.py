"""Operator commands act on the running daemon, from any working directory (issue 11, part 1).

The daemon is the real `vigil run --replay` in PAPER with a non-default config, started in one
directory; kill, resume and status run from another, with the config's relative data_dir, and
are checked against the daemon's own /health.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config_loader import load_config
from runner import exit_codes
from runner.strategy_loader import STRATEGIES
from tests.integration.conftest import ROOT, Workspace, wait_for

pytestmark = pytest.mark.integration

SLOW = ("--speed", "300")  # one 5m candle per second: the daemon runs for the whole test


def _health(ws: Workspace) -> dict[str, Any] | None:
    try:
        port = int((ws.data / "health" / "http_port").read_text())
    except (OSError, ValueError):
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:  # 503 while halted
        body = exc.read()
    except OSError:
        return None
    data: dict[str, Any] = json.loads(body)
    return data


def _cycled(ws: Workspace) -> bool:
    h = _health(ws)
    return h is not None and h.get("trading_state") not in (None, "UNKNOWN")


@pytest.fixture
def relative_ws(ws: Workspace, tmp_path: Path) -> Workspace:
    """The shipped config's own relative `data_dir: data`, which now means <tmp>/data because
    the config directory is <tmp>/config, from whatever directory a command runs."""
    ws.env.pop("VIGIL_PATHS__DATA_DIR")
    policy = ws.config / "policy.yaml"
    assert "data_dir: data" in policy.read_text()
    assert ws.data == tmp_path / "data" / "replay"
    return ws


@pytest.fixture
def daemon(relative_ws: Workspace, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    ws = relative_ws
    here = tmp_path / "where-the-daemon-started"
    here.mkdir()
    with (tmp_path / "daemon.err").open("wb") as err:
        argv = ["run", "--replay", str(ws.candles), *SLOW, "--config", str(ws.config)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.cli", *argv],
            cwd=here,
            env=ws.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        assert wait_for(lambda: _cycled(ws), 90), (tmp_path / "daemon.err").read_text()[-3000:]
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert not (here / "data").exists()  # the daemon's files went where the config says


def test_kill_resume_and_status_reach_the_daemon_from_another_directory(
    relative_ws: Workspace, daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    ws = relative_ws
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    status = ws.vigil("status", "--replay", "--json", cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    facts = json.loads(status.stdout)
    default_hash = load_config(ROOT / "config", {}, strategies=STRATEGIES).config_hash
    banner = next(r for r in ws.records() if r["kind"] == "config_loaded")
    assert facts["running"] is True and facts["pid"] == daemon.pid
    assert facts["mode"] == "PAPER" and facts["replay"] is True
    assert facts["config_hash"] == banner["config_hash"] != default_hash
    assert facts["paths"]["data_dir"] == str(ws.data)
    assert facts["trading_state"] in ("ACTIVE", "REDUCING", "HALTED")
    assert facts["last_cycle"].endswith("UTC")
    human = ws.vigil("status", "--replay", cwd=elsewhere)
    assert human.returncode == 0
    assert f"pid {daemon.pid}" in human.stdout and "PAPER" in human.stdout
    assert facts["config_hash"] in human.stdout and str(ws.data) in human.stdout

    # The live daemon of this config is not running: said so, with the path and a hint.
    live = ws.vigil("status", cwd=elsewhere)
    assert live.returncode == exit_codes.NOT_RUNNING
    assert str(tmp_path / "data" / "vigil.pid") in live.stdout
    assert "--replay" in live.stdout

    kill = ws.vigil("kill", "--replay", "--reason", "exchange incident", cwd=elsewhere)
    seen = time.time()
    assert kill.returncode == 0, kill.stderr
    assert "HALTED" in kill.stdout and str(ws.data / "KILL_SWITCH") in kill.stdout
    health = _health(ws)
    assert health is not None and health["kill_switch"] is True
    assert health["trading_state"] == "HALTED"
    # From the kill file appearing to /health showing the halt: within 2 s.
    assert seen - (ws.data / "KILL_SWITCH").stat().st_mtime < 2.0
    assert not (elsewhere / "data").exists()

    resume = ws.vigil("resume", "--replay", cwd=elsewhere)
    assert resume.returncode == 0, resume.stderr
    assert "re-armed" in resume.stdout
    health = _health(ws)
    assert health is not None and health["kill_switch"] is False
    assert not (ws.data / "KILL_SWITCH").exists()
    assert not list(elsewhere.iterdir())


def test_without_a_daemon_commands_say_so_and_kill_still_latches(
    relative_ws: Workspace, tmp_path: Path
) -> None:
    ws = relative_ws
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lock = str(tmp_path / "data" / "vigil.pid")

    resume = ws.vigil("resume", cwd=elsewhere)
    assert resume.returncode == exit_codes.NOT_RUNNING
    assert lock in resume.stderr and "nothing to re-arm" in resume.stderr

    kill = ws.vigil("kill", "--reason", "maintenance", cwd=elsewhere)
    assert kill.returncode == exit_codes.NOT_RUNNING
    assert "no vigil daemon is running" in kill.stderr and lock in kill.stderr
    assert str(tmp_path / "data" / "state.db") in kill.stderr
    assert (tmp_path / "data" / "KILL_SWITCH").read_text().strip() == "maintenance"

    status = ws.vigil("status", "--json", cwd=elsewhere)
    assert status.returncode == exit_codes.NOT_RUNNING
    facts = json.loads(status.stdout)
    assert facts["running"] is False and facts["source"] == "disk"
    assert facts["kill_switch"] is True and facts["kill_reason"] == "maintenance"
    assert "mode" not in facts and "config_hash" not in facts  # nothing of the CLI's own
    human = ws.vigil("status", cwd=elsewhere)
    assert "what is on disk" in human.stdout and lock in human.stdout

    # The same data dir spelled absolute (another config hash) reaches the same files.
    env = dict(ws.env)
    env["VIGIL_PATHS__DATA_DIR"] = str(tmp_path / "data")  # the same place, spelled absolute
    resume = ws.vigil("resume", cwd=elsewhere, env=env)
    assert resume.returncode == exit_codes.NOT_RUNNING
    assert "latch cleared" in resume.stderr
    assert not (tmp_path / "data" / "KILL_SWITCH").exists()
    assert not list(elsewhere.iterdir())


def test_replay_and_live_state_never_mix_and_a_continued_replay_says_so(
    ws: Workspace,
) -> None:
    first = ws.vigil("run", "--replay", str(ws.candles), "--speed", "1e9", "--max-cycles", "30")
    assert first.returncode == 0, first.stderr[-2000:]
    assert (ws.data / "state.db").exists()
    data_dir = ws.data.parent
    assert not (data_dir / "state.db").exists()  # the live state is untouched
    again = ws.vigil("run", "--replay", str(ws.candles), "--speed", "1e9", "--max-cycles", "5")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "continuing the earlier replay" in again.stderr and "--fresh" in again.stderr
    fresh = ws.vigil(
        "run", "--replay", str(ws.candles), "--speed", "1e9", "--max-cycles", "5", "--fresh"
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "continuing" not in fresh.stderr
    cycles = [r for r in ws.records() if r["kind"] == "cycle"]
    assert len(cycles) == 5  # the earlier replay's log went with --fresh


def test_piped_output_closed_early_is_no_traceback(ws: Workspace) -> None:
    for args in (("config", "show"), ("status", "--json")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.cli", *args, "--config", str(ws.config)],
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line (like `| head -0`)
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
        assert "Traceback" not in err and "BrokenPipe" not in err, err
        assert proc.returncode == exit_codes.FAILURE  # quietly, the output was not delivered


def _free_port_held() -> tuple[Any, int]:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, int(s.getsockname()[1])


BAD_INPUT: list[tuple[str, list[str], str]] = [
    ("pairs lower case", ["backtest", "--data", "{candles}", "--pairs", "btcusdt"], "BTC/USDT"),
    ("pairs dash", ["backtest", "--data", "{candles}", "--pairs", "BTC-USDT"], "BTC/USDT"),
    ("data is a file", ["backtest", "--data", "{file}"], "is a file"),
    ("data missing", ["backtest", "--data", "{tmp}/nope"], "no such directory"),
    (
        "output dir missing",
        ["backtest", "--data", "{candles}", "--output", "{tmp}/nope/r.json"],
        "does not exist",
    ),
    ("timeframe flag", ["backtest", "--data", "{candles}", "--timeframe", "5min"], "--timeframe"),
    (
        "from after to",
        ["backtest", "--data", "{candles}", "--from", "2024-01-05", "--to", "2024-01-02"],
        "is after --to",
    ),
    (
        "empty range",
        ["backtest", "--data", "{candles}", "--from", "2024-01-05", "--to", "2024-01-05"],
        "range is empty",
    ),
    ("mode typo", ["run", "--mode", "papr", "--replay", "{candles}"], "--mode"),
    ("replay is a file", ["run", "--replay", "{file}"], "is a file"),
    ("unknown audit kind", ["audit", "tail", "--kind", "fills"], "known kinds"),
    ("config missing", ["config", "check", "--config", "{tmp}/nope"], "no such directory"),
    ("config is a file", ["config", "check", "--config", "{file}"], "is a file"),
    ("port in use", ["run", "--replay", "{candles}"], "http.port"),
]


@pytest.mark.parametrize(("name", "argv", "says"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_no_traceback(
    ws: Workspace, tmp_path: Path, name: str, argv: list[str], says: str
) -> None:
    afile = tmp_path / "a-file.txt"
    afile.write_text("not a directory\n")
    args = [a.format(candles=ws.candles, file=afile, tmp=tmp_path) for a in argv]
    env = dict(ws.env)
    held = None
    if name == "port in use":
        held, port = _free_port_held()
        env["VIGIL_HTTP__PORT"] = str(port)
    if name == "timeframe flag":
        env["VIGIL_TIMEFRAME"] = "5m"  # set, but not the value at fault
    try:
        res = subprocess.run(
            [sys.executable, "-m", "runner.cli", *args]
            + (["--config", str(ws.config)] if "--config" not in args else []),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        if held is not None:
            held.close()
    assert res.returncode == exit_codes.CONFIG, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert says in lines[0]
    if name == "timeframe flag":
        assert "VIGIL_TIMEFRAME" not in lines[0]
    # Nothing was started: no state, no audit log, no report.
    # (The lock files of a daemon that got as far as its locks may exist; no records do.)
    assert not (ws.data / "state.db").exists()
    assert not list((ws.data / "audit").glob("audit-*.jsonl"))
    assert not os.path.exists(tmp_path / "report.json")


def test_mode_is_case_insensitive_on_the_command_line_as_in_yaml(ws: Workspace) -> None:
    res = ws.vigil(
        "run", "--mode", "paper", "--replay", str(ws.candles), "--speed", "1e9", "--max-cycles", "5"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mode=PAPER" in res.stderr
