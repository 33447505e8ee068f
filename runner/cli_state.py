"""`vigil state rebuild`: a lost state.db rebuilt from the audit log, shown, checked against
the venue, then written and audited. See docs/state.md ("When state.db is lost")."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.errors import AuditCorrupted, ExchangeError
from core.portfolio import PortfolioError
from infra.audit import AuditLog
from infra.audit_verify import verify
from infra.clock import LiveClock
from infra.config_loader import LoadedConfig
from infra.runtime_paths import ResolvedPaths
from infra.secrets import load_secrets
from infra.settings import Mode, VigilConfig
from infra.state_store import StateStore
from runner import exit_codes
from runner.state_guard import set_aside_leftovers, state_absent, writer_locks
from runner.state_rebuild import Rebuilt, replay_audit
from runner.store import KV_CASH, KV_LAST_CYCLE


def add_state_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    state = sub.add_parser(
        "state", help="rebuild a lost state.db from the audit log", epilog=epilog
    )
    ssub = state.add_subparsers(dest="sub", required=True, metavar="ACTION")
    rb = ssub.add_parser(
        "rebuild",
        help="rebuild state.db from the audit log, check it against the venue, write it",
        description=(
            "Rebuild positions, cost basis, realized PnL, fills, open orders, the kill latch, "
            "breakers, high-water mark, regime and the replay position from the audit log "
            "into a missing or empty state.db. Prints what it rebuilt; in PAPER and LIVE "
            "compares it with the venue and writes nothing when they differ (unless --force). "
            "The rebuild is recorded in the audit log."
        ),
        epilog=epilog,
    )
    common(rb)
    rb.add_argument("--dir", type=Path, help="audit directory (default: from config)")
    rb.add_argument(
        "--replay",
        action="store_true",
        help="rebuild the replay daemon's state (<data_dir>/replay) instead of the live one's",
    )
    rb.add_argument(
        "--dry-run", action="store_true", help="show what would be rebuilt; write nothing"
    )
    rb.add_argument(
        "--offline",
        action="store_true",
        help="skip the venue check (say, state made by a --replay run); the output says so",
    )
    rb.add_argument(
        "--force", action="store_true", help="write even when the venue check finds differences"
    )


def dispatch_state(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    return cmd_state_rebuild(
        loaded,
        args.dir,
        dry_run=args.dry_run,
        offline=args.offline,
        force=args.force,
        replay=args.replay,
    )


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def cmd_state_rebuild(
    loaded: LoadedConfig,
    directory: Path | None,
    *,
    dry_run: bool,
    offline: bool,
    force: bool,
    replay: bool = False,
) -> int:
    cfg = loaded.config
    paths = loaded.paths(replay=replay)
    audit_dir = directory or paths.audit_dir
    with writer_locks(paths):
        if not state_absent(paths.state_db):
            _err(
                f"state rebuild: {paths.state_db} already holds state; nothing was changed. "
                "Compare it with the audit log with `vigil audit replay`, or move it (and its "
                "-wal/-shm files) aside first to rebuild."
            )
            return exit_codes.FAILURE
        res = verify(audit_dir)
        if res.records == 0:
            _err(f"state rebuild: no audit records in {audit_dir}; nothing to rebuild from")
            return exit_codes.FAILURE
        if not res.ok:
            raise AuditCorrupted(
                f"state rebuild: the audit log in {audit_dir} does not verify ({res.first_bad}); "
                "a state rebuilt from it could be forged. Investigate with `vigil audit verify`."
            )
        live = cfg.mode is Mode.LIVE
        quote = cfg.universe.quote_currency
        start_cash = Decimal(0) if live else cfg.sim.starting_balances.get(quote, Decimal(0))
        try:
            rebuilt = replay_audit(audit_dir, cash=start_cash, quote=quote)
        except (PortfolioError, KeyError, ValueError) as exc:
            _err(f"state rebuild FAILED: the audit records do not add up: {exc}")
            return exit_codes.FAILURE
        for line in summary(rebuilt, live=live):
            print(line)
        if offline:
            print("venue check: SKIPPED (--offline)")
            problems: list[str] = []
        else:
            problems = asyncio.run(venue_problems(cfg, rebuilt))
            for p in problems:
                print(f"venue check: {p}")
            if not problems:
                print("venue check: OK, the venue agrees")
        if problems and not force:
            _err(
                "state rebuild: the venue check failed (see above); nothing written. Re-run with "
                "--force to write it anyway (reconcile then treats the venue as the truth for "
                "cash and smaller holdings), or start afresh with `vigil run --fresh-state`."
            )
            return exit_codes.FAILURE
        if dry_run:
            print(f"dry run: nothing written to {paths.state_db}")
            return exit_codes.OK
        write_state(paths, rebuilt, live=live)
        with AuditLog(audit_dir, config_hash=loaded.config_hash, clock=LiveClock()) as log:
            log.append(
                "state_rebuilt",
                {
                    "state_db": str(paths.state_db),
                    "from_records": rebuilt.records,
                    "fills": len(rebuilt.fills),
                    "positions": {
                        s: str(p.quantity) for s, p in sorted(rebuilt.portfolio.positions.items())
                    },
                    "realized": str(rebuilt.realized),
                    "open_orders": [o.client_order_id for o in rebuilt.open_orders()],
                    "kill_switch": rebuilt.kill[0],
                    "venue_check": "skipped" if offline else (problems or "ok"),
                    "forced": bool(problems),
                },
                sync=True,
            )
    print(f"state rebuilt into {paths.state_db}; start vigil as usual (`vigil run`)")
    return exit_codes.OK


def summary(r: Rebuilt, *, live: bool) -> list[str]:
    out = [f"rebuilt from {r.records} audit records ({len(r.fills)} fills):"]
    if not r.portfolio.positions:
        out.append("  positions: none")
    for sym, p in sorted(r.portfolio.positions.items()):
        out.append(
            f"  position {sym}: qty={p.quantity} avg_entry={p.avg_entry_price} "
            f"cost={p.cost_basis} strategy={p.strategy or '-'}"
        )
    out.append(f"  realized PnL: {r.realized} over {len(r.daily)} day(s)")
    if not live:
        out.append(f"  paper cash: {r.portfolio.cash}")
    opens = r.open_orders()
    out.append(f"  open orders: {len(opens)}")
    for o in opens:
        out.append(
            f"    {o.client_order_id} {o.symbol} {o.side.value} {o.amount} @ {o.price} "
            f"{o.status.value}"
        )
    tripped = sorted(n for n, b in r.breakers.items() if b.tripped)
    out.append(f"  kill latch: {'ENGAGED (' + r.kill[1] + ')' if r.kill[0] else 'off'}")
    out.append(f"  breakers tripped: {', '.join(tripped) or 'none'}")
    m = r.marks
    out.append(
        f"  high-water mark: {m.hwm}; day start equity {m.day_start_equity}, "
        f"week start equity {m.week_start_equity}"
    )
    out.append(f"  regime: {r.regime.regime.value if r.regime else 'unknown'}")
    out.append(f"  last cycle: {r.last_cycle_ms}")
    out.append("  not in the audit log (start empty): cooldowns, bans, trailing-stop peaks")
    return out


async def venue_problems(cfg: VigilConfig, r: Rebuilt) -> list[str]:
    """LIVE: holdings and open orders on the venue against the rebuilt ones. PAPER and
    DRY_RUN: the paper wallet is vigil's own, so the venue is asked only whether every
    position's market exists and has a price."""
    from runner.live import ccxt_exchange

    ex = ccxt_exchange(cfg, load_secrets(os.environ), LiveClock())
    try:
        markets = await ex.load_markets()
        problems = [
            f"{s}: no such market on {cfg.exchange.id}"
            for s in r.portfolio.positions
            if s not in markets
        ]
        if cfg.mode is not Mode.LIVE:
            return problems
        balances = await ex.fetch_balances()
        for sym in sorted(set(r.portfolio.positions) | _held_symbols(balances, markets, cfg)):
            pos = r.portfolio.positions.get(sym)
            mine = pos.quantity if pos is not None else Decimal(0)
            base = markets[sym].base if sym in markets else sym.split("/")[0]
            held = balances[base].total if base in balances else Decimal(0)
            if held != mine:
                problems.append(f"{sym}: rebuilt position {mine}, venue holds {held} {base}")
        remote = {o.client_order_id for o in await ex.fetch_open_orders()}
        local = {o.client_order_id for o in r.open_orders()}
        for coid in sorted(local - remote):
            problems.append(f"order {coid}: open in the audit log, not open on the venue")
        for coid in sorted(remote - local):
            problems.append(f"order {coid}: open on the venue, unknown to the audit log")
        return problems
    except ExchangeError as exc:
        return [f"venue unreachable or refused ({type(exc).__name__}: {exc})"]
    finally:
        await ex.close()


