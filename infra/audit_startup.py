"""The writer's start-up check: the chain is verified before it is extended.

`VERIFIED` (beside HEAD) describes the chain as it was verified at the last open: the tip's seq
and hash, and for each day file its size, SHA-256 and line count. At the next open the bytes it
covers are compared by digest (fast: no JSON is parsed), and only the records written since are
walked record by record. When the files no longer match it, the whole chain is walked and the
old tip must still be in it (a checkpoint), so the first bad record is named and a cut-off tail
cannot pass. With VIGIL_AUDIT_KEY set, VERIFIED carries a MAC like HEAD does. docs/audit.md
says what this detects and what it cannot.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from infra.audit_format import (
    HEX64_RE,
    MAC_FIELD,
    Checkpoint,
    anchor_mac,
    canonical_json,
    file_day_ms,
    is_compressed,
    log_files,
    macs_equal,
    open_day,
    plain_name,
)
from infra.audit_verify import BadRecord, FileDigest, StartPoint, VerifyResult, verify

VERIFIED_NAME: Final = "VERIFIED"
_BLOCK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Verified:
    """What VERIFIED holds: the verified tip and the day files up to it."""

    seq: int
    hash: str
    keyed_from: int | None
    files: tuple[FileDigest, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "keyed_from": self.keyed_from,
            "files": [[f.name, f.size, f.sha256, f.lines] for f in self.files],
        }


def check_before_append(directory: Path, key: bytes | None) -> tuple[VerifyResult, Verified]:
    """Verify the chain for the writer; the result names the first bad record, if any, and
    Verified is what to write to VERIFIED once the chain is accepted."""
    try:
        prior = read_verified(directory, key)
    except ValueError as exc:
        bad = BadRecord(VERIFIED_NAME, 0, None, 1, f"{VERIFIED_NAME} unreadable: {exc}")
        empty = Verified(0, "", None, ())
        return VerifyResult(ok=False, records=0, files=0, first_bad=bad), empty
    files = log_files(directory)
    start = _start_point(prior, files)
    kept: tuple[FileDigest, ...] = ()
    if start is not None:
        assert prior is not None
        result = verify(directory, key=key, start=start, torn_tail_ok=True)
        kept = prior.files[: start.file_index]
    else:
        marks = [Checkpoint(prior.seq, prior.hash)] if prior is not None and prior.seq else []
        result = verify(directory, key=key, checkpoints=marks, torn_tail_ok=True)
    digests = tuple(d for d in (*kept, *result.digests) if d.size)  # emptied torn files go
    state = Verified(result.last_seq, result.last_hash, result.keyed_from, digests)
    return result, state


def advance(directory: Path, key: bytes | None, prior: Verified) -> Verified | VerifyResult:
    """VERIFIED moved to the current tip: the records since `prior` walked, the bytes before it
    compared. The writer calls it with its own records on disk; a VerifyResult (not ok) means
    something else changed the log meanwhile."""
    files = log_files(directory)
    if not prior.files:  # the chain was empty: walk what there is now
        result = verify(directory, key=key)
        kept: tuple[FileDigest, ...] = ()
    else:
        # The writer's own bytes since its last check: sizes suffice for the older files (the
        # next start compares their digests), and the walk re-reads only the newest one.
        start = _start_point(prior, files, digests=False)
        if start is None:
            reason = f"the bytes it covered up to seq {prior.seq} changed under the writer"
            bad = BadRecord(VERIFIED_NAME, 0, None, prior.seq + 1, reason)
            return VerifyResult(ok=False, records=0, files=len(files), first_bad=bad)
        result = verify(directory, key=key, start=start)
        kept = prior.files[: start.file_index]
    if not result.ok:
        return result
    digests = (*kept, *result.digests)
    return Verified(result.last_seq, result.last_hash, result.keyed_from, digests)


def read_verified(directory: Path, key: bytes | None) -> Verified | None:
    """VERIFIED's contents; None when absent, or when a key is set and it has no MAC (written
    before the key was: then the whole chain is walked). ValueError when it is damaged."""
    try:
        raw = (directory / VERIFIED_NAME).read_bytes()
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(raw)
        mac = obj.pop(MAC_FIELD, None) if isinstance(obj, dict) else None
        state = _parse(obj)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a VERIFIED record ({exc})") from None
    if key is None:
        return state
    if mac is None:
        return None
    if not macs_equal(mac, anchor_mac(key, state.as_json())):
        raise ValueError("MAC mismatch: it was rewritten, or VIGIL_AUDIT_KEY differs")
    return state


def write_verified(directory: Path, state: Verified, key: bytes | None, *, fsync: bool) -> None:
    body = state.as_json()
    if key is not None:
        body[MAC_FIELD] = anchor_mac(key, body)
    tmp = directory / (VERIFIED_NAME + ".tmp")
    with open(tmp, "wb") as f:
        f.write(canonical_json(body).encode("utf-8") + b"\n")
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, directory / VERIFIED_NAME)


def _parse(obj: Any) -> Verified:
    if not isinstance(obj, dict) or set(obj) != {"seq", "hash", "keyed_from", "files"}:
        raise ValueError("wrong fields")
    seq, digest, keyed_from = obj["seq"], obj["hash"], obj["keyed_from"]
    if type(seq) is not int or seq < 0 or not isinstance(digest, str):
        raise ValueError("bad seq or hash")
    if keyed_from is not None and type(keyed_from) is not int:
        raise ValueError("bad keyed_from")
    files = []
    for item in obj["files"]:
        name, size, sha, lines = item
        ok = file_day_ms(str(name)) is not None and HEX64_RE.fullmatch(str(sha))
        if not ok or type(size) is not int or type(lines) is not int or size < 0 or lines < 0:
            raise ValueError(f"bad file entry {item!r}")
        files.append(FileDigest(name, size, sha, lines))
    return Verified(seq, digest, keyed_from, tuple(files))


def _start_point(
    prior: Verified | None, files: list[Path], *, digests: bool = True
) -> StartPoint | None:
    """Where to resume walking: after the verified tip, when every byte VERIFIED covers is
    unchanged (only its newest file may have grown since). None means walk everything."""
    if prior is None or not prior.files or len(files) < len(prior.files):
        return None
    last = len(prior.files) - 1
    for index, known in enumerate(prior.files):
        path = files[index]
        if plain_name(path.name) != plain_name(known.name):
            return None
        if is_compressed(path):
            # an older day compressed by the operator: its size on disk says nothing, its
            # decompressed bytes must be exactly those verified (the walk's own file, the
            # newest, is never compressed: the writer refuses that)
            if index == last or (digests and not _same_bytes(path, known)):
                return None
            continue
        size = path.stat().st_size
        if size < known.size or (index < last and size != known.size):
            return None
        if digests and _sha256_prefix(path, known.size) != known.sha256:
            return None
    tip = prior.files[last]
    return StartPoint(last, tip.size, tip.lines, prior.seq, prior.hash, prior.keyed_from)


def _same_bytes(path: Path, known: FileDigest) -> bool:
    """The decompressed file is exactly the bytes `known` describes."""
    try:
        with open_day(path) as f:
            return _sha256_of(f, known.size) == known.sha256 and f.read(1) == b""
    except (OSError, EOFError):
        return False  # damaged: the full walk names it


def _sha256_of(f: IO[bytes], size: int) -> str:
    digest = hashlib.sha256()
    left = size
    while left > 0:
        block = f.read(min(_BLOCK, left))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


def _sha256_prefix(path: Path, size: int) -> str:
    with path.open("rb") as f:
        return _sha256_of(f, size)
