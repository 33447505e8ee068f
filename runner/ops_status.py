"""What `vigil status` shows: one set of facts, built from the running engine (served by the
daemon on GET /status) or from state.db when no daemon runs, and one way to print them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.models import EngineState, Order, Position
from infra.runtime_paths import ResolvedPaths

DAY_MS = 86_400_000


def utc(ms: int | None) -> str | None:
    """Epoch ms as '2024-01-31 12:00:00 UTC' (None stays None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def path_facts(paths: ResolvedPaths) -> dict[str, str]:
    return {
        "data_dir": str(paths.data_dir),
        "state_db": str(paths.state_db),
        "audit_dir": str(paths.audit_dir),
        "kill_switch": str(paths.kill_switch),
        "lock_file": str(paths.lock_file),
    }


def state_facts(
    state: EngineState,
    positions: Mapping[str, Position],
    orders: Iterable[Order],
    *,
    cash: Any,
    last_cycle_ms: int | None,
) -> dict[str, Any]:
    """Kill switch, breakers, regime, positions, open orders and the last cycle, as JSON-ready
    data (the equity, which counts positions at their marks, comes from the running daemon)."""
    pos = [
        {
            "symbol": sym,
            "quantity": str(p.quantity),
            "avg_entry": str(p.avg_entry_price),
            "opened": utc(p.opened_ms),
            "strategy": p.strategy,
        }
        for sym, p in sorted(positions.items())
    ]
    return {
        "kill_switch": state.kill_switch,
        "kill_reason": state.kill_reason,
        "regime": state.regime.regime.value,
        "breakers_tripped": {n: b.reason for n, b in sorted(state.breakers.items()) if b.tripped},
        "positions": pos,
        "open_orders": [
            {
                "id": o.client_order_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "status": o.status.value,
                "amount": str(o.amount),
                "filled": str(o.filled),
                "price": None if o.price is None else str(o.price),
            }
            for o in orders
        ],
        "cash": None if cash is None else str(cash),
        "last_cycle_ms": last_cycle_ms,
        "last_cycle": utc(last_cycle_ms),
    }


def key_age_facts(issued_ms: int | None, max_age_days: int, now_ms: int) -> dict[str, Any] | None:
    """The API key's age against `checks.api_key_max_age_days` (None: VIGIL_API_KEY_ISSUED
    not set). Whole days on the wall clock: the key ages in real time, even under a replay."""
    if issued_ms is None:
        return None
    return {
        "issued": _day(issued_ms),
        "age_days": (now_ms - issued_ms) // DAY_MS,
        "max_age_days": max_age_days,
        "rotate_by": _day(issued_ms + max_age_days * DAY_MS),
        "overdue": now_ms - issued_ms >= max_age_days * DAY_MS,
    }


def daemon_facts(
    engine: Any,
    *,
    mode: str,
    config_hash: str,
    config_dir: str,
    paths: ResolvedPaths,
    replay: bool,
    started_ms: int,
    key_issued_ms: int | None = None,
    key_max_age_days: int = 90,
) -> dict[str, Any]:
    """The running daemon's own facts, for GET /status."""
    d = engine.last_decision
    kill = engine.kill_active()
    trading = d.trading_state.value if d is not None else "STARTING"
    if kill:
        trading = "HALTED"
    facts = state_facts(
        engine.state,
        engine.portfolio.positions,
        engine.book.live(),
        cash=engine.portfolio.cash,
        last_cycle_ms=d.ts if d is not None else None,
    )
    facts["kill_switch"] = kill
    facts["kill_reason"] = engine.kill_reason or engine.state.kill_reason
    facts["unknown_holdings"] = dict(getattr(engine.health, "unknown_holdings", {}))
    facts["exits_only"] = dict(getattr(engine, "exits_only", {}))
    return {
        "source": "daemon",
        "pid": os.getpid(),
        "mode": mode,
        "replay": replay,
        "config_hash": config_hash,
        "config_dir": config_dir,
        "started": utc(started_ms),
        "trading_state": trading,
        "equity": None if d is None else str(d.equity),
        "no_trade_reason": None if d is None else d.no_trade_reason,
        "api_key": key_age_facts(key_issued_ms, key_max_age_days, int(time.time() * 1000)),
        "paths": path_facts(paths),
        **facts,
    }


def _money(text: str) -> str:
    try:
        return f"{Decimal(text):,.2f}"
    except ArithmeticError:
        return text


_ORDER = (
    "mode",
    "trading_state",
    "kill_switch",
    "kill_reason",
    "config_hash",
    "pid",
    "started",
    "last_cycle",
    "regime",
    "no_trade_reason",
    "cash",
    "equity",
)


def format_facts(facts: Mapping[str, Any]) -> str:
    """The facts for a person: the headline values, then breakers, positions, orders, paths."""
    lines = []
    for key in _ORDER:
        if key in facts and facts[key] is not None and facts[key] != "":
            value = facts[key]
            if key == "kill_switch":
                value = "ENGAGED (trading halted until `vigil resume`)" if value else "off"
            elif key in ("cash", "equity"):
                value = _money(value)
            lines.append(f"{key.replace('_', ' '):18} {value}")
    api = facts.get("api_key")
    if api:
        due = "rotation overdue since" if api["overdue"] else "rotate by"
        lines.append(f"{'api key age':18} {api['age_days']} days ({due} {api['rotate_by']})")
    if "regime" not in facts:  # nothing stored yet: no breakers, positions or orders to show
        return "\n".join(lines + _path_lines(facts))
    tripped = facts.get("breakers_tripped") or {}
    lines.append(
        f"{'breakers':18} "
        + (", ".join(f"{n} ({r})" if r else n for n, r in tripped.items()) or "none tripped")
    )
    positions = facts.get("positions") or []
    lines.append(f"{'positions':18} {len(positions)}")
    for p in positions:
        lines.append(
            f"  {p['symbol']:14} qty {p['quantity']} @ {p['avg_entry']} since {p['opened']}"
        )
    orders = facts.get("open_orders") or []
    lines.append(f"{'open orders':18} {len(orders)}")
    for o in orders:
        lines.append(
            f"  {o['symbol']:14} {o['side']} {o['amount']} @ {o['price']} "
            f"{o['status']} (filled {o['filled']}) {o['id']}"
        )
    unknown = facts.get("unknown_holdings") or {}
    if unknown:
        held = ", ".join(f"{s} {a}" for s, a in sorted(unknown.items()))
        lines.append(f"{'unknown holdings':18} {held} (coins on the venue the state does not know)")
    exits_only = facts.get("exits_only") or {}
    if exits_only:
        lines.append(
            f"{'exits only':18} " + "; ".join(f"{k}: {v}" for k, v in sorted(exits_only.items()))
        )
    lines += _path_lines(facts)
    return "\n".join(lines)


_PATH_LABELS = {"state_db": "state.db", "kill_switch": "kill file"}


def _path_lines(facts: Mapping[str, Any]) -> list[str]:
    return [
        f"{_PATH_LABELS.get(name, name.replace('_', ' ')):18} {value}"
        for name, value in (facts.get("paths") or {}).items()
    ]
