"""Recovery of a torn final line at open(): the file is copied aside, then the line cut off.
docs/audit.md, "Starting up on an existing log", describes the policy.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.audit_format import QUARANTINE_DIR

logger = logging.getLogger("infra.audit")


@dataclass(frozen=True, slots=True)
class Torn:
    """A final line a crash tore: the bytes to keep and to drop."""

    path: Path
    keep_bytes: int
    drop_bytes: int


def quarantine(directory: Path, torn: Torn, last_seq: int, *, fsync: bool) -> dict[str, Any]:
    """Copy the file with a torn final line to quarantine/, then cut the line off (or remove
    the file when nothing else is in it); the data of the `audit_recovered` record."""
    qdir = directory / QUARANTINE_DIR
    qdir.mkdir(exist_ok=True)
    target = qdir / f"{torn.path.name}.{last_seq + 1}.torn"
    copy = 1
    while target.exists():
        target = qdir / f"{torn.path.name}.{last_seq + 1}.{copy}.torn"
        copy += 1
    shutil.copyfile(torn.path, target)
    if fsync:
        fsync_file(target)
        fsync_dir(qdir)
    if torn.keep_bytes:
        os.truncate(torn.path, torn.keep_bytes)
        if fsync:
            fsync_file(torn.path)
    else:  # nothing left: an empty day file would fail verify, so it goes
        torn.path.unlink()
        if fsync:
            fsync_dir(directory)
    relative = f"{QUARANTINE_DIR}/{target.name}"
    logger.warning(
        "audit log %s: cut a torn final line (%d bytes) from %s; the file was copied to %s",
        directory,
        torn.drop_bytes,
        torn.path.name,
        relative,
    )
    return {
        "file": torn.path.name,
        "dropped_bytes": torn.drop_bytes,
        "kept_bytes": torn.keep_bytes,
        "last_good_seq": last_seq,
        "quarantine_copy": relative,
    }


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    # A new or renamed entry survives power loss only once its directory is synced.
    fsync_file(path)
