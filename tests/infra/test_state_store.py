from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from core.clock import SimClock
from core.errors import StateCorrupted
from core.models import (
    Balance,
    BreakerState,
    EngineState,
    EquityMarks,
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Regime,
    RegimeState,
    Side,
)
from infra.state_schema import MIGRATIONS, Migration
from infra.state_store import (
    NotAStateDatabase,
    StateQuarantined,
    StateStore,
    StateUnavailable,
    StateVersionTooNew,
)

TINY = Decimal("0.00000001")
BIG = Decimal("123456789.123456789")
# 2024-01-02T03:04:05Z
T0 = 1_704_164_645_000


def open_file(
    tmp_path: Path,
    *,
    clock: SimClock | None = None,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> StateStore:
    return StateStore.open(
        tmp_path / "state.db",
        quarantine_dir=tmp_path / "quarantine",
        clock=clock,
        migrations=migrations,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore.open(":memory:", quarantine_dir=tmp_path / "quarantine")
    yield s
    s.close()


POSITION = Position("BTC/USDT", TINY, BIG, Decimal("0.10"), T0, Decimal("1E+9"), "ema_cross")
# Every field set away from its default, with awkward Decimals (negative zero, exponents).
ORDER = Order(
    "vg-1", "ETH/USDT", Side.SELL, OrderType.LIMIT, BIG, TINY, OrderStatus.PARTIAL, T0, T0 + 5,
    Decimal("1.50"), Decimal("2.000"), Decimal("-0E-8"), "x-99", "breakout", True, True, "tp",
)  # fmt: skip


def make_position(symbol: str = "BTC/USDT", **kw: Any) -> Position:
    return replace(POSITION, symbol=symbol, **kw)


def make_order(cid: str = "vg-1", **kw: Any) -> Order:
    return replace(ORDER, client_order_id=cid, **kw)


def make_fill(fid: str, ts: int = T0, symbol: str = "BTC/USDT") -> Fill:
    return Fill(
        fill_id=fid,
        client_order_id="vg-1",
        symbol=symbol,
        side=Side.BUY,
        price=BIG,
        amount=TINY,
        fee=Decimal("0.0000000100"),
        ts=ts,
        liquidity=Liquidity.MAKER,
    )


def sql(path: Path, statement: str) -> list[tuple[object, ...]]:
    """Look at the file with a plain sqlite3 connection, the way an operator would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(statement).fetchall()
    finally:
        conn.close()


def full_engine_state() -> EngineState:
    return EngineState(
        regime=RegimeState(
            regime=Regime.BEAR, candidate=Regime.CRASH, candidate_count=2, since_ms=T0
        ),
        breakers=MappingProxyType(
            {
                "api_errors": BreakerState("api_errors", True, T0, T0 + 1, "5 errors in 60 s"),
                "drawdown": BreakerState("drawdown"),
            }
        ),
        cooldowns=MappingProxyType({"BTC/USDT": T0 + 60_000, "ETH/USDT": T0}),
        bans=MappingProxyType({"LUNA/USDT": T0 + 86_400_000}),
        kill_switch=True,
        kill_reason="operator: vigil kill",
        marks=EquityMarks(
            hwm=BIG,
            day_start_ms=T0 - 11_045_000,
            day_start_equity=TINY,
            week_start_ms=T0 - 97_445_000,
            week_start_equity=Decimal("10000.00"),
        ),
    )


def fill_with_data(s: StateStore) -> None:
    s.save_position(make_position())
    s.upsert_order(make_order())
    for i in range(400):
        s.record_fill(make_fill(f"f{i:05d}", ts=T0 + i))
    s.add_daily_pnl(T0, BIG, TINY)
    s.save_engine_state(full_engine_state())


# -- round trips ------------------------------------------------------------------------------


def test_position_round_trip_update_and_delete(store: StateStore) -> None:
    p = make_position()
    store.save_position(p)
    store.save_position(make_position("ETH/USDT", quantity=Decimal("5E+3")))
    loaded = store.load_positions()
    assert loaded["BTC/USDT"] == p
    assert str(loaded["BTC/USDT"].quantity) == str(TINY)
    assert loaded["ETH/USDT"].quantity == Decimal("5E+3")

    moved = make_position(quantity=BIG, peak_price=BIG)
    store.save_position(moved)
    assert store.load_positions()["BTC/USDT"] == moved
    store.delete_position("BTC/USDT")
    assert list(store.load_positions()) == ["ETH/USDT"]


def test_order_round_trip_every_field(store: StateStore) -> None:
    o = make_order()
    store.upsert_order(o)
    got = store.get_order("vg-1")
    assert got == o
    assert got is not None and str(got.fee) == "-0E-8" and str(got.filled) == "1.50"

    market = make_order("vg-2", order_type=OrderType.MARKET, price=None, post_only=False)
    store.upsert_order(market)
    assert store.get_order("vg-2") == market
    assert store.get_order("missing") is None

    done = make_order(status=OrderStatus.FILLED, filled=BIG, updated_ms=T0 + 9)
    store.upsert_order(done)
    assert store.get_order("vg-1") == done


def test_load_orders_order_and_live_filter(store: StateStore) -> None:
    store.upsert_order(make_order("b", created_ms=T0 + 1, status=OrderStatus.OPEN))
    store.upsert_order(make_order("a", created_ms=T0 + 1, status=OrderStatus.CANCELED))
    store.upsert_order(make_order("z", created_ms=T0, status=OrderStatus.NEW))
    store.upsert_order(make_order("c", created_ms=T0 + 2, status=OrderStatus.PARTIAL))
    store.upsert_order(make_order("d", created_ms=T0 + 3, status=OrderStatus.REJECTED))
    assert [o.client_order_id for o in store.load_orders()] == ["z", "a", "b", "c", "d"]
    assert [o.client_order_id for o in store.load_orders(live_only=True)] == ["z", "b", "c"]


def test_record_fill_is_idempotent_and_filters(store: StateStore) -> None:
    f = make_fill("f1", ts=T0 + 10)
    assert store.record_fill(f) is True
    assert store.record_fill(f) is False
    assert store.record_fill(make_fill("f0", ts=T0 + 10)) is True
    assert store.record_fill(make_fill("f2", ts=T0, symbol="ETH/USDT")) is True
    assert store.load_fills() == [make_fill("f2", T0, "ETH/USDT"), make_fill("f0", T0 + 10), f]
    assert [x.fill_id for x in store.load_fills(since_ms=T0 + 10)] == ["f0", "f1"]
    assert [x.fill_id for x in store.load_fills(symbol="ETH/USDT")] == ["f2"]
    assert store.load_fills(since_ms=T0 + 11, symbol="BTC/USDT") == []
    assert store.load_fills()[0].fee == Decimal("0.0000000100")


def test_daily_pnl_accumulates_exactly(store: StateStore) -> None:
    store.add_daily_pnl(T0, BIG, TINY)
    store.add_daily_pnl(T0, Decimal("-0.123456789"), TINY, trades=2)
    store.add_daily_pnl(0, Decimal("1"), Decimal("0"))
    assert store.daily_pnl() == {
        0: (Decimal(1), Decimal(0), 1),
        T0: (Decimal("123456789.000000000"), Decimal("0.00000002"), 3),
    }


def test_kv_round_trips_json_and_decimals(store: StateStore) -> None:
    value = {"equity": BIG, "tiny": [TINY, 1, 2.5, None, True], "name": "x", "n": {"d": TINY}}
    store.kv_set("cash", value)
    assert store.kv_get("cash") == value
    assert str(store.kv_get("cash")["tiny"][0]) == "1E-8"
    store.kv_set("cash", 3)
    assert store.kv_get("cash") == 3
    assert store.kv_get("absent", default="d") == "d"
    store.kv_delete("cash")
    assert store.kv_get("cash") is None


def test_kv_refuses_reserved_keys_and_bad_values(store: StateStore) -> None:
    with pytest.raises(ValueError, match="set_kill_switch"):
        store.kv_set("kill_switch", {"on": False, "reason": ""})
    with pytest.raises(TypeError, match="JSON data or Decimal"):
        store.kv_set("x", object())
    with pytest.raises(ValueError, match="finite"):
        store.kv_set("x", Decimal("NaN"))


def test_non_finite_decimal_is_refused_with_field_name(store: StateStore) -> None:
    with pytest.raises(ValueError, match=r"Position\.quantity"):
        store.save_position(make_position(quantity=Decimal("Infinity")))
    assert store.load_positions() == {}


def test_balances_snapshot_replaces(store: StateStore) -> None:
    first = {"BTC": Balance("BTC", TINY, BIG), "USDT": Balance("USDT", Decimal("10.00"))}
    store.save_balances(first)
    assert store.load_balances() == first
    store.save_balances({"ETH": Balance("ETH", BIG)})
    assert store.load_balances() == {"ETH": Balance("ETH", BIG)}
    with pytest.raises(ValueError, match="holds a Balance for"):
        store.save_balances({"BTC": Balance("ETH", BIG)})


def test_engine_state_round_trip_full_and_empty(store: StateStore) -> None:
    assert store.load_engine_state() == EngineState()
    state = full_engine_state()
    store.save_engine_state(state)
    assert store.load_engine_state() == state
    assert store.kill_switch() == (True, "operator: vigil kill")

    store.save_engine_state(EngineState())
    assert store.load_engine_state() == EngineState()
    assert store.kill_switch() == (False, "")


def test_kill_switch_and_engine_state_share_the_latch(store: StateStore) -> None:
    store.save_engine_state(EngineState())
    store.set_kill_switch(True, "drawdown 12%")
    loaded = store.load_engine_state()
    assert (loaded.kill_switch, loaded.kill_reason) == (True, "drawdown 12%")


# -- transactions ---------------------------------------------------------------------------


def test_transaction_rolls_back_everything_on_error(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.save_position(make_position())
        store.upsert_order(make_order())
        store.record_fill(make_fill("f1"))
        store.add_daily_pnl(T0, BIG, TINY)
        store.save_engine_state(full_engine_state())
        store.kv_set("last_cycle_ms", T0)
        raise RuntimeError("cycle failed")
    assert store.load_positions() == {}
    assert store.load_orders() == []
    assert store.load_fills() == []
    assert store.daily_pnl() == {}
    assert store.load_engine_state() == EngineState()
    assert store.kv_get("last_cycle_ms") is None


def test_nested_transaction_undoes_only_the_inner_block(store: StateStore) -> None:
    with store.transaction():
        store.save_position(make_position())
        try:
            with store.transaction():
                store.save_position(make_position("ETH/USDT"))
                raise KeyError("inner")
        except KeyError:
            pass
        store.record_fill(make_fill("f1"))
    assert list(store.load_positions()) == ["BTC/USDT"]
    assert [f.fill_id for f in store.load_fills()] == ["f1"]
    # The store is usable again after both blocks.
    with store.transaction():
        store.delete_position("BTC/USDT")
    assert store.load_positions() == {}


# -- files, reopen, WAL -----------------------------------------------------------------------


def test_reopen_keeps_everything_in_wal_mode(tmp_path: Path) -> None:
    s = open_file(tmp_path)
    with s.transaction():
        fill_with_data(s)
        s.save_balances({"USDT": Balance("USDT", BIG, TINY)})
        s.kv_set("audit_head", {"seq": 7, "hash": "ab" * 32})
    s.close()
    s.close()  # idempotent
    wal = tmp_path / "state.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "close() checkpoints the WAL"
    assert sql(tmp_path / "state.db", "PRAGMA journal_mode") == [("wal",)]

    with open_file(tmp_path) as again:
        assert again.load_positions() == {"BTC/USDT": make_position()}
        assert again.get_order("vg-1") == make_order()
        assert len(again.load_fills()) == 400
        assert again.daily_pnl() == {T0: (BIG, TINY, 1)}
        assert again.load_engine_state() == full_engine_state()
        assert again.load_balances() == {"USDT": Balance("USDT", BIG, TINY)}
        assert again.kv_get("audit_head") == {"seq": 7, "hash": "ab" * 32}
        assert again.schema_version() == len(MIGRATIONS)


def test_uncheckpointed_wal_survives_a_crash(tmp_path: Path) -> None:
    live = tmp_path / "live"
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    s = open_file(live)
    with s.transaction():
        fill_with_data(s)
    # Copy the files while the store is still open: what a kill -9 leaves behind.
    for name in ("state.db", "state.db-wal"):
        (crashed / name).write_bytes((live / name).read_bytes())
    s.close()
    assert (crashed / "state.db-wal").stat().st_size > 0
    with open_file(crashed) as again:
        assert again.load_engine_state() == full_engine_state()
        assert len(again.load_fills()) == 400


def test_kill_switch_latch_persists_across_reopen(tmp_path: Path) -> None:
    with open_file(tmp_path) as s:
        assert s.kill_switch() == (False, "")
        s.set_kill_switch(True, "KILL_SWITCH file touched")
    with open_file(tmp_path) as s:
        assert s.kill_switch() == (True, "KILL_SWITCH file touched")
        assert s.load_engine_state().kill_switch is True
        s.set_kill_switch(False, "resumed by operator")
    with open_file(tmp_path) as s:
        assert s.kill_switch() == (False, "resumed by operator")


def test_creates_missing_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "deep" / "state.db"
    with StateStore.open(path, quarantine_dir=tmp_path / "q") as s:
        s.kv_set("k", 1)
    assert path.is_file()


# -- corruption and quarantine ----------------------------------------------------------------


def corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    assert middle > page, "the database should span several pages"
    data[middle : middle + 2048] = b"\xde\xad\xbe\xef" * 512
    path.write_bytes(bytes(data))


def assert_quarantined(tmp_path: Path, exc: StateQuarantined, original: bytes) -> None:
    db = tmp_path / "state.db"
    assert db.read_bytes() == original, "the original must be left untouched"
    assert exc.copy_dir == tmp_path / "quarantine" / "state-20240102T030405Z"
    assert (exc.copy_dir / "state.db").read_bytes() == original
    message = str(exc)
    assert str(exc.copy_dir) in message
    assert "restore" in message and "move" in message and "vigil audit replay" in message
    assert isinstance(exc, StateCorrupted)


def test_garbage_in_the_middle_is_quarantined(tmp_path: Path) -> None:
    with open_file(tmp_path) as s:
        fill_with_data(s)
    db = tmp_path / "state.db"
    corrupt_middle(db)
    original = db.read_bytes()
    with pytest.raises(StateQuarantined) as info:
        open_file(tmp_path, clock=SimClock(T0))
    assert_quarantined(tmp_path, info.value, original)
    assert "corrupted" in str(info.value)


def test_index_mismatch_only_integrity_check_sees_is_quarantined(tmp_path: Path) -> None:
    # Reads still work on this file and quick_check passes; only integrity_check compares
    # index entries with their rows.
    with open_file(tmp_path) as s:
        fill_with_data(s)
    db = tmp_path / "state.db"
    data = bytearray(db.read_bytes())
    last = data.rfind(b"f00200")
    data[last : last + 6] = b"g00200"
    db.write_bytes(bytes(data))
    original = db.read_bytes()
    with pytest.raises(StateQuarantined, match="integrity_check reported: row") as info:
        open_file(tmp_path, clock=SimClock(T0))
    assert_quarantined(tmp_path, info.value, original)


def test_non_database_file_is_quarantined_with_siblings(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    original = b"this is not a database, it is a shopping list\n" * 200
    db.write_bytes(original)
    wal = tmp_path / "state.db-wal"
    wal.write_bytes(b"stale wal bytes")
    with pytest.raises(StateQuarantined) as info:
        open_file(tmp_path, clock=SimClock(T0))
    assert_quarantined(tmp_path, info.value, original)
    assert "not a database" in str(info.value)
    assert wal.read_bytes() == b"stale wal bytes"
    copy_dir = tmp_path / "quarantine" / "state-20240102T030405Z"
    assert (copy_dir / "state.db-wal").read_bytes() == b"stale wal bytes"

    # The same damaged bytes found again are not copied a second time: the message names
    # the existing copy.
    with pytest.raises(StateQuarantined) as again:
        open_file(tmp_path, clock=SimClock(T0))
    assert again.value.copy_dir == copy_dir
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    assert db.read_bytes() == original

    # Different damage (or a different -wal) gets its own folder; nothing is overwritten.
    changed = original + b"more"
    db.write_bytes(changed)
    with pytest.raises(StateQuarantined) as third:
        open_file(tmp_path, clock=SimClock(T0))
    assert third.value.copy_dir == tmp_path / "quarantine" / "state-20240102T030405Z-2"
    assert (third.value.copy_dir / "state.db").read_bytes() == changed


# -- versions and migrations ------------------------------------------------------------------


def make_v1_file(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(MIGRATIONS[0].sql)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO positions VALUES "
        "('BTC/USDT', '1E-8', '123456789.123456789', '0.10', ?, '1E+9', 'ema_cross', NULL)",
        (T0,),
    )
    conn.close()


def test_migration_from_hand_made_v1_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    make_v1_file(db)
    extra = Migration(
        "add a note to positions",
        "ALTER TABLE positions ADD COLUMN note TEXT NOT NULL DEFAULT '';"
        "CREATE TABLE universe_snapshots (ts INTEGER PRIMARY KEY, body TEXT NOT NULL);",
    )
    with open_file(tmp_path, migrations=(*MIGRATIONS, extra)) as s:
        assert s.schema_version() == 2
        assert s.load_positions() == {"BTC/USDT": make_position()}
    assert "note" in [r[1] for r in sql(db, "PRAGMA table_info(positions)")]
    assert sql(db, "SELECT count(*) FROM universe_snapshots") == [(0,)]

    # The code without migration 2 must now refuse the file, and leave it as it is.
    before = db.read_bytes()
    with pytest.raises(StateVersionTooNew, match="Upgrade vigil") as info:
        open_file(tmp_path)
    assert "version 2" in str(info.value)
    assert db.read_bytes() == before


def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    make_v1_file(tmp_path / "state.db")
    broken = Migration("broken", "CREATE TABLE ok_table (x); INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(StateUnavailable, match=r"migration 2 \(broken\) failed"):
        open_file(tmp_path, migrations=(*MIGRATIONS, broken))
    db = tmp_path / "state.db"
    assert sql(db, "PRAGMA user_version") == [(1,)]
    assert sql(db, "SELECT name FROM sqlite_master WHERE name = 'ok_table'") == []
    with open_file(tmp_path) as s:
        assert s.schema_version() == 1
        assert s.load_positions() == {"BTC/USDT": make_position()}


def test_newer_user_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    make_v1_file(db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StateCorrupted, match="Upgrade vigil") as info:
        open_file(tmp_path)
    assert isinstance(info.value, StateVersionTooNew)
    assert not (tmp_path / "quarantine").exists()


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(NotAStateDatabase, match="not vigil's state database"):
        open_file(tmp_path)
    assert db.read_bytes() == before


def test_unreadable_row_is_reported_not_guessed(tmp_path: Path) -> None:
    with open_file(tmp_path) as s:
        s.save_position(make_position())
    sql(tmp_path / "state.db", "UPDATE positions SET quantity = 'lots'")
    with (
        open_file(tmp_path) as s,
        pytest.raises(StateCorrupted, match=r"positions row 'BTC/USDT'.*quantity"),
    ):
        s.load_positions()
