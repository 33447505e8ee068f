"""Fault injection for the fake exchange: what a test asks for, and the faults in force.

`FaultSpec` is what a test asks for (JSON through `POST /_control/faults`, or keyword arguments
through `FakeExchange.add_fault`); `FaultBook` keeps the active faults and hands them out to
matching requests. `request_gate.RequestGate` applies them to every exchange request.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal[
    "rate_limit",
    "ban",
    "server_error",
    "latency",
    "timeout",
    "drop_after_accept",
    "partial_fills",
    "insufficient_balance",
    "filter_failure",
    "unknown_order",
    "symbol_status",
    "error",
]

# Kinds that act once when added instead of on matching requests.
IMMEDIATE_KINDS = frozenset({"ban", "symbol_status", "partial_fills"})

ORDER_PATH = "/api/v3/order"
# Where a fault applies when the spec names no path/method: order faults hit order entry.
_DEFAULT_TARGET: dict[str, tuple[str, str]] = {
    "drop_after_accept": (ORDER_PATH, "POST"),
    "insufficient_balance": (ORDER_PATH, "POST"),
    "filter_failure": (ORDER_PATH, "POST"),
    "unknown_order": (ORDER_PATH, "GET,DELETE"),
}


class FaultSpec(BaseModel):
    """One fault. Unset `path`/`method` mean the kind's default target (see docs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind = Field(description="What goes wrong.")
    path: str = Field(default="", description="fnmatch pattern on the request path.")
    method: str = Field(default="", description="HTTP method(s), comma-separated, or '*'.")
    count: int | None = Field(
        default=None, ge=1, description="Matching requests it applies to; None: until cleared."
    )
    share: float = Field(
        default=1.0, gt=0, le=1, description="Chance that a matching request is hit (seeded)."
    )
    status: int | None = Field(
        default=None, description="HTTP status: server_error 500/502/503/504, error 4xx."
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After of a rate_limit 429.")
    seconds: int = Field(default=120, ge=1, description="Length of a ban.")
    ms: int = Field(default=0, ge=0, description="Added latency in milliseconds.")
    hold_ms: int | None = Field(
        default=None,
        ge=0,
        description="timeout: how long the request is held before the "
        "connection is dropped (default 30000); drop_after_accept: how long after the order was "
        "placed (default 0).",
    )
    mode: Literal["close", "504"] = Field(
        default="close", description="drop_after_accept: close the connection or answer 504."
    )
    participation: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="partial_fills: share of a candle's volume one order may take.",
    )
    candles: int | None = Field(
        default=None, ge=1, description="partial_fills: for how many candles; None: until cleared."
    )
    filter: Literal["PRICE_FILTER", "LOT_SIZE", "NOTIONAL", "MIN_NOTIONAL"] = Field(
        default="LOT_SIZE", description="filter_failure: the filter named in the error."
    )
    symbol: str = Field(
        default="",
        description="symbol_status: the symbol (BTC/USDT or BTCUSDT). Other kinds: only "
        "requests naming this symbol are hit (empty: any).",
    )
    market_status: Literal["TRADING", "BREAK", "HALT"] = Field(
        default="BREAK", description="symbol_status: the new status."
    )
    code: int = Field(default=-1000, description="error: the Binance error code.")
    msg: str = Field(
        default="An unknown error occurred while processing the request.",
        description="error: the Binance error message.",
    )

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        if self.kind == "server_error" and self.status not in (None, 500, 502, 503, 504):
            raise ValueError("server_error status must be 500, 502, 503 or 504")
        if self.kind == "error" and not (self.status is None or 400 <= self.status < 500):
            raise ValueError("error status must be a 4xx code")
        if self.kind == "partial_fills" and self.participation is None:
            raise ValueError("partial_fills needs participation (0 < p <= 1), e.g. 0.01")
        if self.kind == "symbol_status" and not self.symbol:
            raise ValueError("symbol_status needs symbol, e.g. BTC/USDT")
        if self.kind == "latency" and self.ms <= 0:
            raise ValueError("latency needs ms > 0")
        return self

    def target(self) -> tuple[str, frozenset[str]]:
        path, method = _DEFAULT_TARGET.get(self.kind, ("*", "*"))
        path = self.path or path
        methods = frozenset(m.strip().upper() for m in (self.method or method).split(","))
        return path, methods


