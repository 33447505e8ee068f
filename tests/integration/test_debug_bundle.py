"""`vigil debug-bundle` against the real daemon: every section present, and not one canary
secret from the environment anywhere in the archive."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.integration.conftest import Workspace, wait_for

CANARIES = {
    "VIGIL_API_KEY": "CANARYKEY0123456789abcdef",
    "VIGIL_API_SECRET": "CANARYSECRETzyxwvutsrq98765",
    "VIGIL_API_PASSWORD": "CANARYPASSPHRASE4242",
    "VIGIL_ALERT_URLS": "json://127.0.0.1:1/hook/CANARYALERTTOKEN77777",
    "VIGIL_ALERT_URLS_ESCALATE": "json://127.0.0.1:1/CANARYESCALATETOKEN8888",
    "VIGIL_EXCHANGE__BASE_URL": "http://canaryuser:CANARYBASEPASS999@127.0.0.1:1",
}
NEEDLES = (
    "CANARYKEY0123456789abcdef",
    "CANARYSECRETzyxwvutsrq98765",
    "CANARYPASSPHRASE4242",
    "CANARYALERTTOKEN77777",
    "CANARYESCALATETOKEN8888",
    "canaryuser",
    "CANARYBASEPASS999",
)


DAEMON = (sys.executable, "-m", "runner.cli", "run")
FLAGS = ("--speed", "600", "--log-format", "json")


def archive_texts(path: Path) -> dict[str, str]:
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            f = tar.extractfile(member)
            assert f is not None
            out[member.name.removeprefix("vigil-debug/")] = f.read().decode("utf-8", "replace")
    return out


def test_bundle_from_a_running_daemon_holds_everything_and_no_canary(
    ws: Workspace, tmp_path: Path
) -> None:
    log_file = tmp_path / "daemon.log"
    with log_file.open("a") as err:  # the daemon's stderr redirected to a file, as in a container
        proc = subprocess.Popen(
            [*DAEMON, "--config", str(ws.config), "--replay", str(ws.candles), *FLAGS],
            cwd=ws.root,
            env={**ws.env, **CANARIES},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        assert wait_for(lambda: len(_records(ws)) > 20, 60)
        (ws.data / "KILL_SWITCH").write_text("drill: bundle\n")
        assert wait_for(lambda: any(r["kind"] == "kill_switch" for r in _records(ws)), 20)
        # A leak that somehow reached a log line must still not reach the bundle.
        with log_file.open("a") as f:
            f.write(f"leaked {CANARIES['VIGIL_API_SECRET']} and {CANARIES['VIGIL_ALERT_URLS']}\n")
        out = tmp_path / "bundle.tar.gz"
        done = ws.vigil(
            "debug-bundle", "--replay", "--out", str(out), "--log-file", str(log_file), env=CANARIES
        )
        assert done.returncode == 0, done.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    files = archive_texts(out)
    assert set(files) == {
        "README.txt",
        "config.json",
        "versions.json",
        "health.json",
        "metrics.txt",
        "audit_tail.jsonl",
        "integrity.txt",
        "state.json",
        "log_tail.txt",
    }
    for name, text in files.items():
        for needle in NEEDLES:
            assert needle not in text, f"{needle} found in {name}"
    config = json.loads(files["config.json"])
    assert len(config["config_hash"]) == 16
    assert config["config"]["exchange"]["base_url"].startswith("http://***@")
    versions = json.loads(files["versions.json"])
    assert {"vigil", "python", "ccxt", "platform"} <= set(versions)
    assert json.loads(files["health.json"])["status"]
    assert "vigil_cycles_total" in files["metrics.txt"]
    tail = [json.loads(line) for line in files["audit_tail.jsonl"].splitlines()]
    assert 0 < len(tail) <= 200 and any(r["kind"] == "kill_switch" for r in tail)
    assert "audit log OK" in files["integrity.txt"]
    assert "quick_check: ok" in files["integrity.txt"]
    state = json.loads(files["state.json"])
    assert {"positions", "open_orders", "breakers", "kill_switch_latched"} <= set(state)
    logs = files["log_tail.txt"].splitlines()
    assert "leaked *** and ***" in logs
    # --log-format json: every line the daemon wrote is one JSON object
    daemon_lines = [json.loads(line) for line in logs if line != "leaked *** and ***"]
    assert daemon_lines and all({"ts", "level", "logger", "msg"} <= set(d) for d in daemon_lines)


def test_bundle_without_a_daemon_says_not_running(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    done = ws.vigil(
        "debug-bundle", "--replay", "--out", str(out), "--log-file", str(tmp_path / "none")
    )
    assert done.returncode == 0, done.stderr
    files = archive_texts(out)
    assert files["health.json"].startswith("not running")
    assert "log file unreadable" in files["README.txt"]
    again = ws.vigil("debug-bundle", "--replay", "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr


def _records(ws: Workspace) -> list[dict[str, object]]:
    try:
        return ws.records()
    except (json.JSONDecodeError, FileNotFoundError):
        return []
