"""SQLite state store: what the daemon remembers across restarts.

One connection, used from the event loop thread only; every method is one or a few small
statements. Decimals are stored as TEXT (`str(Decimal)`) and come back exactly, exponent and
trailing zeros included. See docs/state.md for the tables and the corruption policy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from core.clock import Clock
from core.errors import StateCorrupted
from core.models import (
    Balance,
    EngineState,
    EquityMarks,
    Fill,
    Order,
    OrderStatus,
    Position,
    Regime,
    RegimeState,
)
from infra.state_codecs import (
    BALANCES,
    BREAKERS,
    FILLS,
    ORDERS,
    POSITIONS,
    RowCodec,
    decimal_text,
    dumps,
    loads,
    stored_decimal,
    text_decimal,
)
from infra.state_file import (
    MEMORY,
    NotAStateDatabase,
    StateMissing,
    StateQuarantined,
    StateUnavailable,
    StateVersionTooNew,
    open_connection,
    open_readonly_connection,
)
from infra.state_schema import MIGRATIONS, Migration

__all__ = [
    "KV_EQUITY_MARKS",
    "KV_KILL_SWITCH",
    "KV_REGIME",
    "MEMORY",
    "NotAStateDatabase",
    "StateMissing",
    "StateQuarantined",
    "StateStore",
    "StateUnavailable",
    "StateVersionTooNew",
]

T = TypeVar("T")


# kv keys the store itself owns; kv_set refuses them so the typed API stays the only writer.
KV_KILL_SWITCH = "kill_switch"
KV_REGIME = "regime"
KV_EQUITY_MARKS = "equity_marks"
_RESERVED_KEYS = frozenset({KV_KILL_SWITCH, KV_REGIME, KV_EQUITY_MARKS})

_LIVE_STATUSES = tuple(s.value for s in OrderStatus if s.is_live)


class StateStore:
    """Build with `StateStore.open(...)`; the constructor takes an already prepared connection."""

    def __init__(
        self, *, connection: sqlite3.Connection, path: str, read_only: bool = False
    ) -> None:
        self._conn = connection
        self._path = path
        self._read_only = read_only
        self._depth = 0
        self._closed = False

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        quarantine_dir: Path,
        clock: Clock | None = None,
        migrations: tuple[Migration, ...] = MIGRATIONS,
        busy_timeout_s: float = 5.0,
    ) -> StateStore:
        """Open (creating if absent) and migrate the database at `path`.

        Raises StateQuarantined (a StateCorrupted) when the file is damaged, after copying it
        into `quarantine_dir`; StateVersionTooNew when a newer vigil wrote it.
        """
        conn = open_connection(
            path,
            quarantine_dir=quarantine_dir,
            clock=clock,
            migrations=migrations,
            busy_timeout_s=busy_timeout_s,
        )
        return cls(connection=conn, path=str(path))

    @classmethod
    def open_readonly(
        cls,
        path: Path,
        *,
        quarantine_dir: Path,
        clock: Clock | None = None,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> StateStore:
        """Open an existing database read-only (`file:...?mode=ro`): for status, audit replay
        and the other commands that only look. Raises StateUnavailable when the file is
        missing, empty or of an older schema; a damaged file is quarantined (once) and refused.
        Writing through the returned store fails."""
        conn = open_readonly_connection(
            Path(path), quarantine_dir=quarantine_dir, clock=clock, migrations=migrations
        )
        return cls(connection=conn, path=str(path), read_only=True)

    @property
    def path(self) -> str:
        return self._path

    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Fold the WAL back into the database file and close; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if self._path != MEMORY and not self._read_only:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all.

        Nested blocks become savepoints: an exception caught inside an outer block undoes
        only the inner block's writes.
        """
        depth = self._depth
        if depth == 0:
            # IMMEDIATE takes the write lock now, so a CLI writer cannot deadlock us mid-cycle.
            self._conn.execute("BEGIN IMMEDIATE")
        else:
            self._conn.execute(f"SAVEPOINT sp{depth}")
        self._depth = depth + 1
        try:
            yield
        except BaseException:
            self._depth = depth
            if depth == 0:
                self._conn.execute("ROLLBACK")
            else:
                self._conn.execute(f"ROLLBACK TO sp{depth}")
                self._conn.execute(f"RELEASE sp{depth}")
            raise
        self._depth = depth
        if depth > 0:
            self._conn.execute(f"RELEASE sp{depth}")
            return
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _corrupt(self, table: str, key: object, exc: Exception) -> StateCorrupted:
        return StateCorrupted(
            f"state database {self._path}: {table} row {key!r} holds a value vigil cannot "
            f"read ({exc}). Restore the file from a backup or move it aside, then run "
            "`vigil audit replay` to compare."
        )

    # -- positions ----------------------------------------------------------------------------

    def _load(self, codec: RowCodec[T], sql: str, params: Sequence[object] = ()) -> list[T]:
        out: list[T] = []
        for row in self._conn.execute(f"{codec.select} {sql}", params):
            try:
                out.append(codec.decode(row))
            except ValueError as exc:
                raise self._corrupt(codec.table, row[0], exc) from exc
        return out

    def save_position(self, p: Position) -> None:
        self._conn.execute(POSITIONS.upsert, POSITIONS.encode(p))

    def delete_position(self, symbol: str) -> None:
        self._conn.execute("DELETE FROM positions WHERE symbol = ?", (symbol,))

    def load_positions(self) -> dict[str, Position]:
        return {p.symbol: p for p in self._load(POSITIONS, "ORDER BY symbol")}

    # -- orders -------------------------------------------------------------------------------

    def upsert_order(self, o: Order) -> None:
        self._conn.execute(ORDERS.upsert, ORDERS.encode(o))

    def get_order(self, client_order_id: str) -> Order | None:
        found = self._load(ORDERS, "WHERE client_order_id = ?", (client_order_id,))
        return found[0] if found else None

    def load_orders(self, *, live_only: bool = False) -> list[Order]:
        """Orders by created_ms, then client order id; `live_only` keeps NEW/OPEN/PARTIAL."""
        order_by = "ORDER BY created_ms, client_order_id"
        if not live_only:
            return self._load(ORDERS, order_by)
        marks = ", ".join("?" for _ in _LIVE_STATUSES)
        return self._load(ORDERS, f"WHERE status IN ({marks}) {order_by}", _LIVE_STATUSES)

    # -- fills --------------------------------------------------------------------------------

    def record_fill(self, f: Fill) -> bool:
        """Store a fill once; False when this fill_id is already stored (reconcile re-reads)."""
        cur = self._conn.execute(f"{FILLS.insert} ON CONFLICT(fill_id) DO NOTHING", FILLS.encode(f))
        return cur.rowcount == 1

    def load_fills(self, since_ms: int | None = None, symbol: str | None = None) -> list[Fill]:
        """Fills with ts >= since_ms (when given) for `symbol` (when given), by ts, fill_id."""
        where: list[str] = []
        params: list[object] = []
        if since_ms is not None:
            where.append("ts >= ?")
            params.append(since_ms)
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        sql = ("WHERE " + " AND ".join(where)) if where else ""
        return self._load(FILLS, f"{sql} ORDER BY ts, fill_id", params)

    # -- daily pnl ----------------------------------------------------------------------------

    def add_daily_pnl(self, day_ms: int, realized: Decimal, fees: Decimal, trades: int = 1) -> None:
        """Add to the day's totals; the sums are done in Decimal, never in SQL floats."""
        realized_text = decimal_text(realized, "realized")
        fees_text = decimal_text(fees, "fees")
        with self.transaction():
            row = self._conn.execute(
                "SELECT realized, fees, trades FROM daily_pnl WHERE day_ms = ?", (day_ms,)
            ).fetchone()
            if row is not None:
                try:
                    realized_text = str(text_decimal(row[0]) + realized)
                    fees_text = str(text_decimal(row[1]) + fees)
                except InvalidOperation as exc:
                    raise self._corrupt("daily_pnl", day_ms, exc) from exc
                trades += int(row[2])
            self._conn.execute(
                "INSERT OR REPLACE INTO daily_pnl (day_ms, realized, fees, trades) "
                "VALUES (?, ?, ?, ?)",
                (day_ms, realized_text, fees_text, trades),
            )

    def daily_pnl(self) -> dict[int, tuple[Decimal, Decimal, int]]:
        out: dict[int, tuple[Decimal, Decimal, int]] = {}
        for day, realized, fees, trades in self._conn.execute(
            "SELECT day_ms, realized, fees, trades FROM daily_pnl ORDER BY day_ms"
        ):
            try:
                out[int(day)] = (text_decimal(realized), text_decimal(fees), int(trades))
            except InvalidOperation as exc:
                raise self._corrupt("daily_pnl", day, exc) from exc
        return out

    # -- kv -----------------------------------------------------------------------------------

    def kv_get(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return loads(row[0])
        except (ValueError, InvalidOperation) as exc:
            raise self._corrupt("kv", key, exc) from exc

    def kv_set(self, key: str, value: Any) -> None:
        """Store JSON data (Decimals kept exact). Keys owned by the typed API are refused."""
        if key in _RESERVED_KEYS:
            raise ValueError(
                f"kv key {key!r} belongs to the state store; use set_kill_switch or "
                "save_engine_state to change it"
            )
        self._put(key, value)

    def kv_delete(self, key: str) -> None:
        if key in _RESERVED_KEYS:
            raise ValueError(f"kv key {key!r} belongs to the state store and cannot be deleted")
        self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))

    def _put(self, key: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, dumps(value)),
        )

    # -- kill switch latch --------------------------------------------------------------------

    def set_kill_switch(self, on: bool, reason: str) -> None:
        self._put(KV_KILL_SWITCH, {"on": bool(on), "reason": reason})

    def kill_switch(self) -> tuple[bool, str]:
        data = self.kv_get(KV_KILL_SWITCH)
        if data is None:
            return False, ""
        try:
            return bool(data["on"]), str(data["reason"])
        except (KeyError, TypeError) as exc:
            raise self._corrupt("kv", KV_KILL_SWITCH, exc) from exc

    # -- engine state -------------------------------------------------------------------------

    def save_engine_state(self, state: EngineState) -> None:
        """Replace the stored engine state (cooldowns, bans and breakers tables included)."""
        for name, b in state.breakers.items():
            if b.name != name:
                raise ValueError(f"breakers key {name!r} holds the state of breaker {b.name!r}")
        r = state.regime
        m = state.marks
        with self.transaction():
            self._put(
                KV_REGIME,
                {
                    "regime": r.regime.value,
                    "candidate": None if r.candidate is None else r.candidate.value,
                    "candidate_count": r.candidate_count,
                    "since_ms": r.since_ms,
                },
            )
            self._put(
                KV_EQUITY_MARKS,
                {
                    "hwm": m.hwm,
                    "day_start_ms": m.day_start_ms,
                    "day_start_equity": m.day_start_equity,
                    "week_start_ms": m.week_start_ms,
                    "week_start_equity": m.week_start_equity,
                },
            )
            self.set_kill_switch(state.kill_switch, state.kill_reason)
            self._conn.execute("DELETE FROM cooldowns")
            self._conn.executemany(
                "INSERT INTO cooldowns (symbol, until_ms) VALUES (?, ?)",
                sorted(state.cooldowns.items()),
            )
            # EngineState keeps no ban reason; the column is there for whoever records one.
            self._conn.execute("DELETE FROM bans")
            self._conn.executemany(
                "INSERT INTO bans (symbol, until_ms, reason) VALUES (?, ?, '')",
                sorted(state.bans.items()),
            )
            self._conn.execute("DELETE FROM breakers")
            self._conn.executemany(
                BREAKERS.insert, [BREAKERS.encode(b) for _, b in sorted(state.breakers.items())]
            )

    def load_engine_state(self) -> EngineState:
        """The stored engine state; defaults (EngineState()) for anything never saved."""
        try:
            regime = self._load_regime()
            marks = self._load_marks()
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise self._corrupt("kv", "engine state", exc) from exc
        breakers = {b.name: b for b in self._load(BREAKERS, "ORDER BY name")}
        cooldowns = dict(
            self._conn.execute("SELECT symbol, until_ms FROM cooldowns ORDER BY symbol")
        )
        bans = dict(self._conn.execute("SELECT symbol, until_ms FROM bans ORDER BY symbol"))
        kill, kill_reason = self.kill_switch()
        return EngineState(
            regime=regime,
            breakers=MappingProxyType(breakers),
            cooldowns=MappingProxyType(cooldowns),
            bans=MappingProxyType(bans),
            kill_switch=kill,
            kill_reason=kill_reason,
            marks=marks,
        )

    def _load_regime(self) -> RegimeState:
        data = self.kv_get(KV_REGIME)
        if data is None:
            return RegimeState()
        candidate = data["candidate"]
        return RegimeState(
            regime=Regime(data["regime"]),
            candidate=None if candidate is None else Regime(candidate),
            candidate_count=int(data["candidate_count"]),
            since_ms=int(data["since_ms"]),
        )

    def _load_marks(self) -> EquityMarks:
        data = self.kv_get(KV_EQUITY_MARKS)
        if data is None:
            return EquityMarks()
        return EquityMarks(
            hwm=stored_decimal(data["hwm"]),
            day_start_ms=int(data["day_start_ms"]),
            day_start_equity=stored_decimal(data["day_start_equity"]),
            week_start_ms=int(data["week_start_ms"]),
            week_start_equity=stored_decimal(data["week_start_equity"]),
        )

    # -- balances -----------------------------------------------------------------------------

    def save_balances(self, balances: Mapping[str, Balance]) -> None:
        """Replace the balances snapshot with `balances`."""
        for asset, b in balances.items():
            if b.asset != asset:
                raise ValueError(f"balances key {asset!r} holds a Balance for {b.asset!r}")
        rows = [BALANCES.encode(b) for _, b in sorted(balances.items())]
        with self.transaction():
            self._conn.execute("DELETE FROM balances")
            self._conn.executemany(BALANCES.insert, rows)

    def load_balances(self) -> dict[str, Balance]:
        return {b.asset: b for b in self._load(BALANCES, "ORDER BY asset")}
