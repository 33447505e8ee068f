"""The generated references must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current() -> None:
    res = subprocess.run(
        [sys.executable, "tools/gen_cli_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["run", "--help"],
        ["kill", "--help"],
        ["resume", "--help"],
        ["status", "--help"],
        ["config", "check", "--help"],
        ["config", "show", "--help"],
        ["audit", "verify", "--help"],
        ["audit", "tail", "--help"],
        ["audit", "replay", "--help"],
        ["backtest", "--help"],
        ["backtest", "compare", "--help"],
        ["download-data", "--help"],
        ["shadow", "report", "--help"],
    ):
        res = subprocess.run(
            [sys.executable, "-m", "runner.cli", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, (args, res.stderr)
        assert "usage: vigil" in res.stdout
