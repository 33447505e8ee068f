"""Checks while running: API key age and the periodic integrity check.

- API key age: the operator sets `VIGIL_API_KEY_ISSUED=YYYY-MM-DD` (the day the key was made);
  the daemon exports it as a metric and the alerting sink raises `api_key_age` from
  `checks.api_key_max_age_days - checks.api_key_warn_days` on (runner/alerting.py).
- Integrity: every `checks.integrity_interval_minutes`, in a worker thread (never on the
  loop), `PRAGMA quick_check` on a read-only connection to state.db and the hash chain of the
  audit log's last records. Each run is an audit record (`integrity_check`); a failure engages
  the kill switch (no new entries, orders cancelled) with the finding as its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigError
from infra.audit_format import log_files, open_day, record_hash
from infra.secrets import ENV_API_KEY_ISSUED
from infra.settings import VigilConfig

log = logging.getLogger("vigil.checks")

DAY_MS = 86_400_000
TAIL_RECORDS = 1000


def key_issued_ms(env: Mapping[str, str]) -> int | None:
    """Midnight UTC of VIGIL_API_KEY_ISSUED, None when unset. ConfigError when malformed."""
    text = (env.get(ENV_API_KEY_ISSUED) or "").strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(
            f"env {ENV_API_KEY_ISSUED}={text!r}: use the key's issue date as YYYY-MM-DD"
        ) from None
    return int(day.timestamp() * 1000)


# --------------------------------------------------------------------------- integrity


@dataclass(frozen=True, slots=True)
class IntegrityResult:
    ok: bool
    state: str
    audit: str

    def detail(self) -> str:
        return f"state.db: {self.state}; audit tail: {self.audit}"


def check_state(path: Path) -> tuple[bool, str]:
    if not path.exists():
        return False, f"missing ({path})"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            rows = [str(r[0]) for r in con.execute("PRAGMA quick_check")]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return False, f"quick_check could not run: {exc}"
    return (rows == ["ok"]), ("ok" if rows == ["ok"] else "; ".join(rows[:5]))


def check_audit_tail(directory: Path, n: int = TAIL_RECORDS) -> tuple[bool, str]:
    """Each of the last `n` complete records hashes to its own hash and links to the one
    before it; a line still being written (no newline yet) is left out."""
    files = log_files(directory)
    if not files:
        return True, "no records yet"
    lines: deque[bytes] = deque(maxlen=n)
    for path in files[-2:]:  # the last record may be the first of a new day
        try:
            with open_day(path) as fh:  # an older day may have been compressed
                lines.extend(line for line in fh if line.endswith(b"\n"))
        except (OSError, EOFError) as exc:
            return False, f"{path.name} unreadable: {exc}"
    prev: dict[str, Any] | None = None
    for raw in lines:
        try:
            rec = json.loads(raw)
        except ValueError:
            return False, "a line is not JSON"
        seq = rec.get("seq")
        if rec.get("hash") != record_hash(rec):
            return False, f"seq {seq}: hash mismatch"
        if prev is not None and (
            rec.get("prev_hash") != prev.get("hash") or seq != prev.get("seq", 0) + 1
        ):
            return False, f"seq {seq}: does not follow seq {prev.get('seq')}"
        prev = rec
    return True, f"ok ({len(lines)} records through seq {prev.get('seq') if prev else '-'})"


def check_integrity(state_db: Path, audit_dir: Path) -> IntegrityResult:
    s_ok, s_text = check_state(state_db)
    a_ok, a_text = check_audit_tail(audit_dir)
    return IntegrityResult(s_ok and a_ok, s_text, a_text)


class KillTarget(Protocol):
    @property
    def recorder(self) -> Any: ...

    async def engage_kill(self, reason: str, now_ms: int, source: str) -> int: ...


class IntegrityWatch:
    """Runs `check_integrity` every `interval_s` until `stop` is set."""

    def __init__(
        self,
        *,
        engine: KillTarget,
        now_ms: Any,
        state_db: Path,
        audit_dir: Path,
        interval_s: float,
    ) -> None:
        self._e = engine
        self._now = now_ms
        self._state_db = state_db
        self._audit_dir = audit_dir
        self._interval = interval_s

    async def check_once(self) -> IntegrityResult:
        result = await asyncio.to_thread(check_integrity, self._state_db, self._audit_dir)
        self._e.recorder.event(
            "integrity_check",
            {"ok": result.ok, "state": result.state, "audit": result.audit},
            sync=not result.ok,
        )
        if not result.ok:
            log.error("integrity check FAILED: %s; engaging the kill switch", result.detail())
            await self._e.engage_kill(
                f"integrity check failed: {result.detail()}"[:500], self._now(), "integrity"
            )
        return result

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            if stop.is_set():
                return
            try:
                await self.check_once()
            except Exception:  # the watch must outlive a failed check; it says so
                log.exception("integrity check could not run")


def start_integrity_watch(
    engine: KillTarget, clock: Any, cfg: VigilConfig, paths: Any, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """The periodic integrity check as a task, or None when checks.integrity_interval_minutes
    is 0."""
    minutes = cfg.checks.integrity_interval_minutes
    if minutes <= 0:
        return None
    watch = IntegrityWatch(
        engine=engine,
        now_ms=clock.now_ms,
        state_db=paths.state_db,
        audit_dir=paths.audit_dir,
        interval_s=minutes * 60,
    )
    return asyncio.create_task(watch.run(stop), name="integrity-check")
