"""Where the writer resumes an existing audit chain, and whether it may.

At open(), `AuditLog` (infra/audit.py) verifies the chain (infra/audit_startup.py), finds the
newest complete record (`find_tip`), notes a line a crash tore after it (set aside by
infra/audit_recovery.py), and checks that HEAD agrees with that record (`check_head`). Anything
else refuses to extend the chain with one AuditCorrupted naming the directory and the way out.
docs/audit.md, "Starting up on an existing log", describes the policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.errors import AuditCorrupted
from infra.audit_format import (
    GENESIS_HASH,
    find_hash,
    last_lines,
    parse_line,
    read_head,
    record_hash,
    record_problem,
)
from infra.audit_recovery import Torn
from infra.audit_startup import Verified, check_before_append


@dataclass(frozen=True, slots=True)
class Tip:
    """The newest complete record: its seq, hash and day file ("" for an empty chain)."""

    seq: int
    hash: str
    file: str


# Logged under the writer's name: these are its start-up messages.
logger = logging.getLogger("infra.audit")


def corrupted(directory: Path, what: str) -> AuditCorrupted:
    return AuditCorrupted(
        f"audit log {directory}: {what}. The chain cannot be continued safely; nothing was "
        "appended. Run `vigil audit verify` for the full report; after investigating, move "
        f"the directory aside (for example to {directory}.broken) so that a new chain starts."
    )


def verify_chain(directory: Path, key: bytes | None) -> Verified:
    """Verify the chain since the last verified point; refuse to extend a broken one."""
    result, verified = check_before_append(directory, key)
    if not result.ok:
        raise corrupted(directory, f"the chain fails verification at {result.first_bad}")
    if result.keyed_from is not None and key is None:
        raise AuditCorrupted(
            f"audit log {directory}: the chain is keyed (records carry MACs from seq "
            f"{result.keyed_from}) but VIGIL_AUDIT_KEY is not set; set it to the key the "
            "log was written with (unkeyed records would break the chain's rule), or move "
            "the directory aside to start a new chain"
        )
    if key is not None and result.last_seq and result.keyed_from is None:
        logger.warning(
            "audit log %s: records 1..%d carry no MAC (written before VIGIL_AUDIT_KEY was "
            "set); records from seq %d on are keyed",
            directory,
            result.last_seq,
            result.last_seq + 1,
        )
    return verified


def find_tip(directory: Path, files: list[Path]) -> tuple[Tip, Torn | None]:
    """The newest complete record, and the torn tail of the newest file if there is one."""
    torn: Torn | None = None
    for index, path in enumerate(reversed(files)):
        size = path.stat().st_size
        if size == 0:
            continue
        lines = last_lines(path, size)
        offset, raw, complete = lines[-1]
        rec = parse_line(raw)[0] if complete else None
        if rec is None:
            if index > 0 or torn is not None:
                raise corrupted(directory, f"the last line of {path.name} is not a complete record")
            # A crash during the final write: set aside, never silently kept or dropped.
            torn = Torn(path=path, keep_bytes=offset, drop_bytes=size - offset)
            if len(lines) == 1:
                continue
            rec = parse_line(lines[-2][1])[0]
            if rec is None:
                raise corrupted(
                    directory,
                    f"the last two lines of {path.name} are unreadable, which a crash "
                    "cannot explain",
                )
        problem = record_problem(rec)
        if problem is None and record_hash(rec) != rec["hash"]:
            problem = "hash mismatch"
        if problem is not None:
            raise corrupted(
                directory, f"the last record in {path.name} fails its check ({problem})"
            )
        return Tip(seq=rec["seq"], hash=rec["hash"], file=path.name), torn
    return Tip(seq=0, hash=GENESIS_HASH, file=""), torn


def check_head(directory: Path, tip: Tip) -> tuple[bool, tuple[int, str] | None]:
    """HEAD may lag the log (records after the last flush), never lead or disagree with it.

    Returns whether HEAD carries a MAC, and (seq, hash) when HEAD already anchors the tip
    (None when it lags, or is absent from a new chain)."""
    try:
        head = read_head(directory)
    except ValueError as exc:
        raise corrupted(directory, str(exc)) from None
    if head is None:
        if tip.seq:
            raise corrupted(
                directory, f"the HEAD anchor is missing but records exist (seq {tip.seq})"
            )
        return False, None
    if head.seq > tip.seq:
        raise corrupted(
            directory, f"truncated: HEAD records seq {head.seq} but the log ends at seq {tip.seq}"
        )
    if head.seq == tip.seq:
        found: tuple[str, str] | None = (tip.hash, tip.file)
    elif head.seq == 0:
        found = (GENESIS_HASH, "")
    else:
        found = find_hash(directory / head.file, head.seq)
    if found is None:
        raise corrupted(directory, f"HEAD names seq {head.seq} in {head.file}, which lacks it")
    if found[0] != head.hash or found[1] != head.file:
        raise corrupted(directory, f"HEAD hash differs from record seq {head.seq}")
    anchored = (head.seq, head.hash) if head.seq == tip.seq else None
    return head.mac is not None, anchored
