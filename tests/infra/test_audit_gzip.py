"""Compressed old day files in the writer's start-up check: the VERIFIED shortcut accepts a
day compressed since (its decompressed bytes unchanged) and refuses one edited meanwhile."""

from __future__ import annotations

import gzip
from pathlib import Path

from infra.audit_format import log_files
from infra.audit_startup import _start_point, check_before_append, read_verified, write_verified
from tests.infra.test_audit import build_chain


def compress(path: Path, data: bytes | None = None) -> None:
    raw = path.read_bytes() if data is None else data
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    path.unlink()


def test_the_verified_shortcut_accepts_compressed_days_and_refuses_edited_ones(
    tmp_path: Path,
) -> None:
    build_chain(tmp_path, days=3)
    _, verified = check_before_append(tmp_path, None)  # what the next start writes
    write_verified(tmp_path, verified, None, fsync=False)
    prior = read_verified(tmp_path, None)
    assert prior is not None and len(prior.files) == 3
    first = log_files(tmp_path)[0]
    original = first.read_bytes()
    compress(first)
    files = log_files(tmp_path)
    assert [f.name.endswith(".gz") for f in files] == [True, False, False]
    assert _start_point(prior, files) is not None  # no full walk needed
    result, state = check_before_append(tmp_path, None)
    assert result.ok and state.seq == prior.seq
    write_verified(tmp_path, state, None, fsync=False)
    again = read_verified(tmp_path, None)
    assert again is not None and _start_point(again, log_files(tmp_path)) is not None

    gz = log_files(tmp_path)[0]
    gz.unlink()
    first.write_bytes(original.replace(b'"i":1', b'"i":7'))
    compress(first)
    assert _start_point(again, log_files(tmp_path)) is None  # edited: the full walk decides
    assert not check_before_append(tmp_path, None)[0].ok
