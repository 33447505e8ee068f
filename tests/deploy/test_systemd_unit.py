"""The systemd unit shipped in deploy/ is valid (`systemd-analyze verify`, where that command
exists) and says what the runbook says: READY once serving, secrets file optional, no restart
for the exit codes a restart cannot fix."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import exit_codes

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "vigil.service"
SYSUSERS = ROOT / "deploy" / "systemd" / "vigil.sysusers.conf"
EXEC = "/opt/vigil/.venv/bin/vigil"


def service() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(UNIT.read_text())
    return cp["Service"]


def test_unit_says_what_the_runbook_says() -> None:
    s = service()
    assert s["Type"] == "notify"
    assert s["EnvironmentFile"].startswith("-")  # PAPER needs no secrets file
    assert s["ExecStart"] == f"{EXEC} run --config /etc/vigil"
    assert s["StateDirectory"] == "vigil" and s["ConfigurationDirectory"] == "vigil"
    assert s["User"] == "vigil"
    no_restart = {int(x) for x in s["RestartPreventExitStatus"].split()}
    assert no_restart == {
        exit_codes.CONFIG,
        exit_codes.ALREADY_RUNNING,
        exit_codes.STATE_CORRUPTED,
        exit_codes.AUDIT_CORRUPTED,
        exit_codes.CLOCK_SKEW,
        exit_codes.STORAGE,
    }
    assert s["Restart"] == "on-failure"
    assert int(s["WatchdogSec"]) >= 2 * 60 + 5  # default interval 60 s + budget 5 s


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's vigil script.
    vigil = Path(sys.executable).parent / "vigil"
    if not vigil.exists():
        pytest.skip(f"no vigil console script next to {sys.executable}")
    unit = tmp_path / "vigil.service"
    unit.write_text(UNIT.read_text().replace(EXEC, str(vigil)))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    # Unknown keys and bad values are only warnings to systemd: any line about the unit fails.
    assert "vigil.service" not in text, text


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed here"
)
def test_sysusers_snippet_parses() -> None:
    out = subprocess.run(
        ["systemd-sysusers", "--dry-run", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Unknown" not in out.stderr and "ignoring" not in out.stderr, out.stderr
