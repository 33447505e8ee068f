"""Reading side of the audit log: the record rules, `verify`, and the operator's views.

Everything here only reads. `verify` walks the whole chain and reports the first record that
breaks it; `iter_records`, `tail` and `format_record` are what `vigil audit ...` prints.
docs/audit.md describes the format and how to read the results.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from core.clock import DAY_MS
from core.errors import AuditCorrupted

GENESIS_HASH: Final = "0" * 64
HEAD_NAME: Final = "HEAD"
QUARANTINE_DIR: Final = "quarantine"
RECORD_FIELDS: Final = ("seq", "ts", "kind", "config_hash", "data", "prev_hash", "hash")
FILE_RE: Final = re.compile(r"audit-(\d{4}-\d{2}-\d{2})\.jsonl")
HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_TAIL_BLOCK: Final = 64 * 1024
_SEQ_PREFIX: Final = re.compile(rb'\{"seq":(\d+)[,}]')


# --------------------------------------------------------------------------- record rules


def canonical_json(obj: Any) -> str:
    """The byte-exact form hashes are computed over."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of the record without its "hash" field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def record_problem(rec: Any) -> str | None:
    """Why `rec` is not a well-formed record (short reason), or None when it is."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        return f"missing field: {', '.join(missing)}"
    extra = sorted(k for k in rec if k not in RECORD_FIELDS)
    if extra:
        return f"unexpected field: {', '.join(extra)}"
    for key in ("seq", "ts"):
        if type(rec[key]) is not int:
            return f"{key} is not an integer"
    if rec["seq"] < 1:
        return "seq is not positive"
    for key in ("kind", "config_hash"):
        if not isinstance(rec[key], str):
            return f"{key} is not a string"
    if not isinstance(rec["data"], dict):
        return "data is not an object"
    for key in ("prev_hash", "hash"):
        if not isinstance(rec[key], str) or not HEX64_RE.fullmatch(rec[key]):
            return f"{key} is not 64 lowercase hex digits"
    return None


def file_name_for(ts_ms: int) -> str:
    """`audit-YYYY-MM-DD.jsonl` for the UTC day containing ts_ms."""
    day = date.fromordinal(_EPOCH_ORDINAL + ts_ms // DAY_MS)
    return f"audit-{day.isoformat()}.jsonl"


def file_day_ms(name: str) -> int | None:
    """Start (epoch ms) of the day a log file is named after; None when it is not a log file."""
    match = FILE_RE.fullmatch(name)
    if match is None:
        return None
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError:
        return None
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_MS


def log_files(directory: Path) -> list[Path]:
    """The day files of a log directory in chain order (their names sort by date)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if file_day_ms(p.name) is not None and p.is_file()]
    return sorted(found, key=lambda p: p.name)


@dataclass(frozen=True, slots=True)
class HeadAnchor:
    """Contents of the HEAD file: the newest record known to be durable."""

    seq: int
    hash: str
    file: str  # "" while the chain is empty


