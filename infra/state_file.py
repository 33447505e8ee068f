"""The state database file: opening, schema migrations, the integrity check and quarantine.

The schema version lives in `PRAGMA user_version`; migration N (1-based, infra/state_schema.py)
takes a database from version N-1 to N inside one transaction, so a failed migration leaves the
file as it was. A corrupted file is copied aside and reported, never repaired or recreated in
place: the operator decides what happens to it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from core.clock import Clock
from core.errors import StateCorrupted, VigilError
from infra.state_schema import APPLICATION_ID, Migration

MEMORY = ":memory:"

# SQLite primary result codes that mean the file itself is damaged or not a database.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

# Siblings SQLite may keep next to the database; all of them are part of its state.
SIBLING_SUFFIXES = ("-wal", "-shm", "-journal")


class StateUnavailable(VigilError):
    """The state database could not be opened for a reason other than corruption."""


class StateVersionTooNew(StateCorrupted):
    """The file was written by a newer vigil whose schema this code does not know."""


class NotAStateDatabase(StateCorrupted):
    """A valid SQLite file, but not one vigil created."""


class StateMissing(StateCorrupted):
    """state.db is missing or empty although vigil has run here before (audit log, HEAD or
    quarantine found): starting afresh would forget positions, PnL and latches silently."""


class StateQuarantined(StateCorrupted):
    """The file failed its integrity check; a copy was made and the original left alone."""

    def __init__(self, message: str, *, path: Path, copy_dir: Path | None) -> None:
        super().__init__(message)
        self.path = path
        self.copy_dir = copy_dir


def is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def readonly_uri(path: Path) -> str:
    """`mode=ro`; on a directory nobody can write (a read-only mount) also `immutable=1`,
    since SQLite cannot create the -shm file a WAL database needs for reading, and nobody can
    change the file there meanwhile."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if not os.access(path.resolve().parent, os.W_OK):
        uri += "&immutable=1"
    return uri


def find_damage(path: Path, migrations: Sequence[Migration]) -> str | None:
    """Run `PRAGMA integrity_check` on an existing file; the finding, or None when it is fine.

    Raises StateVersionTooNew / NotAStateDatabase for a sound file vigil must not touch.
    The checks run on a read-only connection so that nothing (no WAL checkpoint, no journal
    rollback written back) changes the file before it is quarantined or refused.
    """
    uri = readonly_uri(path)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(uri, uri=True)
        rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if rows == ["ok"]:
            check_identity(conn, str(path), migrations)
            return None
    except sqlite3.Error as exc:
        if is_corruption(exc):
            return f"SQLite refused to read it: {exc}"
        raise StateUnavailable(
            f"cannot open state database {path} to check it: {exc}. "
            "Check the file's permissions and that the disk is mounted and not full."
        ) from exc
    finally:
        if conn is not None:
            conn.close()
    shown = "; ".join(rows[:5])
    more = f" (and {len(rows) - 5} more problems)" if len(rows) > 5 else ""
    return f"PRAGMA integrity_check reported: {shown}{more}"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def existing_copy(path: Path, quarantine_dir: Path) -> Path | None:
    """The quarantine folder already holding a byte-identical copy of `path` (and of its
    -wal sibling), so that every command run on the same damaged file does not copy it again."""
    if not quarantine_dir.is_dir():
        return None
    size = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    digest: str | None = None
    for folder in sorted(quarantine_dir.glob(f"{path.stem}-*")):
        copy = folder / path.name
        try:
            if not copy.is_file() or copy.stat().st_size != size:
                continue
            digest = digest or _digest(path)
            if _digest(copy) != digest:
                continue
            copy_wal = folder / wal.name
            if wal.is_file() != copy_wal.is_file():
                continue
            if wal.is_file() and _digest(wal) != _digest(copy_wal):
                continue
        except OSError:
            continue
        return folder
    return None


def quarantine(path: Path, quarantine_dir: Path, *, clock: Clock | None) -> Path:
    """Copy the database and its -wal/-shm/-journal siblings into a fresh, timestamped folder
    (or name the folder that already holds the same bytes)."""
    already = existing_copy(path, quarantine_dir)
    if already is not None:
        return already
    if clock is not None:
        when = datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC)
    else:
        when = datetime.now(tz=UTC)
    base = f"{path.stem}-{when:%Y%m%dT%H%M%SZ}"
    dest = quarantine_dir / base
    n = 1
    while dest.exists():
        n += 1
        dest = quarantine_dir / f"{base}-{n}"
    dest.mkdir(parents=True)
    for src in (path, *(path.with_name(path.name + s) for s in SIBLING_SUFFIXES)):
        if src.exists():
            shutil.copy2(src, dest / src.name)
    return dest


