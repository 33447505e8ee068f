"""Exits only from the runner's own guards: entries refused from the next cycle on (exits and
cancels still run) while any cause is set.

One owner: this object. The guards (runner/cycle_guard.py, runner/clock_watch.py) set and
clear their causes through it; the engine reads it into each cycle's snapshot and clears the
causes latched until an operator's resume; /health, /status and the metrics read it as a
read-only mapping cause -> detail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

log = logging.getLogger("vigil.engine")

# Causes that stay until an operator resumes (others clear by themselves).
LATCHED_BY_RESUME = frozenset({"cycle_errors"})


class ExitsOnly(Mapping[str, str]):
    def __init__(self, record: Callable[..., None]) -> None:
        """`record(kind, data, sync=True)` writes the audit record (the engine's recorder)."""
        self._record = record
        self._causes: dict[str, str] = {}

    def __getitem__(self, cause: str) -> str:
        return self._causes[cause]

    def __iter__(self) -> Iterator[str]:
        return iter(self._causes)

    def __len__(self) -> int:
        return len(self._causes)

    def joined(self) -> str:
        """The causes as the cycle's snapshot carries them ("" when none)."""
        return ",".join(sorted(self._causes)) if self._causes else ""

    def set(self, cause: str, detail: str, now_ms: int) -> None:
        """Refuse entries from the next cycle on until `clear` (or an operator's resume for a
        latched cause). Recorded (and so alerted) when the cause starts."""
        if self._causes.get(cause) == detail:
            return
        first = cause not in self._causes
        self._causes[cause] = detail
        if first:
            self._record("exits_only", {"ts": now_ms, "cause": cause, "detail": detail}, sync=True)
            log.error("EXITS ONLY (%s): %s", cause, detail)

    def clear(self, cause: str, now_ms: int) -> None:
        if self._causes.pop(cause, None) is not None:
            self._record("exits_only_clear", {"ts": now_ms, "cause": cause}, sync=True)
            log.warning("exits-only (%s) cleared", cause)

    def resume(self, now_ms: int) -> None:
        """An operator resumed: clear the causes only a resume clears."""
        for cause in list(self._causes):
            if cause in LATCHED_BY_RESUME:
                self.clear(cause, now_ms)
