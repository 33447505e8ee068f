"""Single-instance lock: one vigil per data directory.

The lock is an `fcntl.flock` on a file that also records the holder's pid and start time as JSON,
so a second process can say who is in the way. The flock is the authority: the kernel drops it
when the holder dies, however it dies. The recorded pid only makes the message useful, because a
pid can be reused by an unrelated process after a crash.

- flock taken: the lock is ours. A pid left in the file by a dead (or reused) process means the
  previous run ended without cleaning up; we take the file over and log a warning naming it.
- flock refused: a live process holds the file open and locked; `AlreadyRunning` names it.

flock locks belong to the open file description, so a second `InstanceLock` on the same path in
the same process is refused too. Linux only (as is the systemd deployment).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from core.clock import Clock
from core.errors import AlreadyRunning
from infra.clock import LiveClock

logger = logging.getLogger(__name__)

# How often to retry when the file we locked was unlinked by its releasing holder in between
# our open() and flock(); one retry is nearly always enough.
_MAX_OPEN_ATTEMPTS = 5


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (possibly owned by another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> dict[str, object] | None:
    """The JSON record in the lock file, or None when it is empty or unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 4096):
        raw += chunk
        if len(raw) > 65536:
            break
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _holder_pid(holder: dict[str, object] | None) -> int | None:
    pid = holder.get("pid") if holder else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def _describe_start(holder: dict[str, object] | None) -> str:
    started = holder.get("started") if holder else None
    return f"started {started}" if isinstance(started, str) else "start time unknown"


class InstanceLock:
    """`with InstanceLock(data_dir / "vigil.lock"):` ... or `acquire()` / `release()`."""

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        self._path = Path(path)
        self._clock: Clock = clock if clock is not None else LiveClock()
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise `AlreadyRunning` naming the live holder."""
        if self._fd is not None:
            raise RuntimeError(f"instance lock {self._path} is already held by this object")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(_MAX_OPEN_ATTEMPTS):
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    raise self._already_running(fd) from None
                finally:
                    os.close(fd)
            except BaseException:
                os.close(fd)
                raise
            if self._still_linked(fd):
                try:
                    self._take(fd)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
                return
            # The previous holder released (unlinked) the file after our open: our lock is on
            # an orphaned inode that nobody else will ever see. Start over on the new path.
            os.close(fd)
        raise AlreadyRunning(
            f"could not settle the instance lock {self._path}: it keeps being replaced; "
            "another vigil may be starting and stopping in a loop"
        )

    def release(self) -> None:
        """Drop the lock; remove the file only if it is still the one we locked and wrote."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            if self._still_linked(fd) and _holder_pid(_read_holder(fd)) == os.getpid():
                # Unlink while still holding the flock, so nobody can lock the old inode and
                # believe it is the live one.
                with contextlib.suppress(FileNotFoundError):
                    self._path.unlink()
            else:
                logger.warning(
                    "instance lock %s was replaced while we held it; leaving the file alone",
                    self._path,
                )
        finally:
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _still_linked(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self._path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _already_running(self, fd: int) -> AlreadyRunning:
        holder = _read_holder(fd)
        if holder is None:
            # The holder may be between truncate and write; give it a moment once.
            time.sleep(0.1)
            holder = _read_holder(fd)
        pid = _holder_pid(holder)
        started = _describe_start(holder)
        where = f"lock file {self._path}"
        if pid is None:
            return AlreadyRunning(
                f"vigil is already running (pid unknown, {where} is locked but unreadable); "
                "stop it first or use another data dir"
            )
        if not pid_alive(pid):
            # The flock is held, so some process has the file open; the recorded pid is gone,
            # which happens when a child inherited the descriptor. Refusing is the safe side.
            return AlreadyRunning(
                f"{where} is locked by a live process, but its recorded pid {pid} ({started}) "
                "no longer exists; find the holder with `fuser` or `lsof` and stop it first"
            )
        return AlreadyRunning(
            f"vigil is already running (pid {pid}, {started}); "
            "stop it first or use another data dir"
        )

    def _take(self, fd: int) -> None:
        """We hold the flock: report any stale holder, then write our own record."""
        holder = _read_holder(fd)
        size = os.fstat(fd).st_size
        if holder is None and size > 0:
            self._quarantine()
        old_pid = _holder_pid(holder)
        if old_pid is not None and old_pid != os.getpid():
            why = "process gone" if not pid_alive(old_pid) else "pid now reused by another process"
            logger.warning(
                "taking over stale instance lock %s left by pid %d (%s, %s)",
                self._path,
                old_pid,
                why,
                _describe_start(holder),
            )
        now_ms = self._clock.now_ms()
        record = {
            "pid": os.getpid(),
            "started_ms": now_ms,
            "started": datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat(timespec="seconds"),
        }
        payload = (json.dumps(record, sort_keys=True) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, payload)
        os.fsync(fd)

    def _quarantine(self) -> None:
        aside = self._path.with_name(f"{self._path.name}.corrupt-{self._clock.now_ms()}")
        try:
            shutil.copy2(self._path, aside)
        except OSError as exc:
            logger.warning(
                "stale instance lock %s had unreadable contents and could not be copied "
                "aside (%s); replacing it",
                self._path,
                exc,
            )
            return
        logger.warning(
            "stale instance lock %s had unreadable contents; copied to %s and replacing it",
            self._path,
            aside,
        )
