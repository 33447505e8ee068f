"""Operator commands: kill, resume, status, config check/show, audit verify/tail/replay."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.models import Fill, Liquidity, Side
from core.portfolio import Portfolio, PortfolioError, apply_fill
from infra.audit import AuditLog
from infra.audit_verify import iter_records, tail
from infra.clock import LiveClock
from infra.config_loader import LoadedConfig, redacted_dump
from infra.lock import pid_alive
from infra.settings import ResolvedPaths
from infra.state_store import StateStore
from runner import exit_codes

RESUME_FILE = "RESUME"


def _running_pid(paths: ResolvedPaths) -> int | None:
    try:
        info = json.loads(paths.lock_file.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid_alive(pid) else None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _audit_event(
    loaded: LoadedConfig, paths: ResolvedPaths, kind: str, data: Mapping[str, Any]
) -> None:
    with AuditLog(paths.audit_dir, config_hash=loaded.config_hash, clock=LiveClock()) as log:
        log.append(kind, data, sync=True)


def cmd_kill(loaded: LoadedConfig, reason: str) -> int:
    paths = loaded.config.paths.resolved()
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(paths.kill_switch, reason.strip() + "\n")
    pid = _running_pid(paths)
    if pid is not None:
        print(
            f"kill switch set: {paths.kill_switch}; vigil (pid {pid}) halts and cancels "
            "open orders within a second"
        )
        return exit_codes.OK
    # Not running: latch it in the state so the next start stays halted.
    db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
    try:
        with db.transaction():
            db.set_kill_switch(True, reason)
    finally:
        db.close()
    _audit_event(loaded, paths, "kill_switch", {"reason": reason, "source": "cli"})
    print(f"kill switch set and latched in {paths.state_db} (vigil is not running)")
    return exit_codes.OK


def cmd_resume(loaded: LoadedConfig, reason: str = "operator resume via CLI") -> int:
    paths = loaded.config.paths.resolved()
    try:
        paths.kill_switch.unlink()
        removed = True
    except FileNotFoundError:
        removed = False
    pid = _running_pid(paths)
    if pid is not None:
        _atomic_write(paths.data_dir / RESUME_FILE, reason.strip() + "\n")
        print(
            f"resume requested from vigil (pid {pid})"
            + ("; kill-switch file removed" if removed else "")
        )
        return exit_codes.OK
    if paths.state_db.exists():
        db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
        try:
            with db.transaction():
                db.set_kill_switch(False, "")
        finally:
            db.close()
    _audit_event(loaded, paths, "resume", {"source": "cli", "reason": reason})
    print("kill-switch latch cleared; trading resumes at the next start")
    return exit_codes.OK


def cmd_status(loaded: LoadedConfig, as_json: bool) -> int:
    cfg = loaded.config
    paths = cfg.paths.resolved()
    out: dict[str, Any] = {
        "mode": cfg.mode.value,
        "config_hash": loaded.config_hash,
        "running_pid": _running_pid(paths),
        "kill_switch_file": paths.kill_switch.exists(),
    }
    if paths.state_db.exists():
        db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
        try:
            st = db.load_engine_state()
            out["kill_switch_latched"] = st.kill_switch
            out["kill_reason"] = st.kill_reason
            out["regime"] = st.regime.regime.value
            out["breakers_tripped"] = sorted(n for n, b in st.breakers.items() if b.tripped)
            out["positions"] = {
                s: {"quantity": str(p.quantity), "avg_entry": str(p.avg_entry_price)}
                for s, p in sorted(db.load_positions().items())
            }
            out["open_orders"] = [
                {
                    "id": o.client_order_id,
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "status": o.status.value,
                    "amount": str(o.amount),
                    "price": str(o.price),
                }
                for o in db.load_orders(live_only=True)
            ]
            out["last_cycle_ms"] = db.kv_get("last_cycle_ms")
            out["cash"] = db.kv_get("cash")
        finally:
            db.close()
    else:
        out["state"] = "no state.db yet"
    port_file = paths.health_dir / "http_port"
    if out["running_pid"] and port_file.exists():
        out["http"] = f"http://{cfg.http.host}:{port_file.read_text().strip()}/health"
    if as_json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        for k, v in out.items():
            print(f"{k:20} {v}")
    return exit_codes.OK


def cmd_config_check(loaded: LoadedConfig) -> int:
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"config OK (hash {loaded.config_hash}); sources: {', '.join(loaded.sources) or 'defaults'}"
    )
    return exit_codes.OK


def cmd_config_show(loaded: LoadedConfig) -> int:
    print(json.dumps(redacted_dump(loaded.config), indent=2, sort_keys=True))
    return exit_codes.OK


def cmd_audit_tail(directory: Path, n: int, kinds: set[str] | None) -> int:
    for line in tail(directory, n, kinds):
        print(line)
    return exit_codes.OK


def rebuild_from_audit(directory: Path) -> tuple[Portfolio, Decimal, int]:
    """Positions and realized PnL from the fill records alone (cash is not rebuilt)."""
    pf = Portfolio(cash=Decimal(0))
    realized = Decimal(0)
    n = 0
    for rec in iter_records(directory):
        if rec.get("kind") != "fill":
            continue
        d = rec["data"]
        fill = Fill(
            fill_id=d["fill_id"],
            client_order_id=d["client_order_id"],
            symbol=d["symbol"],
            side=Side(d["side"]),
            price=Decimal(d["price"]),
            amount=Decimal(d["amount"]),
            fee=Decimal(d["fee"]),
            ts=int(d["ts"]),
            liquidity=Liquidity(d["liquidity"]),
            base_fee=Decimal(d.get("base_fee", "0")),
        )
        booking = apply_fill(pf, fill, strategy=d.get("strategy", ""))
        pf = booking.portfolio
        realized += booking.realized
        n += 1
    return pf, realized, n


def cmd_audit_replay(loaded: LoadedConfig, directory: Path) -> int:
    paths = loaded.config.paths.resolved()
    try:
        pf, realized, n = rebuild_from_audit(directory)
    except (PortfolioError, KeyError, ValueError) as exc:
        print(f"audit replay FAILED: the fill records do not add up: {exc}", file=sys.stderr)
        return exit_codes.FAILURE
    db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
    try:
        stored = db.load_positions()
        stored_realized = sum((r for r, _, _ in db.daily_pnl().values()), Decimal(0))
    finally:
        db.close()
    problems: list[str] = []
    for sym in sorted(set(stored) | set(pf.positions)):
        a, b = pf.positions.get(sym), stored.get(sym)
        if a is None or b is None:
            problems.append(
                f"{sym}: audit {'has' if a else 'lacks'} a position, state.db "
                f"{'has' if b else 'lacks'} one"
            )
        elif (a.quantity, a.avg_entry_price, a.entry_fees) != (
            b.quantity,
            b.avg_entry_price,
            b.entry_fees,
        ):
            problems.append(
                f"{sym}: audit qty={a.quantity} avg={a.avg_entry_price} vs "
                f"state.db qty={b.quantity} avg={b.avg_entry_price}"
            )
    if realized != stored_realized:
        problems.append(f"realized PnL: audit {realized} vs state.db {stored_realized}")
    if problems:
        print("audit replay MISMATCH:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return exit_codes.FAILURE
    print(
        f"audit replay OK: {n} fills, {len(pf.positions)} open position(s), realized "
        f"{realized} match state.db"
    )
    return exit_codes.OK
