"""Operator commands: kill, resume, status, config check/show, audit verify/tail/replay."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.portfolio import PortfolioError
from infra.audit import AuditLog
from infra.audit_verify import tail
from infra.clock import LiveClock
from infra.config_loader import LoadedConfig
from infra.runtime_paths import ResolvedPaths
from infra.settings import redacted_dump
from infra.state_store import StateStore
from runner import daemon_link, exit_codes
from runner.ops_status import format_facts, path_facts, state_facts
from runner.state_guard import prior_life, state_absent
from runner.state_rebuild import rebuild_from_audit

RESUME_FILE = "RESUME"
CONFIRM_S = 5.0  # how long kill/resume wait for the daemon's /health to show the change


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _audit_event(
    loaded: LoadedConfig, paths: ResolvedPaths, kind: str, data: Mapping[str, Any]
) -> None:
    with AuditLog(paths.audit_dir, config_hash=loaded.config_hash, clock=LiveClock()) as log:
        log.append(kind, data, sync=True)


def _who(replay: bool) -> str:
    return "replay daemon" if replay else "daemon"


def _not_running(loaded: LoadedConfig, paths: ResolvedPaths, replay: bool) -> str:
    """One sentence naming where we looked, plus a hint when the other daemon of this config
    (live or replay) is the one running."""
    text = (
        f"no vigil {_who(replay)} is running for config {loaded.config_dir} "
        f"(no live process holds {paths.lock_file})"
    )
    other = daemon_link.locked_pid(loaded.paths(replay=not replay))
    if other is not None:
        flag = "without --replay" if replay else "with --replay"
        text += f"; a {_who(not replay)} runs as pid {other}: run the command {flag}"
    return text


def cmd_kill(loaded: LoadedConfig, reason: str, replay: bool = False) -> int:
    paths = loaded.paths(replay=replay)
    paths.kill_switch.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(paths.kill_switch, reason.strip() + "\n")
    found = daemon_link.find(paths, loaded.config.http)
    if found is None:
        if state_absent(paths.state_db) and prior_life(paths):
            # A lost state.db must not be recreated here (the daemon would then start on it
            # as if nothing was lost); the file alone halts the next start.
            _audit_event(loaded, paths, "kill_switch", {"reason": reason, "source": "cli"})
            print(
                f"{_not_running(loaded, paths, replay)}. Kill file written: "
                f"{paths.kill_switch}; state.db at {paths.state_db} is lost, so nothing was "
                "latched there: the kill file alone keeps the next start halted.",
                file=sys.stderr,
            )
            return exit_codes.NOT_RUNNING
        # Latch it in the state so the next start stays halted, then say nobody was halted.
        db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
        try:
            with db.transaction():
                db.set_kill_switch(True, reason)
        finally:
            db.close()
        _audit_event(loaded, paths, "kill_switch", {"reason": reason, "source": "cli"})
        print(
            f"{_not_running(loaded, paths, replay)}. Kill file written: {paths.kill_switch}; "
            f"latched in {paths.state_db}, so the next start stays halted until `vigil resume`.",
            file=sys.stderr,
        )
        return exit_codes.NOT_RUNNING
    health = daemon_link.wait_for(
        paths, loaded.config.http, found.pid, lambda h: h.get("kill_switch") is True, CONFIRM_S
    )
    if health is None:
        print(
            f"kill file written: {paths.kill_switch}, but vigil (pid {found.pid}) did not confirm "
            f"the halt on /health within {CONFIRM_S:g} s{_no_http(loaded)}; check `vigil status` "
            "and its log",
            file=sys.stderr,
        )
        return exit_codes.FAILURE
    print(
        f"vigil (pid {found.pid}) HALTED: /health shows kill_switch true, trading_state "
        f"{health.get('trading_state')}; open orders are canceled. Kill file {paths.kill_switch}; "
        "latched until `vigil resume`."
    )
    return exit_codes.OK


def _no_http(loaded: LoadedConfig) -> str:
    if loaded.config.http.enabled:
        return ""
    return " (http.enabled is false, so it cannot be asked)"


def cmd_resume(
    loaded: LoadedConfig, reason: str = "operator resume via CLI", replay: bool = False
) -> int:
    paths = loaded.paths(replay=replay)
    try:
        paths.kill_switch.unlink()
        removed = f"; kill file {paths.kill_switch} removed"
    except FileNotFoundError:
        removed = ""
    found = daemon_link.find(paths, loaded.config.http)
    if found is None:
        if state_absent(paths.state_db):
            print(
                f"{_not_running(loaded, paths, replay)}, and there is no state at "
                f"{paths.state_db}: nothing to re-arm{removed}.",
                file=sys.stderr,
            )
            return exit_codes.NOT_RUNNING
        db = StateStore.open(paths.state_db, quarantine_dir=paths.quarantine_dir)
        try:
            with db.transaction():
                db.set_kill_switch(False, "")
        finally:
            db.close()
        _audit_event(loaded, paths, "resume", {"source": "cli", "reason": reason})
        print(
            f"{_not_running(loaded, paths, replay)}. Kill-switch latch cleared in "
            f"{paths.state_db}{removed}; the next start trades.",
            file=sys.stderr,
        )
        return exit_codes.NOT_RUNNING
    _atomic_write(paths.data_dir / RESUME_FILE, reason.strip() + "\n")
    health = daemon_link.wait_for(
        paths, loaded.config.http, found.pid, lambda h: h.get("kill_switch") is False, CONFIRM_S
    )
    if health is None:
        print(
            f"resume requested ({paths.data_dir / RESUME_FILE}{removed}), but vigil "
            f"(pid {found.pid}) did not confirm on /health within {CONFIRM_S:g} s"
            f"{_no_http(loaded)}; check `vigil status` and its log",
            file=sys.stderr,
        )
        return exit_codes.FAILURE
    print(
        f"vigil (pid {found.pid}) re-armed: /health shows kill_switch false{removed}; "
        "trading resumes at its next cycle."
    )
    return exit_codes.OK


def cmd_status(loaded: LoadedConfig, as_json: bool, replay: bool = False) -> int:
    paths = loaded.paths(replay=replay)
    found = daemon_link.find(paths, loaded.config.http)
    facts = daemon_link.status(found) if found is not None else None
    if facts is not None:
        facts = {"running": True, **facts}
        if facts.get("config_hash") != loaded.config_hash:
            facts["note"] = (
                f"this command loaded config hash {loaded.config_hash} from "
                f"{loaded.config_dir}; the daemon runs {facts.get('config_hash')} (its "
                "environment differs, or the files changed since it started)"
            )
        pid = found.pid if found is not None else "?"
        _print_status(facts, as_json, f"vigil {_who(replay)} running, pid {pid}:")
        return exit_codes.OK
    disk = _disk_facts(paths)
    if found is not None:
        headline = (
            f"vigil (pid {found.pid}) holds {paths.lock_file} but does not answer on HTTP"
            f"{_no_http(loaded) or ' (still starting?)'}; what is on disk, not its live state:"
        )
        _print_status({"running": True, "pid": found.pid, **disk}, as_json, headline)
        return exit_codes.FAILURE
    headline = f"{_not_running(loaded, paths, replay)}; what is on disk:"
    _print_status({"running": False, **disk}, as_json, headline)
    return exit_codes.NOT_RUNNING


def _disk_facts(paths: ResolvedPaths) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "disk", "kill_file_present": paths.kill_switch.exists()}
    if not state_absent(paths.state_db):
        db = StateStore.open_readonly(paths.state_db, quarantine_dir=paths.quarantine_dir)
        try:
            last = db.kv_get("last_cycle_ms")
            out["unknown_holdings"] = db.kv_get("unknown_holdings") or {}
            out.update(
                state_facts(
                    db.load_engine_state(),
                    db.load_positions(),
                    db.load_orders(live_only=True),
                    cash=db.kv_get("cash"),
                    last_cycle_ms=int(last) if last is not None else None,
                )
            )
        finally:
            db.close()
    else:
        out["state"] = f"no state in {paths.state_db} (missing or empty)"
    out["paths"] = path_facts(paths)
    return out


def _print_status(facts: Mapping[str, Any], as_json: bool, headline: str) -> None:
    if as_json:
        print(json.dumps(facts, indent=2, sort_keys=True))
        return
    print(headline)
    print(format_facts(facts))
    if facts.get("note"):
        print(f"note: {facts['note']}")
    if facts.get("source") == "disk":
        extra = "kill file present" if facts.get("kill_file_present") else "no kill file"
        print(f"{'on disk':18} {facts.get('state', 'state.db')}; {extra}")


def cmd_config_check(loaded: LoadedConfig) -> int:
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"config OK (hash {loaded.config_hash}); sources: {', '.join(loaded.sources) or 'defaults'}"
    )
    print(
        f"data dir {loaded.paths().data_dir} (replays: {loaded.paths(replay=True).data_dir}); "
        f"relative paths are taken from {loaded.base_dir}"
    )
    return exit_codes.OK


def cmd_config_show(loaded: LoadedConfig) -> int:
    print(json.dumps(redacted_dump(loaded.config), indent=2, sort_keys=True))
    return exit_codes.OK


# Every record kind vigil writes (docs/audit.md lists them; a test checks the sources).
AUDIT_KINDS = frozenset(
    {
        "config_loaded", "cycle", "proposal", "verdict", "order_intent", "order_ack", "fill",
        "cancel", "breaker_trip", "breaker_clear", "kill_switch", "resume", "shutdown",
        "reconcile", "bad_tick", "audit_recovered", "shadow_order", "shadow_fill",
        "shadow_evicted", "cycle_error", "exits_only", "exits_only_clear", "clock_refused",
        "symbol_banned", "state_fresh", "state_rebuilt", "flatten_request", "flatten_step",
        "flatten_result", "integrity_check", "fast_exit",
    }
)  # fmt: skip


def check_audit_dir(directory: Path) -> None:
    """A missing or non-directory audit path is a wrong argument, not an empty log."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise ConfigError(
            f"audit directory {directory} {what}; pass --dir with the audit directory, or "
            "--replay for the replay daemon's log (<data_dir>/replay/audit)"
        )


def check_kinds(kinds: list[str] | None) -> set[str] | None:
    if not kinds:
        return None
    unknown = sorted(set(kinds) - AUDIT_KINDS)
    if unknown:
        raise ConfigError(
            f"--kind {', '.join(unknown)}: unknown record kind; known kinds: "
            + ", ".join(sorted(AUDIT_KINDS))
        )
    return set(kinds)


def cmd_audit_tail(directory: Path, n: int, kinds: set[str] | None) -> int:
    for line in tail(directory, n, kinds):
        print(line)
    return exit_codes.OK


def cmd_audit_replay(loaded: LoadedConfig, directory: Path, replay: bool = False) -> int:
    paths = loaded.paths(replay=replay)
    try:
        pf, realized, n = rebuild_from_audit(directory)
    except (PortfolioError, KeyError, ValueError) as exc:
        print(f"audit replay FAILED: the fill records do not add up: {exc}", file=sys.stderr)
        return exit_codes.FAILURE
    db = StateStore.open_readonly(paths.state_db, quarantine_dir=paths.quarantine_dir)
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
