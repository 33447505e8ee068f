"""StateStore.open_readonly: commands that only look never create, migrate or write."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from infra.state_schema import APPLICATION_ID
from infra.state_store import NotAStateDatabase, StateQuarantined, StateStore, StateUnavailable


def ro(tmp_path: Path) -> StateStore:
    return StateStore.open_readonly(tmp_path / "state.db", quarantine_dir=tmp_path / "q")


def test_missing_or_empty_file_is_refused_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable, match="does not exist"):
        ro(tmp_path)
    assert not (tmp_path / "state.db").exists()
    (tmp_path / "state.db").write_bytes(b"")
    with pytest.raises(StateUnavailable, match="empty"):
        ro(tmp_path)
    assert (tmp_path / "state.db").read_bytes() == b""


def test_reads_a_sound_file_and_refuses_writes(tmp_path: Path) -> None:
    db = StateStore.open(tmp_path / "state.db", quarantine_dir=tmp_path / "q")
    with db, db.transaction():
        db.set_kill_switch(True, "drill")
    before = (tmp_path / "state.db").read_bytes()
    with ro(tmp_path) as db:
        assert db.kill_switch() == (True, "drill")
        with pytest.raises(sqlite3.OperationalError, match="readonly"), db.transaction():
            db.set_kill_switch(False, "")
    assert (tmp_path / "state.db").read_bytes() == before


def test_older_schema_is_not_migrated(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # vigil's, schema version 0
    conn.close()
    before = (tmp_path / "state.db").read_bytes()
    with pytest.raises(StateUnavailable, match="does not migrate"):
        ro(tmp_path)
    assert (tmp_path / "state.db").read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("CREATE TABLE x (a)")
    conn.close()
    with pytest.raises(NotAStateDatabase):
        ro(tmp_path)


def test_damaged_file_is_quarantined_once_however_often_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"not a database at all\n" * 300)
    dirs = set()
    for _ in range(3):
        with pytest.raises(StateQuarantined) as info:
            ro(tmp_path)
        dirs.add(info.value.copy_dir)
    assert len(dirs) == 1 and len(list((tmp_path / "q").iterdir())) == 1
