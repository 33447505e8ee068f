"""The fast failure drills, run as an operator runs them: `vigil drill run --fast`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def vigil(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args, "--config", str(ROOT / "config")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_list_names_every_drill_and_unknown_names_are_refused() -> None:
    listed = vigil("drill", "list")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert {
        "kill_switch",
        "audit_tamper",
        "state_corruption",
        "feeder_outage",
        "clock_drift",
    } <= set(names)
    bad = vigil("drill", "run", "no_such_drill")
    assert bad.returncode == 2 and "unknown drill no_such_drill" in bad.stdout


@pytest.mark.integration
def test_the_fast_drills_pass() -> None:
    done = vigil("drill", "run", "--fast")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    passed = [line.split()[1] for line in lines if line.startswith("PASS ")]
    assert passed == [
        "kill_switch",
        "audit_tamper",
        "state_corruption",
        "insufficient_balance",
        "clock_drift",
    ]
    assert lines[-1] == "5 passed, 0 failed"
