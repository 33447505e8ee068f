"""Reading side of the audit log: `verify`, and the operator's views.

Everything here only reads. `verify` walks the chain and reports the first record that breaks
it; `iter_records`, `tail` and `format_record` are what `vigil audit ...` prints. The record
rules live in infra/audit_format.py; docs/audit.md describes the format and how to read results.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from core.clock import DAY_MS, HOUR_MS
from infra.audit_format import (
    GENESIS_HASH as GENESIS_HASH,
)
from infra.audit_format import (
    HEAD_NAME,
    MAC_FIELD,
    SEQ_PREFIX,
    Checkpoint,
    HeadAnchor,
    anchor_mac,
    file_day_ms,
    find_hash,
    format_ts,
    log_files,
    macs_equal,
    open_day,
    parse_line,
    plain_name,
    read_head,
    record_hash,
    record_mac,
    record_problem,
)
from infra.audit_format import (
    canonical_json as canonical_json,
)

# A day file may be named for tomorrow while the writer's clock runs a little ahead of ours;
# anything further ahead did not come from a clock vigil would run with.
FUTURE_SLACK_MS: Final = HOUR_MS


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class BadRecord:
    """Where the chain first breaks. `line` is 1-based (0 for a whole file or HEAD itself)."""

    file: str
    line: int
    seq: int | None  # the seq found on that line; None when it cannot be read
    expected_seq: int  # the seq the chain needed at that position
    reason: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        found = f"seq {self.seq}" if self.seq is not None else f"expected seq {self.expected_seq}"
        return f"{where} ({found}): {self.reason}"


@dataclass(frozen=True, slots=True)
class FileDigest:
    """A day file as verified: its size, SHA-256 and line count (see infra/audit_startup.py)."""

    name: str
    size: int
    sha256: str
    lines: int


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Resume a walk after `seq` (hash `hash`), which ends at byte `offset` (after `lines`
    lines) of day file number `file_index`; the files before it are known to be intact."""

    file_index: int
    offset: int
    lines: int
    seq: int
    hash: str
    keyed_from: int | None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int  # records that verified, all of them when ok
    files: int  # day files in the directory
    first_bad: BadRecord | None
    last_seq: int = 0  # of the last record that verified
    last_hash: str = GENESIS_HASH
    head_seq: int | None = None  # what HEAD records; None when HEAD is missing or unreadable
    keyed_from: int | None = None  # first seq carrying a MAC; None when none does
    macs_checked: bool = False  # a key was given, so every MAC was recomputed
    checkpoints: int = 0  # checkpoints given and matched
    digests: tuple[FileDigest, ...] = ()  # of the files walked (after a start point: from it)
    torn_tail: bool = False  # an unreadable final line was left for the writer to quarantine

    def summary(self) -> str:
        """The text `vigil audit verify` prints."""
        if self.first_bad is None:
            if not self.records:
                return "audit log OK: empty chain, no records yet" + self._notes()
            return (
                f"audit log OK: {self.records} records in {self.files} file(s); "
                f"head seq {self.last_seq}, hash {self.last_hash[:16]}" + self._notes()
            )
        return (
            f"audit log FAILED at {self.first_bad}\n"
            f"{self.records} record(s) before it verified (through seq {self.last_seq}); "
            "nothing after the first failure was checked"
        )

    def _notes(self) -> str:
        notes = []
        if self.keyed_from is not None:
            if self.macs_checked:
                notes.append(f"MACs verified from seq {self.keyed_from}")
            else:
                notes.append(
                    f"MACs present from seq {self.keyed_from} but not checked "
                    "(set VIGIL_AUDIT_KEY to check them)"
                )
        if self.checkpoints:
            notes.append(f"{self.checkpoints} checkpoint(s) matched")
        return "".join(f"\n{n}" for n in notes)


