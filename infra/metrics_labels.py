"""Label values and buckets of the daemon's metrics, and the bounded label families.

Every label value is cleaned (`clean_label`) and each family caps how many distinct values it
accepts, anything beyond going to OTHER, so a bug can never grow the scrape without limit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("vigil.metrics")

OTHER = "other"  # the label value that absorbs anything beyond a family's cap
ORDER_RESULTS = ("accepted", "rejected", "failed", "blocked")
FILL_SIDES = ("buy", "sell")
KILL_PHASES = ("block", "cancel")

# Whole cycles: a healthy one takes milliseconds, a slow exchange can push it to seconds.
CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Pure stages run in tens of microseconds; the buckets span 0.01 ms .. 1 s.
_SUB_MS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4)
STAGE_BUCKETS = (*_SUB_MS, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Kill switch: blocking is in-process (sub-millisecond); cancelling waits on the exchange.
KILL_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SLIPPAGE_BUCKETS = (-50.0, -20.0, -10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]")
_MAX_LABEL_LEN = 64


def clean_label(value: str) -> str:
    """A label value safe to export: short, no spaces or quotes, never empty."""
    v = _UNSAFE.sub("_", value.strip())[:_MAX_LABEL_LEN]
    return v or "unknown"


def reason_code(reason: str) -> str:
    """'BREAKER_HALT:stale_data,api_errors' -> 'BREAKER_HALT': the code, not its detail."""
    return reason.split(":", 1)[0]


# --------------------------------------------------------------------------- bounded families


class _Family:
    """One labelled metric with cached children and a cap on distinct label values."""

    __slots__ = ("_cap", "_children", "_metric", "_other")

    def __init__(self, metric: Any, *, cap: int, known: Iterable[str] = ()) -> None:
        known = tuple(known)
        self._metric = metric
        self._cap = cap + len(known)  # the cap limits surprises, not the declared values
        self._children: dict[str, Any] = {}
        self._other: Any = None
        for k in known:
            self.child(k)

    def child(self, raw: str) -> Any:
        c = self._children.get(raw)
        if c is not None:
            return c
        if len(self._children) >= self._cap:
            if self._other is None:
                self._other = self._metric.labels(OTHER)
                log.warning("metric %s: more than %d label values", self._metric, self._cap)
            return self._other
        c = self._metric.labels(clean_label(raw))
        self._children[raw] = c
        return c


def _one_hot(family: _Family, values: Iterable[str], current: str) -> None:
    for v in values:
        family.child(v).set(1 if v == current else 0)
