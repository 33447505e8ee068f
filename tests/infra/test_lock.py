import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clock import SimClock
from core.errors import AlreadyRunning
from infra.lock import InstanceLock, pid_alive

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
from pathlib import Path
from infra.lock import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
if sys.stdin.readline().strip() == "release":
    lock.release()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A real second process holding the lock until we write to its stdin."""
    path = tmp_path / "vigil.lock"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    yield proc, path
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_acquire_writes_pid_and_start_and_release_removes(tmp_path: Path) -> None:
    path = tmp_path / "data" / "vigil.lock"
    lock = InstanceLock(path, clock=SimClock(1_700_000_000_000))
    lock.acquire()
    assert lock.held
    record = json.loads(path.read_text())
    assert record == {
        "pid": os.getpid(),
        "started_ms": 1_700_000_000_000,
        "started": "2023-11-14T22:13:20+00:00",
    }
    lock.release()
    assert not lock.held
    assert not path.exists()
    lock.release()  # releasing twice is harmless


def test_context_manager_and_reacquire(tmp_path: Path) -> None:
    path = tmp_path / "vigil.lock"
    with InstanceLock(path) as lock:
        assert path.exists() and lock.held
    assert not path.exists()
    with InstanceLock(path):
        assert path.exists()
    assert not path.exists()


def test_same_object_cannot_acquire_twice(tmp_path: Path) -> None:
    with InstanceLock(tmp_path / "vigil.lock") as lock, pytest.raises(RuntimeError):
        lock.acquire()


def test_second_lock_in_same_process_is_refused(tmp_path: Path) -> None:
    # flock belongs to the open file description: a second open() conflicts even in-process.
    path = tmp_path / "vigil.lock"
    with InstanceLock(path):
        other = InstanceLock(path)
        with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}, started"):
            other.acquire()
        assert not other.held
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_lock_held_by_another_process_is_refused_with_its_pid(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, path = holder
    with pytest.raises(AlreadyRunning) as err:
        InstanceLock(path).acquire()
    message = str(err.value)
    assert f"pid {proc.pid}" in message
    assert "stop it first or use another data dir" in message
    # The refused attempt left the holder's record intact.
    assert json.loads(path.read_text())["pid"] == proc.pid

    assert proc.stdin is not None
    proc.stdin.write("release\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 0
    assert not path.exists()
    with InstanceLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_lock_of_killed_process_is_taken_over(
    holder: tuple[subprocess.Popen[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    proc, path = holder
    proc.kill()  # SIGKILL: no cleanup; the file stays, the kernel drops the flock
    proc.wait()
    assert json.loads(path.read_text())["pid"] == proc.pid
    with caplog.at_level(logging.WARNING, logger="infra.lock"), InstanceLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"left by pid {proc.pid} (process gone" in caplog.text


def test_stale_file_with_dead_pid_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "vigil.lock"
    pid = dead_pid()
    path.write_text(json.dumps({"pid": pid, "started": "2024-01-01T00:00:00+00:00"}))
    with caplog.at_level(logging.WARNING, logger="infra.lock"):
        with InstanceLock(path):
            assert json.loads(path.read_text())["pid"] == os.getpid()
        assert not path.exists()
    assert f"stale instance lock {path} left by pid {pid} (process gone" in caplog.text


def test_stale_file_with_reused_pid_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The pid is alive (pid 1 always is) but nobody holds the flock: a reused pid.
    path = tmp_path / "vigil.lock"
    path.write_text(json.dumps({"pid": 1}))
    with caplog.at_level(logging.WARNING, logger="infra.lock"), InstanceLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "left by pid 1 (pid now reused by another process" in caplog.text


def test_corrupt_stale_file_is_copied_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "vigil.lock"
    path.write_bytes(b"\x00garbage{")
    with (
        caplog.at_level(logging.WARNING, logger="infra.lock"),
        InstanceLock(path, clock=SimClock(42)),
    ):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    aside = tmp_path / "vigil.lock.corrupt-42"
    assert aside.read_bytes() == b"\x00garbage{"
    assert "unreadable contents; copied to" in caplog.text


def test_empty_stale_file_is_taken_over_silently(tmp_path: Path) -> None:
    path = tmp_path / "vigil.lock"
    path.touch()
    with InstanceLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []


def test_release_leaves_a_replaced_file_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "vigil.lock"
    lock = InstanceLock(path)
    lock.acquire()
    path.unlink()
    path.write_text('{"pid": 1}')  # someone else's file now lives at the path
    with caplog.at_level(logging.WARNING, logger="infra.lock"):
        lock.release()
    assert path.read_text() == '{"pid": 1}'
    assert "was replaced while we held it" in caplog.text


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())
    assert not pid_alive(0)
    assert not pid_alive(-5)