def read_head(directory: Path) -> HeadAnchor | None:
    """The HEAD anchor, None when absent. Raises ValueError naming what is wrong with it."""
    try:
        raw = (directory / HEAD_NAME).read_bytes()
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"HEAD is not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or set(obj) != {"seq", "hash", "file"}:
        raise ValueError('HEAD must be a JSON object with exactly "seq", "hash" and "file"')
    seq, digest, name = obj["seq"], obj["hash"], obj["file"]
    if type(seq) is not int or seq < 0:
        raise ValueError(f"HEAD seq must be a non-negative integer, found {seq!r}")
    if not isinstance(digest, str) or not HEX64_RE.fullmatch(digest):
        raise ValueError("HEAD hash must be 64 lowercase hex digits")
    if not isinstance(name, str) or (name and file_day_ms(name) is None) or (not name and seq):
        raise ValueError(f"HEAD file must name a day file of the log, found {name!r}")
    return HeadAnchor(seq=seq, hash=digest, file=name)


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(record, "") or (None, reason). Strict: UTF-8, one JSON object, no NaN, no repeated keys."""
    body = raw[:-1] if raw.endswith(b"\n") else raw
    if not body.strip():
        return None, "empty line"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    return obj, ""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("repeated key")
    return out


def last_lines(path: Path, size: int, count: int = 2) -> list[tuple[int, bytes, bool]]:
    """Up to `count` final lines as (offset, bytes without newline, ended by a newline)."""
    pos, buf = size, b""
    with path.open("rb") as f:
        while pos > 0:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            # Enough once `count` line starts (newlines before the last byte) are in view.
            if buf.count(b"\n", 0, len(buf) - 1) >= count:
                break
    complete = buf.endswith(b"\n")
    parts = (buf[:-1] if complete else buf).split(b"\n")
    offset = pos
    if pos > 0:  # the first piece is the end of a line we did not read whole
        offset += len(parts[0]) + 1
        parts = parts[1:]
    lines = []
    for part in parts:
        lines.append((offset, part, True))
        offset += len(part) + 1
    lines[-1] = (lines[-1][0], lines[-1][1], complete)
    return lines[-count:]


def find_hash(path: Path, seq: int) -> tuple[str, str] | None:
    """(hash, file name) of record `seq` in `path`, None when it is not there."""
    try:
        with path.open("rb") as f:
            for raw in f:
                rec, _ = parse_line(raw)
                if rec is not None and rec.get("seq") == seq:
                    return str(rec.get("hash")), path.name
    except FileNotFoundError:
        return None
    return None


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class BadRecord:
    """Where the chain first breaks. `line` is 1-based (0 for problems with HEAD itself)."""

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
class VerifyResult:
    ok: bool
    records: int  # records that verified, all of them when ok
    files: int  # day files in the directory
    first_bad: BadRecord | None
    last_seq: int = 0  # of the last record that verified
    last_hash: str = GENESIS_HASH
    head_seq: int | None = None  # what HEAD records; None when HEAD is missing or unreadable

    def summary(self) -> str:
        """The text `vigil audit verify` prints."""
        if self.first_bad is None:
            if not self.records:
                return "audit log OK: empty chain, no records yet"
            return (
                f"audit log OK: {self.records} records in {self.files} file(s); "
                f"head seq {self.last_seq}, hash {self.last_hash[:16]}"
            )
        return (
            f"audit log FAILED at {self.first_bad}\n"
            f"{self.records} record(s) before it verified (through seq {self.last_seq}); "
            "nothing after the first failure was checked"
        )


def verify(directory: Path) -> VerifyResult:
    """Check the whole chain and HEAD; report the first problem. Reads only."""
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
    walk = _Walk(head_seq=head.seq if head else None)
    bad: BadRecord | None = None
    for path in files:
        bad = walk.file(path)
        if bad is not None:
            break
    else:
        bad = _check_head(walk, head, head_error, files)
    return VerifyResult(
        ok=bad is None,
        records=walk.records,
        files=len(files),
        first_bad=bad,
        last_seq=walk.last_seq,
        last_hash=walk.prev_hash,
        head_seq=head.seq if head else None,
    )


class _Walk:
    """The chain so far, and what the next record must look like."""

    def __init__(self, *, head_seq: int | None) -> None:
        self.expected = 1
        self.prev_hash = GENESIS_HASH
        self.last_seq = 0
        self.records = 0
        self.last_file = ""
        self.last_line = 0
        self.head_seq = head_seq
        self.at_head: tuple[str, str, int] | None = None  # hash, file, line of HEAD's record

    def file(self, path: Path) -> BadRecord | None:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                bad = self._line(path.name, lineno, raw, f)
                if bad is not None:
                    return bad
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
        if seq < expected:
            reason = f"seq does not increase: {seq} after {self.last_seq}"
            return BadRecord(name, lineno, seq, expected, reason)
        if seq > expected:
            later = _line_of_seq(rest, expected, lineno)
            if later is not None:
                reason = f"out of order: expected seq {expected}, found {seq} (seq {expected} is "
                reason += f"at line {later})"
            else:
                reason = f"seq gap: expected {expected}, found {seq}"
                if lineno == 1 and self.last_file:
                    reason += f" (first line of {name}: a day file before it may be missing)"
            return BadRecord(name, lineno, seq, expected, reason)
        if rec["prev_hash"] != self.prev_hash:
            reason = "prev_hash does not match previous record"
            return BadRecord(name, lineno, seq, expected, reason)
        self.expected = seq + 1
        self.prev_hash = rec["hash"]
        self.last_seq = seq
        self.records += 1
        self.last_file, self.last_line = name, lineno
        if seq == self.head_seq:
            self.at_head = (rec["hash"], name, lineno)
        return None


def _seq_guess(raw: bytes) -> int | None:
    """The seq a torn line was going to have: our lines start with it."""
    match = _SEQ_PREFIX.match(raw)
    return int(match.group(1)) if match else None


def _line_of_seq(rest: Iterable[bytes], seq: int, lineno: int) -> int | None:
    for later, raw in enumerate(rest, lineno + 1):
        rec, _ = parse_line(raw)
        if rec is not None and rec.get("seq") == seq:
            return later
    return None


def _check_head(
    walk: _Walk, head: HeadAnchor | None, head_error: str, files: list[Path]
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
    assert walk.at_head is not None  # every seq up to last_seq was walked
    digest, name, line = walk.at_head
    if digest != head.hash:
        reason = f"HEAD hash differs from record seq {head.seq}"
        return BadRecord(name, line, head.seq, head.seq, reason)
    if head.file != name:
        reason = f"HEAD names {head.file} for seq {head.seq}, but the record is in {name}"
        return BadRecord(name, line, head.seq, head.seq, reason)
    return None


# --------------------------------------------------------------------------- reading


def iter_records(directory: Path) -> Iterator[dict[str, Any]]:
    """Records in chain order, without checking hashes (that is `verify`'s job).

    An unreadable line raises AuditCorrupted, except an incomplete final line of the newest file:
    the writer may be in the middle of it, or it is a crash artefact the next open() recovers.
    """
    files = log_files(Path(directory))
    for index, path in enumerate(files):
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n") and index == len(files) - 1:
                    return
                rec, why = parse_line(raw) if raw.endswith(b"\n") else (None, "torn line")
                why = why or record_problem(rec) or ""
                if why:
                    raise AuditCorrupted(
                        f"{path.name} line {lineno}: {why}; run `vigil audit verify` for details"
                    )
                assert rec is not None
                yield rec


def tail(directory: Path, n: int = 20, kinds: set[str] | None = None) -> list[str]:
    """The last `n` records (of `kinds`, when given) as readable lines, oldest first.

    Unreadable lines are shown in place (always, whatever `kinds`) rather than stopping the view.
    """
    if n <= 0:
        return []
    files = log_files(Path(directory))
    picked: list[str] = []
    for index in range(len(files) - 1, -1, -1):
        path = files[index]
        lines = path.read_bytes().split(b"\n")
        last = lines.pop()  # b"" after a final newline, else an incomplete line
        entries = [(lineno, raw, "") for lineno, raw in enumerate(lines, 1)]
        if last and index < len(files) - 1:
            # In the newest file it may be a line being written; in an older one it is damage.
            entries.append((len(lines) + 1, last, "torn line"))
        for lineno, raw, torn in reversed(entries):
            rec, why = (None, torn) if torn else parse_line(raw + b"\n")
            why = why or record_problem(rec) or ""
            if why:
                picked.append(
                    f"{path.name} line {lineno}: unreadable ({why}); run vigil audit verify"
                )
            elif rec is not None and (kinds is None or rec["kind"] in kinds):
                picked.append(format_record(rec))
            if len(picked) >= n:
                return picked[::-1]
    return picked[::-1]


_SUMMARY_LIMIT: Final = 320
_VALUE_LIMIT: Final = 60


def format_record(rec: Mapping[str, Any]) -> str:
    """One line: UTC time, #seq, kind, then the data as key=value (nested keys dotted)."""
    ts = rec.get("ts")
    when = format_ts(ts) if type(ts) is int else "?"
    data = rec.get("data")
    pairs = list(_flatten(data, "")) if isinstance(data, Mapping) else []
    summary = " ".join(f"{key}={value}" for key, value in pairs)
    if len(summary) > _SUMMARY_LIMIT:
        summary = summary[: _SUMMARY_LIMIT - 1] + "…"
    return f"{when} #{rec.get('seq', '?')} {rec.get('kind', '?')} {summary}".rstrip()


def format_ts(ts_ms: int) -> str:
    """2024-01-02T03:04:05.678Z"""
    moment = datetime.fromtimestamp(ts_ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ts_ms % 1000:03d}Z"


def _flatten(data: Mapping[str, Any], prefix: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and depth < 2:
            yield from _flatten(value, name + ".", depth + 1)
        else:
            yield name, _short(value)


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}" if not value else "{…}"
    if isinstance(value, list):
        if len(value) <= 5 and all(not isinstance(v, Mapping | list) for v in value):
            return "[" + ",".join(_short(v) for v in value) + "]"
        return f"[{len(value)} items]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if len(text) > _VALUE_LIMIT:
        text = text[: _VALUE_LIMIT - 1] + "…"
    if isinstance(value, str) and (not text or any(c in text for c in ' ="\n\t')):
        text = json.dumps(text, ensure_ascii=False)
    return text
