"""The audit log's on-disk rules, shared by the writer (infra/audit.py) and the reader
(infra/audit_verify.py): the record format and hash, day-file names, HEAD, line parsing, and the
optional keyed MACs and the checkpoints verify can be given. docs/audit.md describes them.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, Final, cast

from core.clock import DAY_MS

GENESIS_HASH: Final = "0" * 64
HEAD_NAME: Final = "HEAD"
QUARANTINE_DIR: Final = "quarantine"
RECORD_FIELDS: Final = ("seq", "ts", "kind", "config_hash", "data", "prev_hash", "hash")
# Old days may be gzip-compressed by the operator (audit-YYYY-MM-DD.jsonl.gz); readers open
# them with open_day(). The writer never compresses and refuses a compressed newest day.
FILE_RE: Final = re.compile(r"audit-(\d{4}-\d{2}-\d{2})\.jsonl(?:\.gz)?")
GZ_SUFFIX: Final = ".gz"
HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_TAIL_BLOCK: Final = 64 * 1024
SEQ_PREFIX: Final = re.compile(rb'\{"seq":(\d+)[,}]')
MAC_FIELD: Final = "mac"  # only in records written with VIGIL_AUDIT_KEY set
# Domain-separation prefixes: a record MAC can never be passed off as a HEAD or VERIFIED MAC.
_RECORD_TAG: Final = b"vigil-audit-record\0"
_ANCHOR_TAG: Final = b"vigil-audit-anchor\0"


# --------------------------------------------------------------------------- record rules


def canonical_json(obj: Any) -> str:
    """The byte-exact form hashes are computed over."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of the record without its "hash" and "mac" fields."""
    body = {k: v for k, v in record.items() if k != "hash" and k != MAC_FIELD}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def record_problem(rec: Any) -> str | None:
    """Why `rec` is not a well-formed record (short reason), or None when it is."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        return f"missing field: {', '.join(missing)}"
    extra = sorted(k for k in rec if k not in RECORD_FIELDS and k != MAC_FIELD)
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
    for key in ("prev_hash", "hash", MAC_FIELD):
        if key in rec and (not isinstance(rec[key], str) or not HEX64_RE.fullmatch(rec[key])):
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


def is_compressed(path: Path) -> bool:
    return path.name.endswith(GZ_SUFFIX)


def plain_name(name: str) -> str:
    """The day file's name without `.gz`: what HEAD and VERIFIED call it either way."""
    return name.removesuffix(GZ_SUFFIX)


def open_day(path: Path) -> IO[bytes]:
    """A day file for reading, decompressed when it is `.gz`. A damaged `.gz` raises OSError
    or EOFError (gzip.BadGzipFile is an OSError) while it is read."""
    if is_compressed(path):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


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
    mac: str | None = None  # anchor_mac(), written when the log is keyed


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
    if not isinstance(obj, dict) or set(obj) - {MAC_FIELD} != {"seq", "hash", "file"}:
        raise ValueError(
            'HEAD must be a JSON object with exactly "seq", "hash" and "file" '
            '(and "mac" when the log is keyed)'
        )
    seq, digest, name, mac = obj["seq"], obj["hash"], obj["file"], obj.get(MAC_FIELD)
    if type(seq) is not int or seq < 0:
        raise ValueError(f"HEAD seq must be a non-negative integer, found {seq!r}")
    if not isinstance(digest, str) or not HEX64_RE.fullmatch(digest):
        raise ValueError("HEAD hash must be 64 lowercase hex digits")
    if not isinstance(name, str) or (name and file_day_ms(name) is None) or (not name and seq):
        raise ValueError(f"HEAD file must name a day file of the log, found {name!r}")
    if mac is not None and (not isinstance(mac, str) or not HEX64_RE.fullmatch(mac)):
        raise ValueError("HEAD mac must be 64 lowercase hex digits")
    return HeadAnchor(seq=seq, hash=digest, file=name, mac=mac)


def head_json(seq: int, digest: str, name: str, key: bytes | None) -> str:
    """The text of HEAD: the anchor, with its MAC when the log is keyed."""
    anchor: dict[str, Any] = {"seq": seq, "hash": digest, "file": name}
    if key is not None:
        anchor[MAC_FIELD] = anchor_mac(key, anchor)
    return canonical_json(anchor)


# --------------------------------------------------------------------------- keyed chain


def record_mac(key: bytes, digest: str) -> str:
    """HMAC-SHA256 of a record's hash. The hash covers every other field and the previous
    record's hash, so one MAC authenticates the record and its place in the chain."""
    return hmac.new(key, _RECORD_TAG + digest.encode("ascii"), hashlib.sha256).hexdigest()


def anchor_mac(key: bytes, anchor: Mapping[str, Any]) -> str:
    """HMAC-SHA256 of an anchor file's fields (HEAD, VERIFIED) without its own "mac"."""
    body = {k: v for k, v in anchor.items() if k != MAC_FIELD}
    return hmac.new(
        key, _ANCHOR_TAG + canonical_json(body).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def macs_equal(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a, b)


# --------------------------------------------------------------------------- checkpoints

_CHECKPOINT_RE: Final = re.compile(
    r"\b(?:seq=(\d+)\s+hash=|(\d+):)([0-9a-f]{16,64})\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A (seq, hash) pair noted outside the log. `hash` may be a prefix of 16+ hex digits."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


def parse_checkpoint(text: str) -> Checkpoint | None:
    """`SEQ:HASH`, or a line holding `seq=SEQ hash=HASH` (the daemon's checkpoint log line)."""
    match = _CHECKPOINT_RE.search(text)
    if match is None:
        return None
    seq = int(match.group(1) or match.group(2))
    return Checkpoint(seq=seq, hash=match.group(3).lower()) if seq >= 1 else None


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
    """(hash, plain file name) of record `seq` in `path` (or in `path`.gz when only that
    exists), None when it is not there."""
    if not path.exists() and path.with_name(path.name + GZ_SUFFIX).exists():
        path = path.with_name(path.name + GZ_SUFFIX)  # that day was compressed since
    try:
        with open_day(path) as f:
            for raw in f:
                rec, _ = parse_line(raw)
                if rec is not None and rec.get("seq") == seq:
                    return str(rec.get("hash")), plain_name(path.name)
    except (OSError, EOFError):  # missing, or a damaged .gz: the record is not found there
        return None
    return None


def format_ts(ts_ms: int) -> str:
    """2024-01-02T03:04:05.678Z"""
    moment = datetime.fromtimestamp(ts_ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ts_ms % 1000:03d}Z"