def _held_symbols(balances: Any, markets: Any, cfg: VigilConfig) -> set[str]:
    quote = cfg.universe.quote_currency
    out = set()
    for asset, bal in balances.items():
        sym = f"{asset}/{quote}"
        if asset != quote and bal.total > 0 and sym in markets:
            out.add(sym)
    return out


def write_state(paths: ResolvedPaths, r: Rebuilt, *, live: bool) -> None:
    """Into a temporary file beside state.db, then renamed over it: a crash leaves either no
    state.db or a complete one."""
    set_aside_leftovers(paths.state_db, paths.quarantine_dir)
    tmp = paths.state_db.with_name(paths.state_db.name + ".rebuild")
    for leftover in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)
    try:
        with StateStore.open(tmp, quarantine_dir=paths.quarantine_dir) as db, db.transaction():
            for pos in r.portfolio.positions.values():
                db.save_position(pos)
            for f in r.fills:
                db.record_fill(f)
            for day, (realized, fees, n) in sorted(r.daily.items()):
                db.add_daily_pnl(day, realized, fees, n)
            for o in r.orders.values():
                db.upsert_order(o)
            db.save_engine_state(r.engine_state())
            if not live:
                db.kv_set(KV_CASH, str(r.portfolio.cash))
            if r.last_cycle_ms is not None:
                db.kv_set(KV_LAST_CYCLE, r.last_cycle_ms)
        os.replace(tmp, paths.state_db)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