def verify(
    directory: Path,
    *,
    key: bytes | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    now_ms: int | None = None,
    start: StartPoint | None = None,
    torn_tail_ok: bool = False,
) -> VerifyResult:
    """Check the chain, the day files and HEAD; report the first problem. Reads only.

    `key` checks every record's MAC (and HEAD's); `checkpoints` are (seq, hash) pairs noted
    outside the log that it must still hold. `start` and `torn_tail_ok` are for the writer's
    start-up check: walk only from a point already verified, and leave a torn final line (a
    crash artefact open() quarantines) out of the chain instead of failing on it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        missing = BadRecord("", 0, None, 1, f"no audit directory at {directory}")
        return VerifyResult(ok=False, records=0, files=0, first_bad=missing)
    files = log_files(directory)
    head_error = ""
    try:
        head = read_head(directory)
    except ValueError as exc:
        head, head_error = None, str(exc)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    walk = _Walk(head=head, key=key, checkpoints=checkpoints, future_ms=now + FUTURE_SLACK_MS)
    first = 0
    if start is not None:
        walk.resume(start, files[start.file_index].name if start.file_index < len(files) else "")
        first = start.file_index
    bad: BadRecord | None = None
    for index in range(first, len(files)):
        if index and plain_name(files[index].name) == plain_name(files[index - 1].name):
            reason = f"the day is here twice, as {files[index - 1].name} and compressed: keep one"
            bad = BadRecord(files[index].name, 0, None, walk.expected, reason)
            break
        skip = (start.offset, start.lines) if start and index == start.file_index else (0, 0)
        last = index == len(files) - 1
        bad = walk.file(files[index], skip=skip, torn_ok=torn_tail_ok and last)
        if bad is not None:
            break
    else:
        bad = _check_end(walk, head, head_error, directory, files)
    return VerifyResult(
        ok=bad is None,
        records=walk.records,
        files=len(files),
        first_bad=bad,
        last_seq=walk.last_seq,
        last_hash=walk.prev_hash,
        head_seq=head.seq if head else None,
        keyed_from=walk.keyed_from,
        macs_checked=key is not None,
        checkpoints=len(walk.matched),
        digests=tuple(walk.digests),
        torn_tail=walk.torn,
    )


@dataclass
class _Walk:
    """The chain so far, and what the next record must look like."""

    head: HeadAnchor | None
    key: bytes | None
    checkpoints: Sequence[Checkpoint]
    future_ms: int
    expected: int = 1
    prev_hash: str = GENESIS_HASH
    last_seq: int = 0
    records: int = 0
    last_file: str = ""
    last_line: int = 0
    keyed_from: int | None = None
    torn: bool = False
    at_head: tuple[str, str, int] | None = None  # hash, file, line of HEAD's record
    matched: set[int] = field(default_factory=set)
    digests: list[FileDigest] = field(default_factory=list)
    _wanted: dict[int, Checkpoint] = field(default_factory=dict)
    _day: int = 0  # start of the UTC day the current file is named for
    _first_in_file: bool = True

    def __post_init__(self) -> None:
        self._wanted = {cp.seq: cp for cp in self.checkpoints}

    def resume(self, start: StartPoint, name: str) -> None:
        self.expected = start.seq + 1
        self.prev_hash = start.hash
        self.last_seq = self.records = start.seq
        self.keyed_from = start.keyed_from
        self.last_file, self.last_line = (name, start.lines) if start.seq else ("", 0)
        if self.head is not None and self.head.seq == start.seq:
            self.at_head = (start.hash, name, start.lines)

    def file(self, path: Path, *, skip: tuple[int, int], torn_ok: bool) -> BadRecord | None:
        name = path.name
        self._day = file_day_ms(name) or 0
        if self._day > self.future_ms:
            reason = f"day file from the future (the clock here says {format_ts(self.future_ms)})"
            return BadRecord(name, 0, None, self.expected, reason + "; it does not belong here")
        try:
            return self._read(path, name, skip=skip, torn_ok=torn_ok)
        except (OSError, EOFError) as exc:  # e.g. a damaged .gz: said, never a traceback
            what = "compressed day file" if name.endswith(".gz") else "day file"
            return BadRecord(name, 0, None, self.expected, f"{what} unreadable: {exc}")

    def _read(
        self, path: Path, name: str, *, skip: tuple[int, int], torn_ok: bool
    ) -> BadRecord | None:
        digest = hashlib.sha256()
        size = lineno = 0
        with open_day(path) as f:
            if skip[0]:
                prefix = f.read(skip[0])
                digest.update(prefix)
                size, lineno = len(prefix), skip[1]
            self._first_in_file = lineno == 0
            raws: Iterator[bytes] = iter(f)
            raw = next(raws, None)
            if raw is None and size == 0:
                reason = "empty day file: the writer never leaves one; it was emptied or added"
                return BadRecord(name, 0, None, self.expected, reason)
            while raw is not None:
                lineno += 1
                ahead = next(raws, None)
                if torn_ok and ahead is None and _unreadable(raw):
                    self.torn = True  # a crash artefact: AuditLog.open() quarantines it
                    break
                rest = raws if ahead is None else itertools.chain([ahead], raws)
                bad = self._line(name, lineno, raw, rest)
                if bad is not None:
                    return bad
                digest.update(raw)
                size += len(raw)
                raw = ahead
        self.digests.append(FileDigest(name, size, digest.hexdigest(), lineno - self.torn))
        return None

    def _line(self, name: str, lineno: int, raw: bytes, rest: Iterable[bytes]) -> BadRecord | None:
        expected = self.expected
        if not raw.endswith(b"\n"):
            return BadRecord(
                name, lineno, _seq_guess(raw), expected, "torn line: no trailing newline"
            )
        rec, why = parse_line(raw)
        if rec is None:
            return BadRecord(name, lineno, None, expected, why)
        seq = rec.get("seq") if type(rec.get("seq")) is int else None
        problem = record_problem(rec)
        if problem is None and record_hash(rec) != rec["hash"]:
            problem = "hash mismatch"
        if problem is not None:
            return BadRecord(name, lineno, seq, expected, problem)
        seq = rec["seq"]
        problem = self._order_problem(rec, name, lineno, rest)
        problem = problem or self._day_problem(rec["ts"]) or self._key_problem(rec)
        if problem is not None:
            return BadRecord(name, lineno, seq, expected, problem)
        cp = self._wanted.get(seq)
        if cp is not None:
            if not rec["hash"].startswith(cp.hash):
                reason = f"differs from checkpoint {cp} (hash here {rec['hash'][:16]}): the log "
                reason += "was rewritten from this record on, or the checkpoint is of another log"
                return BadRecord(name, lineno, seq, expected, reason)
            self.matched.add(seq)
        self.expected = seq + 1
        self.prev_hash = rec["hash"]
        self.last_seq = seq
        self.records += 1
        self.last_file, self.last_line = name, lineno
        self._first_in_file = False
        if self.head is not None and seq == self.head.seq:
            self.at_head = (rec["hash"], name, lineno)
        return None

    def _order_problem(
        self, rec: dict[str, Any], name: str, lineno: int, rest: Iterable[bytes]
    ) -> str | None:
        seq, expected = rec["seq"], self.expected
        if seq < expected:
            return f"seq does not increase: {seq} after {self.last_seq}"
        if seq > expected:
            later = _line_of_seq(rest, expected, lineno)
            if later is not None:
                return (
                    f"out of order: expected seq {expected}, found {seq} (seq {expected} is "
                    f"at line {later})"
                )
            reason = f"seq gap: expected {expected}, found {seq}"
            if lineno == 1 and self.last_file:
                reason += f" (first line of {name}: a day file before it may be missing)"
            return reason
        if rec["prev_hash"] != self.prev_hash:
            return "prev_hash does not match previous record"
        return None

    def _day_problem(self, ts: int) -> str | None:
        # The writer puts a record in the file of its own UTC day; only when the clock stepped
        # back over midnight does it stay in the newer file, and never as a file's first line.
        day = ts - ts % DAY_MS
        if ts > self.future_ms:
            return f"record from the future: ts {format_ts(ts)} is after this host's clock"
        if day > self._day:
            return (
                f"record of {format_ts(ts)[:10]} in the file of an earlier day: records "
                "never move to an older day file"
            )
        if day < self._day and self._first_in_file:
            return (
                f"the first record of a day file is from {format_ts(ts)[:10]}: a new day "
                "file starts with a record of its own day"
            )
        return None

    def _key_problem(self, rec: dict[str, Any]) -> str | None:
        mac = rec.get(MAC_FIELD)
        if mac is None:
            if self.keyed_from is not None:
                return (
                    f"no MAC, but the chain is keyed from seq {self.keyed_from}: records "
                    "without a MAC were written by something other than the keyed daemon"
                )
            return None
        if self.keyed_from is None:
            self.keyed_from = rec["seq"]
        if self.key is not None and not macs_equal(mac, record_mac(self.key, rec["hash"])):
            return (
                "MAC mismatch: the record was forged or rewritten, or VIGIL_AUDIT_KEY is not "
                "the key it was written with"
            )
        return None


def _unreadable(raw: bytes) -> bool:
    return not raw.endswith(b"\n") or parse_line(raw)[0] is None


def _seq_guess(raw: bytes) -> int | None:
    """The seq a torn line was going to have: our lines start with it."""
    match = SEQ_PREFIX.match(raw)
    return int(match.group(1)) if match else None


def _line_of_seq(rest: Iterable[bytes], seq: int, lineno: int) -> int | None:
    for later, raw in enumerate(rest, lineno + 1):
        rec, _ = parse_line(raw)
        if rec is not None and rec.get("seq") == seq:
            return later
    return None


def _check_end(
    walk: _Walk, head: HeadAnchor | None, head_error: str, directory: Path, files: list[Path]
) -> BadRecord | None:
    bad = _check_head(walk, head, head_error, directory, files)
    if bad is not None:
        return bad
    beyond = sorted(cp.seq for cp in walk.checkpoints if cp.seq > walk.last_seq)
    if beyond:
        name = files[-1].name if files else HEAD_NAME
        line = walk.last_line + 1 if name == walk.last_file else 1
        reason = f"truncated: checkpoint seq {beyond[-1]} is past the end of the log "
        reason += f"(seq {walk.last_seq}); HEAD was rewritten to hide it"
        return BadRecord(name, line, None, walk.last_seq + 1, reason)
    return _check_head_mac(walk, head)


def _check_head(
    walk: _Walk, head: HeadAnchor | None, head_error: str, directory: Path, files: list[Path]
) -> BadRecord | None:
    next_seq = walk.last_seq + 1
    if head_error:
        return BadRecord(HEAD_NAME, 0, None, next_seq, f"HEAD unreadable: {head_error}")
    if head is None:
        if not walk.records:
            return None
        return BadRecord(
            HEAD_NAME, 0, None, next_seq, "HEAD anchor missing: truncation cannot be ruled out"
        )
    if head.seq > walk.last_seq:
        # Name the place the missing records should have been: after the last one found.
        name = files[-1].name if files else head.file
        line = walk.last_line + 1 if name == walk.last_file else 1
        reason = f"truncated: HEAD records seq {head.seq} but the log ends at seq {walk.last_seq}"
        return BadRecord(name, line, None, next_seq, reason)
    if head.seq == 0:
        if head.hash == GENESIS_HASH:
            return None
        return BadRecord(HEAD_NAME, 0, None, 1, "HEAD hash differs from the empty chain")
    if walk.at_head is None:  # HEAD's record lies before the point this walk started from
        found = find_hash(directory / head.file, head.seq)
        if found is None:
            reason = f"HEAD names seq {head.seq} in {head.file}, which lacks it"
            return BadRecord(head.file, 0, head.seq, head.seq, reason)
        walk.at_head = (found[0], found[1], 0)
    digest, name, line = walk.at_head
    if digest != head.hash:
        reason = f"HEAD hash differs from record seq {head.seq}"
        return BadRecord(name, line, head.seq, head.seq, reason)
    if head.file != plain_name(name):  # a day compressed since is still that day
        reason = f"HEAD names {head.file} for seq {head.seq}, but the record is in {name}"
        return BadRecord(name, line, head.seq, head.seq, reason)
    return None


def _check_head_mac(walk: _Walk, head: HeadAnchor | None) -> BadRecord | None:
    if walk.key is None or head is None:
        return None
    next_seq = walk.last_seq + 1
    if head.mac is None:
        if walk.keyed_from is not None and head.seq >= walk.keyed_from:
            reason = "HEAD has no MAC but the chain is keyed: HEAD was rewritten"
            return BadRecord(HEAD_NAME, 0, None, next_seq, reason)
        return None
    fields = {"seq": head.seq, "hash": head.hash, "file": head.file}
    if not macs_equal(head.mac, anchor_mac(walk.key, fields)):
        reason = "HEAD MAC mismatch: HEAD was rewritten (to hide a truncation?) or the key differs"
        return BadRecord(HEAD_NAME, 0, None, next_seq, reason)
    return None


# The operator's views live in infra/audit_read.py; importable from here as before.
from infra.audit_read import format_record as format_record  # noqa: E402
from infra.audit_read import iter_records as iter_records  # noqa: E402
from infra.audit_read import tail as tail  # noqa: E402
