"""`vigil status` shows the API key's age (issue 15, section 3): the daemon's own facts on
GET /status, from the VIGIL_API_KEY_ISSUED it was started with (the status command's own
environment has none), against checks.api_key_max_age_days."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import Workspace, wait_for

pytestmark = pytest.mark.integration


def test_status_shows_the_key_age_and_rotation_deadline_of_the_daemon(ws: Workspace) -> None:
    today = datetime.now(UTC).date()
    issued = today - timedelta(days=41)
    ws.env["VIGIL_CHECKS__API_KEY_MAX_AGE_DAYS"] = "60"
    env = {"VIGIL_API_KEY_ISSUED": issued.isoformat()}
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "300", env=env)
    try:
        assert wait_for(lambda: (ws.data / "health" / "http_port").exists(), 60)
        status = ws.vigil("status", "--replay", "--json")
        human = ws.vigil("status", "--replay")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert status.returncode == 0, status.stdout + status.stderr
    key = json.loads(status.stdout)["api_key"]
    deadline = (issued + timedelta(days=60)).isoformat()
    assert key == {
        "issued": issued.isoformat(),
        "age_days": 41,
        "max_age_days": 60,
        "rotate_by": deadline,
        "overdue": False,
    }
    assert human.returncode == 0
    assert f"api key age        41 days (rotate by {deadline})" in human.stdout.splitlines()


def test_status_without_an_issue_date_has_no_key_line(ws: Workspace) -> None:
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "300")
    try:
        assert wait_for(lambda: (ws.data / "health" / "http_port").exists(), 60)
        status = ws.vigil("status", "--replay", "--json")
        human = ws.vigil("status", "--replay")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["api_key"] is None
    assert "api key age" not in human.stdout
