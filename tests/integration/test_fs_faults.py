"""Filesystem faults and signals (issue 12, section 5), tried from outside: the real `vigil`
CLI and daemon (`run --replay`) in a temporary directory.

The tests run as root here, where chmod does not stop reads or writes. Read-only files,
directories and a full disk are made with a small tmpfs (and read-only bind mounts); where
mounting is not allowed those cases skip and say why. A directory or a dangling symlink where
a file belongs needs no privilege.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import exit_codes
from tests.integration.conftest import Workspace, wait_for

pytestmark = pytest.mark.integration

FAST = ("--speed", "1000000000")


def _sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def _can_mount(probe: Path) -> str:
    """'' when tmpfs and bind mounts work here, else why not."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs (read-only and full-disk cases)"
    probe.mkdir(parents=True, exist_ok=True)
    res = _sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    if res.returncode != 0:
        return f"cannot mount a tmpfs here: {res.stderr.strip()}"
    _sh("umount", str(probe))
    return ""


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[tuple[Path, list[Path]]]:
    """A mountable spot and a list of mounts to undo (last first) after the test."""
    why = _can_mount(tmp_path / "probe")
    if why:
        pytest.skip(why)
    mounts: list[Path] = []
    yield tmp_path / "fs", mounts
    for m in reversed(mounts):
        _sh("umount", "-l", str(m))


