"""Tamper-evident audit log: hash-chained JSONL, one file per UTC day.

Each record carries the hash of the one before it, so an edited, deleted or reordered line, or a
missing day file, breaks the chain. The HEAD anchor, rewritten after every durable write, makes
the loss of trailing records visible as well. With a key (VIGIL_AUDIT_KEY) each record and HEAD
also carry an HMAC, which nobody without the key can forge. open() verifies the chain written
since its last verified point (infra/audit_startup.py) and refuses to extend a broken one;
where it resumes the chain, and whether HEAD agrees, is infra/audit_resume.py.
The format is in infra/audit_format.py, verification and reading in infra/audit_verify.py;
docs/audit.md is the operator's description. Record data is made plain JSON by
infra/audit_json.py (to_jsonable).

One writer per directory (an flock on `LOCK`). Appends are one `write()` on an unbuffered
append-mode file, so a crash can at worst tear the final line, which `open()` quarantines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Self

from core.clock import DAY_MS, Clock
from core.errors import AlreadyRunning, AuditCorrupted
from infra.audit_format import (
    GENESIS_HASH,
    HEAD_NAME,
    canonical_json,
    file_day_ms,
    file_name_for,
    head_json,
    is_compressed,
    log_files,
    record_mac,
)
from infra.audit_json import to_jsonable
from infra.audit_recovery import fsync_dir, quarantine
from infra.audit_resume import check_head, find_tip, verify_chain
from infra.audit_startup import Verified, advance, write_verified

logger = logging.getLogger(__name__)

LOCK_NAME: Final = "LOCK"
KIND_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


# --------------------------------------------------------------------------- the writer


class LogState(StrEnum):
    NEW = "NEW"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    FAILED = "FAILED"  # a write failed and could not be undone; reopen to continue


class AuditLog:
    """The append side of the audit log.

    `AuditLog(dir, config_hash=..., clock=...).open()` (or `with AuditLog(...) as log:`) resumes
    the chain found in `dir`, or starts one. `fsync=False` is for backtests: records still reach
    the OS at once, but nothing waits for the disk. `key` (from VIGIL_AUDIT_KEY, see
    infra/secrets.audit_key) adds an HMAC to each record and to HEAD. With
    `checkpoint_every_ms`, a checkpoint line (seq and hash of the newest durable record) is
    logged at open, at close and at most that often in between, and `on_checkpoint` is called
    with (seq, hash): copies kept outside the log let `vigil audit verify --checkpoint` detect
    a cut-off tail.
    """

    def __init__(
        self,
        directory: Path,
        *,
        config_hash: str,
        clock: Clock,
        fsync: bool = True,
        key: bytes | None = None,
        checkpoint_every_ms: int | None = None,
        on_checkpoint: Callable[[int, str], None] | None = None,
    ) -> None:
        if not isinstance(config_hash, str) or not config_hash:
            raise ValueError("config_hash must be a non-empty string (the effective config hash)")
        self._dir = Path(directory)
        self._config_hash = config_hash
        self._config_json = json.dumps(config_hash, ensure_ascii=False)
        self._clock = clock
        self._fsync = fsync
        self._state = LogState.NEW
        self._mutex = threading.Lock()  # to_thread() appends must not interleave seq numbers
        self._kind_json: dict[str, str] = {}
        self._seq = 0
        self._hash = GENESIS_HASH
        self._file_name = ""  # the file holding record `_seq`
        self._fh: Any = None  # unbuffered FileIO of the current day file
        self._fh_size = 0
        self._fh_name = ""
        self._fh_day_end = 0  # the current file takes records with ts below this
        self._floor_day = -1  # never write into a file older than the newest one
        self._head_written: tuple[int, str] | None = None
        self._lock_fd: int | None = None
        self._key = key
        self._checkpoint_every_ms = checkpoint_every_ms
        self.on_checkpoint = on_checkpoint
        self._checkpoint_at: int | None = None  # monotonic ms of the last checkpoint line
        self._verified: Verified | None = None  # what VERIFIED holds

    # -- lifecycle

    def open(self) -> Self:
        if self._state is not LogState.NEW:
            raise RuntimeError(f"audit log {self._dir} is {self._state}; build a new AuditLog")
        self._dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            newest = log_files(self._dir)[-1:]
            if newest and is_compressed(newest[0]):
                # the tip is read and a torn tail cut from the newest day: never on gzip bytes
                raise AuditCorrupted(
                    f"audit log {self._dir}: the newest day file {newest[0].name} is "
                    "compressed; the writer continues the newest day, so only older days may "
                    f"be compressed. Decompress it (gunzip {newest[0]}) and start again"
                )
            verified = verify_chain(self._dir, self._key)
            files = log_files(self._dir)
            tip, torn = find_tip(self._dir, files)
            head_mac, self._head_written = check_head(self._dir, tip)
            self._seq, self._hash, self._file_name = tip.seq, tip.hash, tip.file
            recovered = (
                quarantine(self._dir, torn, self._seq, fsync=self._fsync)
                if torn is not None
                else None
            )
            files = log_files(self._dir)  # quarantine may have removed an emptied file
            if files:
                self._floor_day = file_day_ms(files[-1].name) or 0
            write_verified(self._dir, verified, self._key, fsync=self._fsync)
            self._verified = verified
            self._state = LogState.OPEN
            gains_mac = self._key is not None and not head_mac and self._head_written is not None
            if self._seq == 0 or gains_mac:
                self._head_written = None
                self._write_head()  # a new chain, or HEAD gains its MAC: anchor it at once
            self._checkpoint(force=self._checkpoint_at is None)
            if recovered is not None:
                self.append("audit_recovered", recovered, sync=True)
        except BaseException:
            self._close_file()
            self._release_lock()
            self._state = LogState.CLOSED
            raise
        return self

    def close(self) -> None:
        """Sync (fsync + HEAD), then release the file and the writer lock. Idempotent."""
        with self._mutex:
            try:
                if self._state is LogState.OPEN:
                    self._sync()
                    self._checkpoint(force=True)
            finally:
                self._close_file()
                self._release_lock()
                self._state = LogState.CLOSED

    def __enter__(self) -> Self:
        return self.open() if self._state is LogState.NEW else self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the public surface

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def state(self) -> LogState:
        return self._state

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest record; (0, "0"*64) for an empty chain."""
        if self._state is LogState.NEW:
            raise RuntimeError("audit log not opened yet: call open() first")
        return self._seq, self._hash

    def append(self, kind: str, data: Mapping[str, Any], *, sync: bool = False) -> dict[str, Any]:
        """Write one record and return it. `sync=True`: durable (and HEAD moved) on return."""
        kind_json = self._kind_json.get(kind) or self._check_kind(kind)
        if not isinstance(data, Mapping):
            raise TypeError(f"audit data must be a mapping, not {type(data).__name__}")
        payload = to_jsonable(data)
        data_json = canonical_json(payload)
        with self._mutex:
            if self._state is not LogState.OPEN:
                raise RuntimeError(f"cannot append to audit log {self._dir}: it is {self._state}")
            ts = self._clock.now_ms()
            if type(ts) is not int:
                raise TypeError(f"clock.now_ms() returned {type(ts).__name__}, not int")
            seq = self._seq + 1
            prev = self._hash
            # Both strings are built by hand around the one json.dumps of `data`; the body is
            # exactly canonical_json() of the record without "hash" (tests hold us to that),
            # and the line puts the fields in reading order.
            cfg = self._config_json
            body = (
                f'{{"config_hash":{cfg},"data":{data_json},"kind":{kind_json},'
                f'"prev_hash":"{prev}","seq":{seq},"ts":{ts}}}'
            )
            digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
            mac = record_mac(self._key, digest) if self._key is not None else None
            tail = f',"mac":"{mac}"' if mac is not None else ""
            line = (
                f'{{"seq":{seq},"ts":{ts},"kind":{kind_json},"config_hash":{cfg},'
                f'"data":{data_json},"prev_hash":"{prev}","hash":"{digest}"{tail}}}\n'
            )
            self._write(self._file_for(ts), line.encode("utf-8"))
            self._seq, self._hash = seq, digest
            if sync:
                self._sync()
        record = {
            "seq": seq,
            "ts": ts,
            "kind": kind,
            "config_hash": self._config_hash,
            "data": payload,
            "prev_hash": prev,
            "hash": digest,
        }
        if mac is not None:
            record["mac"] = mac
        return record

    def flush(self) -> None:
        """Make every record so far durable (when fsync is on) and move HEAD to the newest."""
        with self._mutex:
            if self._state is LogState.FAILED:
                raise RuntimeError(f"audit log {self._dir} failed a write; reopen it")
            if self._state is LogState.OPEN:
                self._sync()

    # -- writing

    def _check_kind(self, kind: str) -> str:
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
            raise ValueError(
                f"bad audit record kind {kind!r}: use lowercase letters, digits and underscores, "
                "starting with a letter (e.g. order_intent)"
            )
        self._kind_json[kind] = encoded = f'"{kind}"'
        return encoded

    def _file_for(self, ts: int) -> Any:
        if self._fh is not None and ts < self._fh_day_end:
            # Also taken when the clock stepped back over midnight: records stay in the newest
            # file so that file order remains chain order.
            return self._fh
        day = max(ts - ts % DAY_MS, self._floor_day)
        if self._fh is not None:
            if self._fsync:
                os.fsync(self._fh.fileno())
            self._close_file()
        name = file_name_for(day)
        path = self._dir / name
        created = not path.exists()
        self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 -- held open across appends
        self._fh_size = os.fstat(self._fh.fileno()).st_size
        self._fh_day_end = day + DAY_MS
        self._floor_day = day
        if created and self._fsync:
            fsync_dir(self._dir)
        self._fh_name = name
        return self._fh

    def _write(self, fh: Any, raw: bytes) -> None:
        try:
            written = fh.write(raw)
            while written < len(raw):  # short writes only happen on a nearly full disk
                written += fh.write(raw[written:])
        except OSError:
            self._undo_partial_write()
            raise
        self._fh_size += len(raw)
        self._file_name = self._fh_name

    def _undo_partial_write(self) -> None:
        try:
            os.ftruncate(self._fh.fileno(), self._fh_size)
        except OSError:
            self._state = LogState.FAILED
            logger.error(
                "audit log %s: a failed write may have left a partial line; appends refused "
                "until the log is reopened (open() quarantines a torn tail)",
                self._dir,
            )

    def _sync(self) -> None:
        if self._fh is not None and self._fsync:
            os.fsync(self._fh.fileno())
        self._write_head()

    def _write_head(self) -> None:
        current = (self._seq, self._hash)
        if self._head_written == current:
            return
        text = head_json(self._seq, self._hash, self._file_name, self._key)
        tmp = self._dir / (HEAD_NAME + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(text.encode("utf-8") + b"\n")
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, self._dir / HEAD_NAME)
        except OSError:
            # A full disk or read-only directory: leave no stray HEAD.tmp behind.
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if self._fsync:
            fsync_dir(self._dir)
        self._head_written = current
        self._checkpoint(force=False)

    def _checkpoint(self, *, force: bool) -> None:
        """Log the newest durable record's (seq, hash) for copies outside the log."""
        every = self._checkpoint_every_ms
        if every is None or self._head_written is None or self._head_written[0] == 0:
            return
        now = int(time.monotonic() * 1000)  # wall time: a replay's clock may race ahead
        if not force and self._checkpoint_at is not None and now - self._checkpoint_at < every:
            return
        self._checkpoint_at = now
        seq, digest = self._head_written
        self._advance_verified()
        logger.info(
            "audit checkpoint seq=%d hash=%s file=%s (keep a copy off this host; "
            "vigil audit verify --checkpoint %d:%s)",
            seq,
            digest,
            self._file_name,
            seq,
            digest,
        )
        if self.on_checkpoint is not None:
            self.on_checkpoint(seq, digest)

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._fh_day_end = 0

    def _take_lock(self) -> None:
        fd = os.open(self._dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"audit log {self._dir} is already open for writing (in this or another "
                "process); only one writer may extend a chain"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _advance_verified(self) -> None:
        # Moving VERIFIED along with the checkpoints lets the next start detect a tail cut off
        # while the daemon was down, and keeps its walk short.
        if self._verified is None or self._verified.seq == self._seq:
            return
        moved = advance(self._dir, self._key, self._verified)
        if isinstance(moved, Verified):
            write_verified(self._dir, moved, self._key, fsync=self._fsync)
            self._verified = moved
        else:
            logger.error(
                "audit log %s changed under the writer: %s; run vigil audit verify",
                self._dir,
                moved.first_bad,
            )
            self._verified = None