def quarantine_error(
    path: Path, finding: str, quarantine_dir: Path, *, clock: Clock | None
) -> StateQuarantined:
    """Build the error for a damaged file after copying it aside (the copy may fail too)."""
    advice = (
        "To recover: stop vigil, move "
        f"{path} and its -wal/-shm files aside, then either restore a backup (and compare it "
        "with `vigil audit replay`), rebuild the state from the audit log with `vigil state "
        "rebuild`, or start afresh on purpose with `vigil run --fresh-state`."
    )
    try:
        copy_dir: Path | None = quarantine(path, quarantine_dir, clock=clock)
        where = f"A copy (with any -wal/-shm files) is in {copy_dir}."
    except OSError as exc:
        copy_dir = None
        where = f"Copying it to {quarantine_dir} FAILED ({exc}); copy it by hand first."
    return StateQuarantined(
        f"state database {path} is corrupted: {finding}. {where} The original was left "
        f"untouched and vigil will not trade on it. {advice}",
        path=path,
        copy_dir=copy_dir,
    )


def check_identity(conn: sqlite3.Connection, where: str, migrations: Sequence[Migration]) -> int:
    """The file's schema version, after refusing foreign files and newer schemas."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if version > len(migrations):
        raise StateVersionTooNew(
            f"state database {where} has schema version {version}, but this vigil only knows "
            f"versions up to {len(migrations)}: it was written by a newer vigil. Upgrade vigil "
            "(or restore a backup made by this version); the file was not changed."
        )
    if version > 0 and app_id != APPLICATION_ID:
        raise NotAStateDatabase(
            f"{where} is an SQLite database but not a vigil state database "
            f"(application_id {app_id:#x}); point the state path at vigil's state.db."
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise NotAStateDatabase(
                f"{where} already holds {tables} schema objects but no vigil schema version; "
                "it is not vigil's state database. Point the state path at an empty or new file."
            )
    return version


def open_connection(
    path: Path | str,
    *,
    quarantine_dir: Path,
    clock: Clock | None,
    migrations: Sequence[Migration],
    busy_timeout_s: float,
) -> sqlite3.Connection:
    """A migrated connection in autocommit mode (transactions are explicit), after the checks."""
    if str(path) == MEMORY:
        conn = sqlite3.connect(MEMORY, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, check_identity(conn, MEMORY, migrations), migrations)
        return conn

    file = Path(path)
    if file.exists() and not file.is_file():
        raise StateUnavailable(f"state path {file} exists but is not a file; fix the path.")
    if file.exists():
        finding = find_damage(file, migrations)
        if finding is not None:
            raise quarantine_error(file, finding, quarantine_dir, clock=clock)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)

    conn = sqlite3.connect(file, isolation_level=None, timeout=busy_timeout_s)
    try:
        # Identity first: a newer or foreign file must be refused before anything writes to it.
        version = check_identity(conn, str(file), migrations)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateUnavailable(
                f"could not switch {file} to WAL mode (SQLite kept {mode!r}); keep the "
                "state database on a local filesystem, not a network share."
            )
        # NORMAL under WAL: a power cut may lose the last commits but never corrupts the file;
        # reconcile re-reads orders and fills from the exchange at start.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, version, migrations)
        # A file SQLite could only open read-only (read-only file or mount) fails here, at
        # start, rather than at the first commit after orders went out.
        conn.execute(f"PRAGMA user_version = {len(migrations)}")
    except sqlite3.Error as exc:
        conn.close()
        if is_corruption(exc):
            raise quarantine_error(file, str(exc), quarantine_dir, clock=clock) from exc
        raise StateUnavailable(f"cannot open state database {file}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def open_readonly_connection(
    path: Path, *, quarantine_dir: Path, clock: Clock | None, migrations: Sequence[Migration]
) -> sqlite3.Connection:
    """A read-only connection (`mode=ro`) for commands that only look: nothing is created,
    migrated or written. A damaged file is quarantined once and refused, like `open`."""
    if not path.exists():
        raise StateUnavailable(f"state database {path} does not exist")
    if not path.is_file():
        raise StateUnavailable(f"state path {path} exists but is not a file; fix the path.")
    if path.stat().st_size == 0:
        raise StateUnavailable(f"state database {path} is empty (0 bytes)")
    finding = find_damage(path, migrations)
    if finding is not None:
        raise quarantine_error(path, finding, quarantine_dir, clock=clock)
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True, isolation_level=None)
        version = check_identity(conn, str(path), migrations)
    except sqlite3.Error as exc:
        raise StateUnavailable(f"cannot read state database {path}: {exc}") from exc
    if version < len(migrations):
        conn.close()
        raise StateUnavailable(
            f"state database {path} has schema version {version}, older than this vigil's "
            f"{len(migrations)}; a read-only command does not migrate it (`vigil run` does)."
        )
    return conn


def migrate(conn: sqlite3.Connection, version: int, migrations: Sequence[Migration]) -> int:
    """Apply the migrations after `version`, each atomically; returns the new version."""
    for number, step in enumerate(migrations[version:], start=version + 1):
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{step.sql}\n;PRAGMA user_version = {number};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateUnavailable(
                f"schema migration {number} ({step.description}) failed: {exc}. "
                f"The database was left at version {number - 1}."
            ) from exc
    return len(migrations)