def mount_tmpfs(where: Path, mounts: list[Path], size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    res = _sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    assert res.returncode == 0, res.stderr
    mounts.append(where)


def read_only(path: Path, mounts: list[Path]) -> None:
    """Make one file or directory read-only with a read-only bind mount over itself."""
    assert _sh("mount", "--bind", str(path), str(path)).returncode == 0
    mounts.append(path)
    res = _sh("mount", "-o", "remount,ro,bind", str(path))
    assert res.returncode == 0, res.stderr


def plain_failure(res: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    for w in words:
        assert w in res.stderr, res.stderr[-2000:]


def run(ws: Workspace, *extra: str) -> subprocess.CompletedProcess[str]:
    return ws.vigil("run", "--replay", str(ws.candles), *FAST, *extra, timeout=180)


def no_strays(data: Path) -> None:
    strays = [p.name for p in data.rglob("*") if p.name.endswith(".tmp") or p.name == "vigil.pid"]
    assert strays == [], strays


# --------------------------------------------------------------------------- no privilege


@pytest.mark.parametrize("how", ["directory", "dangling symlink"])
def test_state_db_of_the_wrong_kind_is_one_plain_line(ws: Workspace, how: str) -> None:
    ws.data.mkdir(parents=True)
    if how == "directory":
        ws.state_db.mkdir()
    else:
        ws.state_db.symlink_to(ws.data.parent / "nowhere" / "state.db")
    res = run(ws)
    plain_failure(res, exit_codes.STORAGE, "storage error", str(ws.state_db))
    assert ws.state_db.is_symlink() or ws.state_db.is_dir()  # left exactly as it was
    assert not (ws.data.parent / "nowhere").exists()
    no_strays(ws.data)
    st = ws.vigil("status", "--replay")
    assert st.returncode in (exit_codes.NOT_RUNNING, exit_codes.STORAGE)
    assert "Traceback" not in st.stderr


@pytest.mark.parametrize("how", ["directory", "dangling symlink"])
def test_config_file_of_the_wrong_kind_is_a_config_error(ws: Workspace, how: str) -> None:
    policy = ws.config / "policy.yaml"
    policy.unlink()
    if how == "directory":
        policy.mkdir()
    else:
        policy.symlink_to(ws.data.parent / "nowhere.yaml")
    for cmd in (("run", "--replay", str(ws.candles), *FAST), ("status",), ("config", "check")):
        res = ws.vigil(*cmd)
        plain_failure(res, exit_codes.CONFIG, "policy.yaml")  # never run on the defaults
    not_a_dir = ws.config.parent / "config-file"
    not_a_dir.write_text("mode: LIVE\n")
    res = subprocess.run(
        [sys.executable, "-m", "runner.cli", "status", "--config", str(not_a_dir)],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    plain_failure(res, exit_codes.CONFIG, "not a directory")


# --------------------------------------------------------------------------- mounts


def test_read_only_state_db_is_refused_before_trading(
    ws: Workspace, tmpfs: tuple[Path, list[Path]]
) -> None:
    fs, mounts = tmpfs
    mount_tmpfs(fs, mounts, "20m")
    ws.env["VIGIL_PATHS__DATA_DIR"] = str(fs / "data")
    ws.data = fs / "data" / "replay"
    assert run(ws, "--max-cycles", "20").returncode == 0
    before = len(ws.records())
    read_only(ws.state_db, mounts)
    res = run(ws, "--max-cycles", "5")
    plain_failure(res, exit_codes.STORAGE, "readonly database")
    assert len(ws.records()) == before  # refused at open: no cycle ran on unsaved state
    no_strays(ws.data)
    st = ws.vigil("status", "--replay", "--json")  # still readable
    assert st.returncode == exit_codes.NOT_RUNNING, st.stderr
    assert json.loads(st.stdout)["last_cycle_ms"], st.stdout


@pytest.mark.parametrize("what", ["data dir", "audit dir", "audit file"])
def test_read_only_data_or_audit_is_one_plain_line(
    ws: Workspace, tmpfs: tuple[Path, list[Path]], what: str
) -> None:
    fs, mounts = tmpfs
    mount_tmpfs(fs, mounts, "20m")
    ws.env["VIGIL_PATHS__DATA_DIR"] = str(fs / "data")
    ws.data = fs / "data" / "replay"
    assert run(ws, "--max-cycles", "20").returncode == 0
    target = {
        "data dir": fs,
        "audit dir": ws.audit_dir,
        "audit file": sorted(ws.audit_dir.glob("audit-*.jsonl"))[-1],
    }[what]
    if what == "data dir":
        assert _sh("mount", "-o", "remount,ro", str(fs)).returncode == 0
    else:
        read_only(target, mounts)
    res = run(ws, "--max-cycles", "5")
    plain_failure(res, exit_codes.STORAGE, "storage error", "read-only")
    st = ws.vigil("status", "--replay", "--json")
    assert st.returncode == exit_codes.NOT_RUNNING, st.stderr  # read-only commands still work
    assert json.loads(st.stdout)["last_cycle_ms"], st.stdout
    if what == "data dir":
        kill = ws.vigil("kill", "--replay")
        plain_failure(kill, exit_codes.STORAGE, "read-only")
        assert _sh("mount", "-o", "remount,rw", str(fs)).returncode == 0
    no_strays(ws.data)
    assert ws.vigil("audit", "verify", "--replay").returncode == 0


def test_disk_full_mid_run_is_one_plain_line_and_nothing_stray(
    ws: Workspace, tmpfs: tuple[Path, list[Path]]
) -> None:
    fs, mounts = tmpfs
    mount_tmpfs(fs, mounts, "400k")
    ws.env["VIGIL_PATHS__DATA_DIR"] = str(fs / "data")
    ws.data = fs / "data" / "replay"
    res = run(ws)
    plain_failure(res, exit_codes.STORAGE, "storage error")
    assert "full" in res.stderr or "No space" in res.stderr
    no_strays(ws.data)
    assert not (ws.audit_dir / "HEAD.tmp").exists()
    # Nothing forged or torn: the records that made it verify.
    assert ws.vigil("audit", "verify", "--replay").returncode == 0
    # A restart on the still-full disk says so again, plainly.
    again = run(ws, "--max-cycles", "5")
    plain_failure(again, exit_codes.STORAGE, "storage error")


def test_state_db_full_but_audit_writable_still_gets_a_shutdown_record(
    ws: Workspace, tmpfs: tuple[Path, list[Path]]
) -> None:
    fs, mounts = tmpfs
    mount_tmpfs(fs, mounts, "300k")
    # A replay keeps its files in <data_dir>/replay whatever paths.state_db says, so the
    # state goes to the small disk through a symlink (SQLite follows it, its -wal goes along);
    # the audit log stays on the big disk.
    (fs / "state.db").touch()
    ws.data.mkdir(parents=True)
    ws.state_db.symlink_to(fs / "state.db")
    res = run(ws)
    plain_failure(res, exit_codes.STORAGE, "storage error", "full")
    last = ws.records()[-1]
    assert last["kind"] == "shutdown", last
    assert last["data"]["state_saved"] is False
    assert ws.vigil("audit", "verify", "--replay").returncode == 0


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGTERM])
def test_stop_signals_shut_down_cleanly(ws: Workspace, sig: signal.Signals) -> None:
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "3000")
    try:
        assert wait_for(lambda: any(r["kind"] == "cycle" for r in _safe(ws)), 60)
        proc.send_signal(sig)
        time.sleep(0.02)
        # A second (and third) signal during the shutdown changes nothing.
        for again in (signal.SIGINT, signal.SIGTERM):
            if proc.poll() is None:
                proc.send_signal(again)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert f"{sig.name} received" in err
    assert ws.records()[-1]["kind"] == "shutdown"
    no_strays(ws.data)
    assert not list(ws.data.rglob("*.lock"))  # every lock released and removed
    assert ws.vigil("audit", "verify", "--replay").returncode == 0


def _safe(ws: Workspace) -> list[dict[str, object]]:
    try:
        return ws.records()
    except (ValueError, FileNotFoundError):
        return []
