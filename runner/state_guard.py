"""Before state.db is opened for writing: who else holds it, and whether it was lost.

One database, one daemon: besides the lock file in data_dir, a writer locks a file beside the
state database and one in the audit directory, so two daemons (or a daemon and `vigil state
rebuild`) with different data_dirs but the same state_db or audit_dir cannot both run.

A missing or 0-byte state.db next to an audit log, an audit HEAD or a quarantine folder means
vigil lived here before and its memory is gone: the daemon refuses to start (StateMissing,
exit 4) until the operator rebuilds the state from the audit log (`vigil state rebuild`) or
starts afresh on purpose (`vigil run --fresh-state`, recorded in the audit log).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from core.errors import ConfigError
from infra.audit_format import HEAD_NAME, QUARANTINE_DIR, log_files
from infra.lock import InstanceLock
from infra.runtime_paths import ResolvedPaths
from infra.state_file import SIBLING_SUFFIXES, StateMissing, StateUnavailable, quarantine

AUDIT_LOCK_NAME = "vigil.lock"


def state_lock_path(state_db: Path) -> Path:
    return state_db.with_name(state_db.name + ".lock")


@contextlib.contextmanager
def writer_locks(paths: ResolvedPaths) -> Iterator[None]:
    """Hold the data_dir lock, the state database's lock and the audit directory's lock."""
    wanted: list[Path] = []
    for p in (
        paths.lock_file,
        state_lock_path(paths.state_db),
        paths.audit_dir / AUDIT_LOCK_NAME,
    ):
        if p.absolute() not in [w.absolute() for w in wanted]:
            wanted.append(p)
    held: list[InstanceLock] = []
    try:
        for p in wanted:
            lock = InstanceLock(p)
            lock.acquire()
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def state_absent(path: Path) -> bool:
    """No state in `path`: missing, or a 0-byte file (SQLite would treat it as new)."""
    if path.is_symlink() and not path.exists():
        raise StateUnavailable(
            f"state path {path} is a symlink to {path.readlink()}, which does not exist; "
            "restore the target or fix paths.state_db"
        )
    if not path.exists():
        return True
    if not path.is_file():
        raise StateUnavailable(
            f"state path {path} exists but is not a file (a directory?); fix paths.state_db"
        )
    return path.stat().st_size == 0


def prior_life(paths: ResolvedPaths) -> list[str]:
    """What shows that a vigil has run with these paths before."""
    found: list[str] = []
    days = log_files(paths.audit_dir)
    if days:
        found.append(f"audit log {paths.audit_dir} ({len(days)} day file(s))")
    if (paths.audit_dir / HEAD_NAME).exists():
        found.append(f"audit anchor {paths.audit_dir / HEAD_NAME}")
    for q in (paths.quarantine_dir, paths.audit_dir / QUARANTINE_DIR):
        if q.is_dir() and any(q.iterdir()):
            found.append(f"quarantine folder {q}")
    for suffix in SIBLING_SUFFIXES:
        sib = paths.state_db.with_name(paths.state_db.name + suffix)
        if sib.exists():
            found.append(f"leftover {sib}")
    return found


def set_aside_leftovers(state_db: Path, quarantine_dir: Path) -> Path | None:
    """Copy an empty state.db's -wal/-shm/-journal siblings into quarantine, then remove
    them: SQLite would otherwise apply a stale WAL to the new database."""
    sibs = [state_db.with_name(state_db.name + s) for s in SIBLING_SUFFIXES]
    if not any(s.exists() for s in sibs):
        return None
    if state_db.exists():
        dest = quarantine(state_db, quarantine_dir, clock=None)
    else:
        dest = quarantine_dir / f"{state_db.stem}-leftovers"
        dest.mkdir(parents=True, exist_ok=True)
        for s in sibs:
            if s.exists():
                shutil.copy2(s, dest / s.name)
    for s in sibs:
        s.unlink(missing_ok=True)
    return dest


def missing_message(paths: ResolvedPaths, found: list[str]) -> str:
    what = "is empty (0 bytes)" if paths.state_db.exists() else "is missing"
    return (
        f"state database {paths.state_db} {what}, but vigil has run here before: "
        f"{'; '.join(found)}. Starting afresh would forget positions, cost basis, PnL, open "
        "orders, the kill latch and the breakers. Either rebuild the state from the audit "
        "log with `vigil state rebuild` (it shows what it rebuilt and checks it against the "
        "venue), or start with empty state on purpose with `vigil run --fresh-state` "
        "(recorded in the audit log)."
    )


def check_start(paths: ResolvedPaths, *, fresh: bool) -> list[str] | None:
    """Run before the daemon opens state.db. Returns what was found when the operator starts
    afresh on purpose (for the audit record), None for an ordinary start."""
    absent = state_absent(paths.state_db)
    if fresh and not absent:
        raise ConfigError(
            f"--fresh-state: {paths.state_db} holds state; vigil will not discard it. Move it "
            "(and its -wal/-shm files) aside first if you really mean to start afresh."
        )
    if not absent:
        return None
    found = prior_life(paths)
    if found and not fresh:
        raise StateMissing(missing_message(paths, found))
    if fresh:
        set_aside_leftovers(paths.state_db, paths.quarantine_dir)
        return found
    return None