@dataclass(slots=True)
class ActiveFault:
    id: int
    spec: FaultSpec
    path: str
    methods: frozenset[str]
    remaining: int | None
    hits: int = 0

    def matches(self, method: str, path: str, symbol: str = "") -> bool:
        want = self.spec.symbol.replace("/", "").upper()
        if want and self.spec.kind != "symbol_status" and symbol.upper() != want:
            return False
        return ("*" in self.methods or method in self.methods) and fnmatchcase(path, self.path)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hits": self.hits,
            "remaining": self.remaining,
            **self.spec.model_dump(exclude_defaults=True),
        }


class FaultBook:
    """The active request faults, in the order they were added."""

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng
        self._faults: list[ActiveFault] = []
        self._next_id = 0
        self.participation: float | None = None
        self.participation_candles: int | None = None

    def add(self, spec: FaultSpec) -> ActiveFault:
        self._next_id += 1
        path, methods = spec.target()
        fault = ActiveFault(self._next_id, spec, path, methods, spec.count)
        if spec.kind == "partial_fills":
            self.participation = spec.participation
            self.participation_candles = spec.candles
        elif spec.kind not in IMMEDIATE_KINDS:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()
        self.participation = None
        self.participation_candles = None

    def take(
        self, kinds: Iterable[str], method: str, path: str, symbol: str = ""
    ) -> ActiveFault | None:
        """The first active fault of `kinds` matching the request (and its `symbol`, the
        Binance id, for faults limited to one), counted as used."""
        wanted = frozenset(kinds)
        for fault in self._faults:
            if (
                fault.spec.kind in wanted
                and fault.matches(method, path, symbol)
                and self._roll(fault)
            ):
                self._use(fault)
                return fault
        return None

    def by_symbol(self) -> bool:
        """Whether some active fault is limited to one symbol (the request must be read)."""
        return any(f.spec.symbol and f.spec.kind != "symbol_status" for f in self._faults)

    def latency_ms(self, method: str, path: str, symbol: str = "") -> int:
        total = 0
        for fault in tuple(self._faults):
            if (
                fault.spec.kind == "latency"
                and fault.matches(method, path, symbol)
                and self._roll(fault)
            ):
                self._use(fault)
                total += fault.spec.ms
        return total

    def step_participation(self) -> float | None:
        """The participation cap for the next candle step, if a partial_fills fault is on."""
        p = self.participation
        if p is not None and self.participation_candles is not None:
            self.participation_candles -= 1
            if self.participation_candles <= 0:
                self.participation = None
                self.participation_candles = None
        return p

    def describe(self) -> list[dict[str, Any]]:
        out = [f.describe() for f in self._faults]
        if self.participation is not None:
            out.append(
                {
                    "kind": "partial_fills",
                    "participation": self.participation,
                    "candles": self.participation_candles,
                }
            )
        return out

    def _roll(self, fault: ActiveFault) -> bool:
        return fault.spec.share >= 1.0 or self._rng.random() < fault.spec.share

    def _use(self, fault: ActiveFault) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)


def parse_faults(body: Any) -> list[FaultSpec]:
    """A fault object or {"faults": [...]} from the control API; ValueError names the problem."""
    items = body.get("faults") if isinstance(body, Mapping) and "faults" in body else [body]
    if not isinstance(items, list) or not items:
        raise ValueError('send a fault object or {"faults": [fault, ...]}')
    return [FaultSpec.model_validate(item) for item in items]
