"""What the engine persists: two adapters of the Store port (core/ports.py).

`SqliteStore` (the daemon) writes a NEW order at once, so an order can never exist on the
exchange without a row here, and a fill at once with the position and cash it moved, so a
crash cannot book it twice; everything else is buffered for one transaction per cycle.
`MemoryStore` (backtests) keeps only what the engine reads back.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from core.clock import day_start_ms
from core.models import EngineState, Fill, Order, OrderStatus, Position
from core.portfolio import Booking, Portfolio
from infra.exchange.sim_config import SimConfig
from infra.state_store import StateStore

KV_CASH = "cash"
KV_LAST_CYCLE = "last_cycle_ms"
KV_UNKNOWN_HOLDINGS = "unknown_holdings"


def paper_wallet(sim: SimConfig, quote: str, db: StateStore) -> SimConfig:
    """A paper wallet that continues from state.db: the stored cash plus the base assets of
    the stored positions (a fresh database keeps the configured starting balances)."""
    cash = db.kv_get(KV_CASH)
    if cash is None:
        return sim
    balances = dict(sim.starting_balances)
    balances[quote] = Decimal(str(cash))
    for pos in db.load_positions().values():
        base = pos.symbol.split("/")[0]
        balances[base] = balances.get(base, Decimal(0)) + pos.quantity
    return sim.model_copy(update={"starting_balances": balances})


class MemoryStore:
    """No persistence; enough memory for the engine to find orders it placed."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.fills: list[Fill] = []

    def load_engine_state(self) -> EngineState:
        return EngineState()

    def load_positions(self) -> dict[str, Position]:
        return {}

    def load_orders(self, *, live_only: bool = False) -> list[Order]:
        return [o for o in self.orders.values() if o.status.is_live or not live_only]

    def load_fills(self) -> list[Fill]:
        return list(self.fills)

    def get_order(self, client_order_id: str) -> Order | None:
        return self.orders.get(client_order_id)

    def save_order(self, o: Order) -> None:
        self.orders[o.client_order_id] = o

    def record_fill(self, f: Fill, order: Order, booking: Booking, portfolio: Portfolio) -> None:
        self.fills.append(f)
        self.orders[order.client_order_id] = order

    def save_cycle(self, state: EngineState, portfolio: Portfolio, now_ms: int) -> None:
        return None

    def set_kill(self, on: bool, reason: str) -> None:
        return None

    def set_unknown_holdings(self, holdings: dict[str, str]) -> None:
        return None


class SqliteStore:
    def __init__(self, db: StateStore) -> None:
        self.db = db
        self._pending: list[Callable[[], None]] = []
        self._saved_positions: dict[str, Position] = db.load_positions()

    def load_engine_state(self) -> EngineState:
        return self.db.load_engine_state()

    def load_positions(self) -> dict[str, Position]:
        return self.db.load_positions()

    def load_orders(self, *, live_only: bool = False) -> list[Order]:
        return self.db.load_orders(live_only=live_only)

    def load_fills(self) -> list[Fill]:
        return self.db.load_fills()

    def get_order(self, client_order_id: str) -> Order | None:
        return self.db.get_order(client_order_id)

    def save_order(self, o: Order) -> None:
        if o.status is OrderStatus.NEW:
            # Before the order leaves: a crash after sending must still find this row.
            with self.db.transaction():
                self.db.upsert_order(o)
        else:
            self._pending.append(lambda: self.db.upsert_order(o))

    def record_fill(self, f: Fill, order: Order, booking: Booking, portfolio: Portfolio) -> None:
        # Committed at once with the position and cash it moved, before its audit record:
        # a crash later in the cycle must not leave a fill in the audit log that state.db
        # lacks (the restart would book it, and audit it, a second time).
        pending, self._pending = self._pending, []
        with self.db.transaction():
            for op in pending:
                op()
            if self.db.record_fill(f):
                self.db.add_daily_pnl(day_start_ms(f.ts), booking.realized, f.fee, 1)
            self.db.upsert_order(order)
            self._sync_positions(portfolio)
            self.db.kv_set(KV_CASH, str(portfolio.cash))

    def save_cycle(self, state: EngineState, portfolio: Portfolio, now_ms: int) -> None:
        pending, self._pending = self._pending, []
        with self.db.transaction():
            for op in pending:
                op()
            self._sync_positions(portfolio)
            self.db.save_engine_state(state)
            self.db.kv_set(KV_CASH, str(portfolio.cash))
            self.db.kv_set(KV_LAST_CYCLE, now_ms)

    def _sync_positions(self, portfolio: Portfolio) -> None:
        current = portfolio.positions
        for sym in [s for s in self._saved_positions if s not in current]:
            self.db.delete_position(sym)
        for sym, pos in current.items():
            if self._saved_positions.get(sym) != pos:
                self.db.save_position(pos)
        self._saved_positions = dict(current)

    def set_kill(self, on: bool, reason: str) -> None:
        with self.db.transaction():
            self.db.set_kill_switch(on, reason)

    def set_unknown_holdings(self, holdings: dict[str, str]) -> None:
        """What `vigil status` lists: coins on the venue the state does not know."""
        with self.db.transaction():
            self.db.kv_set(KV_UNKNOWN_HOLDINGS, holdings)
