"""The state database's tables, as a list of schema migrations.

Migration N (1-based) takes a database from schema version N-1 to N; the version lives in
`PRAGMA user_version` and infra/state_file.py applies the steps a file lacks when it opens it.
Append new migrations; never edit or reorder a released one. docs/state.md describes the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

# "VGIL": marks the file as vigil's, so a foreign SQLite file is refused instead of migrated.
APPLICATION_ID = 0x5647494C


@dataclass(frozen=True, slots=True)
class Migration:
    description: str
    sql: str


_INITIAL_SCHEMA = f"""
PRAGMA application_id = {APPLICATION_ID};

CREATE TABLE positions (
    symbol          TEXT PRIMARY KEY,
    quantity        TEXT NOT NULL,
    avg_entry_price TEXT NOT NULL,
    entry_fees      TEXT NOT NULL,
    opened_ms       INTEGER NOT NULL,
    peak_price      TEXT NOT NULL,
    strategy        TEXT NOT NULL DEFAULT '',
    cost            TEXT
);

CREATE TABLE orders (
    client_order_id   TEXT PRIMARY KEY,
    symbol            TEXT NOT NULL,
    side              TEXT NOT NULL,
    order_type        TEXT NOT NULL,
    amount            TEXT NOT NULL,
    price             TEXT,
    status            TEXT NOT NULL,
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL,
    filled            TEXT NOT NULL,
    avg_fill_price    TEXT NOT NULL,
    fee               TEXT NOT NULL,
    exchange_order_id TEXT NOT NULL DEFAULT '',
    strategy          TEXT NOT NULL DEFAULT '',
    post_only         INTEGER NOT NULL DEFAULT 0,
    reduce_only       INTEGER NOT NULL DEFAULT 0,
    reason            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX orders_created ON orders (created_ms, client_order_id);
CREATE INDEX orders_status ON orders (status);

-- No foreign key to orders: reconcile records fills of orders placed before a cold start
-- or by hand on the venue.
CREATE TABLE fills (
    fill_id         TEXT PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    price           TEXT NOT NULL,
    amount          TEXT NOT NULL,
    fee             TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    liquidity       TEXT NOT NULL,
    base_fee        TEXT NOT NULL DEFAULT '0'
);
CREATE INDEX fills_ts ON fills (ts, fill_id);
CREATE INDEX fills_symbol_ts ON fills (symbol, ts);
CREATE INDEX fills_order ON fills (client_order_id);

CREATE TABLE daily_pnl (
    day_ms   INTEGER PRIMARY KEY,
    realized TEXT NOT NULL,
    fees     TEXT NOT NULL,
    trades   INTEGER NOT NULL
);

CREATE TABLE cooldowns (
    symbol   TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL
);

CREATE TABLE bans (
    symbol   TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL,
    reason   TEXT NOT NULL DEFAULT ''
);

CREATE TABLE breakers (
    name           TEXT PRIMARY KEY,
    tripped        INTEGER NOT NULL,
    tripped_ms     INTEGER NOT NULL,
    clear_since_ms INTEGER NOT NULL,
    reason         TEXT NOT NULL DEFAULT ''
);

CREATE TABLE balances (
    asset TEXT PRIMARY KEY,
    free  TEXT NOT NULL,
    used  TEXT NOT NULL
);

CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Append new migrations; never edit or reorder a released one.
MIGRATIONS: tuple[Migration, ...] = (Migration("initial schema", _INITIAL_SCHEMA),)
