"""The audit log: chain, resume, tamper detection, torn-tail recovery, to_jsonable, views."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from core.clock import DAY_MS, HOUR_MS, SimClock
from core.errors import AlreadyRunning, AuditCorrupted
from core.models import (
    BreakerState,
    EngineState,
    OrderIntent,
    OrderStatus,
    OrderType,
    ProposalKind,
    RiskVerdict,
    Side,
    TradeProposal,
)
from infra.audit import AuditLog
from infra.audit_json import to_jsonable
from infra.audit_verify import (
    GENESIS_HASH,
    format_record,
    iter_records,
    record_hash,
    tail,
    verify,
)
from infra.exchange.sim_config import SimConfig

DAY0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
CFG = "0123456789abcdef"
F1, F2, F3, F4 = (f"audit-2024-01-0{d}.jsonl" for d in (1, 2, 3, 4))


def open_log(
    directory: Path, clock: Any, *, config_hash: str = CFG, fsync: bool = False
) -> AuditLog:
    return AuditLog(directory, config_hash=config_hash, clock=clock, fsync=fsync).open()


def build_chain(directory: Path, *, days: int = 3, per_day: int = 4) -> SimClock:
    """Records 1..days*per_day, `per_day` in each UTC day file, the log closed cleanly."""
    clock = SimClock(DAY0)
    with open_log(directory, clock) as log:
        for day in range(days):
            clock.advance_to(DAY0 + day * DAY_MS + 1_000)
            for i in range(per_day):
                log.append("cycle", {"day": day, "i": i, "equity": Decimal("1000.5") + i})
                clock.advance(60_000)
    return clock


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: Iterable[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def head_json(directory: Path) -> dict[str, Any]:
    head: dict[str, Any] = json.loads((directory / "HEAD").read_text())
    return head


def independent_hash(rec: dict[str, Any]) -> str:
    body = {k: v for k, v in rec.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


# --------------------------------------------------------------------------- the chain


def test_chain_spans_utc_days_and_verifies(audit_dir: Path) -> None:
    build_chain(audit_dir, days=2, per_day=5)

    assert sorted(p.name for p in audit_dir.glob("audit-*.jsonl")) == [F1, F2]
    records = [json.loads(line) for name in (F1, F2) for line in lines_of(audit_dir / name)]
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert records[0]["prev_hash"] == GENESIS_HASH
    for prev, rec in itertools.pairwise(records):
        assert rec["prev_hash"] == prev["hash"]  # including across the day boundary
    for rec in records:
        assert list(rec) == ["seq", "ts", "kind", "config_hash", "data", "prev_hash", "hash"]
        assert rec["hash"] == independent_hash(rec) == record_hash(rec)
        assert rec["config_hash"] == CFG
    assert records[0]["ts"] == DAY0 + 1_000
    assert records[5]["ts"] == DAY0 + DAY_MS + 1_000
    assert records[6]["data"] == {"day": 1, "i": 1, "equity": "1001.5"}

    result = verify(audit_dir)
    assert (result.ok, result.records, result.files, result.first_bad) == (True, 10, 2, None)
    assert result.last_hash == records[-1]["hash"]
    assert head_json(audit_dir) == {"seq": 10, "hash": records[-1]["hash"], "file": F2}
    assert result.summary().startswith("audit log OK: 10 records in 2 file(s); head seq 10")


def test_hash_rule_holds_for_awkward_text(audit_dir: Path) -> None:
    clock = SimClock(DAY0)
    awkward = {"reason": 'café ✓ "quoted"\n\ttab \\ back', "ünï": ["€", 1.5, None, True]}
    with open_log(audit_dir, clock, config_hash='cfg "with" quotes') as log:
        returned = log.append("note", awkward)
    rec = json.loads(lines_of(audit_dir / F1)[0])
    assert rec == returned
    assert rec["data"] == awkward
    assert rec["hash"] == independent_hash(rec)
    assert verify(audit_dir).ok


def test_reopen_continues_seq_and_prev_hash(audit_dir: Path) -> None:
    clock = build_chain(audit_dir)
    old_head = head_json(audit_dir)

    log = open_log(audit_dir, clock, config_hash="fedcba9876543210")
    assert log.head == (12, old_head["hash"])
    rec = log.append("config_loaded", {"source": "policy.yaml"})
    log.close()

    assert (rec["seq"], rec["prev_hash"], rec["config_hash"]) == (
        13,
        old_head["hash"],
        "fedcba9876543210",
    )
    assert json.loads(lines_of(audit_dir / F3)[-1]) == rec
    result = verify(audit_dir)
    assert (result.ok, result.records, result.files) == (True, 13, 3)


def test_clock_stepping_back_over_midnight_keeps_file_order(audit_dir: Path) -> None:
    @dataclass
    class StepClock:
        times: list[int]

        def now_ms(self) -> int:
            return self.times.pop(0)

        async def sleep(self, seconds: float) -> None:
            return None

    clock = StepClock([DAY0 + 10, DAY0 + DAY_MS + 5, DAY0 + DAY_MS - 5])
    with open_log(audit_dir, clock) as log:
        for i in range(3):
            log.append("cycle", {"i": i})

    assert len(lines_of(audit_dir / F1)) == 1
    assert [json.loads(x)["ts"] for x in lines_of(audit_dir / F2)] == [
        DAY0 + DAY_MS + 5,
        DAY0 + DAY_MS - 5,
    ]
    assert [r["seq"] for r in iter_records(audit_dir)] == [1, 2, 3]
    assert verify(audit_dir).ok


# --------------------------------------------------------------------------- tampering


def edit_value(d: Path) -> None:
    lines = lines_of(d / F2)
    edited = lines[1].replace(b'"equity":"1001.5"', b'"equity":"9001.5"')
    assert edited != lines[1]
    lines[1] = edited
    write_lines(d / F2, lines)


def delete_line(d: Path) -> None:
    lines = lines_of(d / F2)
    del lines[1]
    write_lines(d / F2, lines)


def swap_lines(d: Path) -> None:
    lines = lines_of(d / F2)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(d / F2, lines)


def delete_middle_file(d: Path) -> None:
    (d / F2).unlink()


def delete_last_file(d: Path) -> None:
    (d / F3).unlink()


def truncate_trailing(d: Path) -> None:
    write_lines(d / F3, lines_of(d / F3)[:2])


def tear_last_line(d: Path) -> None:
    lines = lines_of(d / F3)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    write_lines(d / F3, lines)


def insert_garbage(d: Path) -> None:
    lines = lines_of(d / F1)
    lines.insert(2, b"this is not json\n")
    write_lines(d / F1, lines)


def change_config_hash(d: Path) -> None:
    lines = lines_of(d / F1)
    lines[2] = lines[2].replace(CFG.encode(), b"ffffffffffffffff")
    write_lines(d / F1, lines)


def duplicate_line(d: Path) -> None:
    lines = lines_of(d / F1)
    lines.insert(2, lines[1])
    write_lines(d / F1, lines)


def delete_and_renumber(d: Path) -> None:
    """Delete seq 6 and re-seal seq 7 as seq 6: its own hash is right, its link is not."""
    lines = lines_of(d / F2)
    rec = json.loads(lines[2])
    rec["seq"] = 6
    rec["hash"] = record_hash(rec)
    lines[1:3] = [json.dumps(rec).encode() + b"\n"]
    write_lines(d / F2, lines)


def edit_head_hash(d: Path) -> None:
    head = head_json(d)
    head["hash"] = "f" * 64
    (d / "HEAD").write_text(json.dumps(head))


def delete_head(d: Path) -> None:
    (d / "HEAD").unlink()


# (tamper, file, line, seq found, seq expected, reason fragment, records verified before it)
TAMPERS: list[tuple[Callable[[Path], None], str, int, int | None, int, str, int]] = [
    (edit_value, F2, 2, 6, 6, "hash mismatch", 5),
    (delete_line, F2, 2, 7, 6, "seq gap: expected 6, found 7", 5),
    (swap_lines, F2, 2, 7, 6, "out of order: expected seq 6, found 7 (seq 6 is at line 3)", 5),
    (delete_middle_file, F3, 1, 9, 5, "seq gap: expected 5, found 9 (first line of", 4),
    (
        delete_last_file,
        F2,
        5,
        None,
        9,
        "truncated: HEAD records seq 12 but the log ends at seq 8",
        8,
    ),
    (
        truncate_trailing,
        F3,
        3,
        None,
        11,
        "truncated: HEAD records seq 12 but the log ends at seq 10",
        10,
    ),
    (tear_last_line, F3, 4, 12, 12, "torn line: no trailing newline", 11),
    (insert_garbage, F1, 3, None, 3, "not valid JSON", 2),
    (change_config_hash, F1, 3, 3, 3, "hash mismatch", 2),
    (duplicate_line, F1, 3, 2, 3, "seq does not increase: 2 after 2", 2),
    (delete_and_renumber, F2, 2, 6, 6, "prev_hash does not match previous record", 5),
    (edit_head_hash, F3, 4, 12, 12, "HEAD hash differs from record seq 12", 12),
    (delete_head, "HEAD", 0, None, 13, "HEAD anchor missing", 12),
]


@pytest.mark.parametrize(
    ("tamper", "file", "line", "seq", "expected_seq", "reason", "records"),
    TAMPERS,
    ids=[t[0].__name__ for t in TAMPERS],
)
def test_verify_names_the_first_bad_record(
    audit_dir: Path,
    tamper: Callable[[Path], None],
    file: str,
    line: int,
    seq: int | None,
    expected_seq: int,
    reason: str,
    records: int,
) -> None:
    build_chain(audit_dir)
    assert verify(audit_dir).ok
    tamper(audit_dir)

    result = verify(audit_dir)

    assert not result.ok
    bad = result.first_bad
    assert bad is not None
    assert (bad.file, bad.line, bad.seq, bad.expected_seq) == (file, line, seq, expected_seq)
    assert reason in bad.reason
    assert result.records == records
    assert result.summary().startswith(f"audit log FAILED at {file}")


def test_verify_of_empty_and_missing_directories(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    open_log(empty, SimClock(DAY0)).close()
    result = verify(empty)
    assert (result.ok, result.records, result.files) == (True, 0, 0)
    assert result.summary() == "audit log OK: empty chain, no records yet"

    missing = verify(tmp_path / "nope")
    assert not missing.ok
    assert missing.first_bad is not None and "no audit directory" in missing.first_bad.reason


# --------------------------------------------------------------------------- resuming damaged logs


TORN_TAILS = [
    b'{"seq":13,"ts":1704240000000,"kind":"cyc',  # cut mid-write
    b"\x00" * 64,  # zero-filled block after power loss
    b'{"seq":13, not json\n',  # complete line, broken content
]


@pytest.mark.parametrize("torn", TORN_TAILS, ids=["cut", "zeros", "garbage-line"])
def test_torn_tail_is_quarantined_and_recorded_on_reopen(audit_dir: Path, torn: bytes) -> None:
    clock = build_chain(audit_dir)
    original = (audit_dir / F3).read_bytes()
    with (audit_dir / F3).open("ab") as f:
        f.write(torn)
    damaged = (audit_dir / F3).read_bytes()
    assert not verify(audit_dir).ok

    clock.advance(HOUR_MS)
    with open_log(audit_dir, clock) as log:
        assert log.head[0] == 13

    copy = audit_dir / "quarantine" / f"{F3}.13.torn"
    assert copy.read_bytes() == damaged
    live = lines_of(audit_dir / F3)
    assert b"".join(live[:-1]) == original
    recovered = json.loads(live[-1])
    assert recovered["kind"] == "audit_recovered"
    assert recovered["seq"] == 13
    assert recovered["data"] == {
        "file": F3,
        "dropped_bytes": len(torn),
        "kept_bytes": len(original),
        "last_good_seq": 12,
        "quarantine_copy": f"quarantine/{F3}.13.torn",
    }
    result = verify(audit_dir)
    assert (result.ok, result.records) == (True, 13)
    assert head_json(audit_dir)["seq"] == 13

    # A second reopen finds nothing to recover.
    open_log(audit_dir, clock).close()
    assert [r["seq"] for r in iter_records(audit_dir)] == list(range(1, 14))


def test_torn_line_alone_in_a_new_day_file(audit_dir: Path) -> None:
    clock = build_chain(audit_dir)
    (audit_dir / F4).write_bytes(b'{"seq":13,"ts":17043')
    clock.advance_to(DAY0 + 3 * DAY_MS + HOUR_MS)

    open_log(audit_dir, clock).close()

    assert (audit_dir / "quarantine" / f"{F4}.13.torn").read_bytes() == b'{"seq":13,"ts":17043'
    (rec,) = [json.loads(x) for x in lines_of(audit_dir / F4)]
    assert (rec["kind"], rec["seq"], rec["data"]["kept_bytes"]) == ("audit_recovered", 13, 0)
    assert verify(audit_dir).ok


def test_reopen_refuses_when_last_record_was_edited(audit_dir: Path) -> None:
    clock = build_chain(audit_dir)
    lines = lines_of(audit_dir / F3)
    lines[-1] = lines[-1].replace(b'"equity":"1003.5"', b'"equity":"1.5"')
    write_lines(audit_dir / F3, lines)
    before = snapshot(audit_dir)

    with pytest.raises(AuditCorrupted) as caught:
        open_log(audit_dir, clock)

    message = str(caught.value)
    assert "hash mismatch" in message
    assert "vigil audit verify" in message
    assert "move the directory aside" in message
    assert snapshot(audit_dir) == before  # nothing rewritten, nothing quarantined
    assert not (audit_dir / "quarantine").exists()


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (
            lambda d: (d / F3).write_bytes((d / F3).read_bytes() + b"junk\n{torn"),
            F3 + " line 5 (expected seq 13): not valid JSON",
        ),
        (truncate_trailing, "truncated: HEAD records seq 12 but the log ends at seq 10"),
        (delete_head, "HEAD anchor missing"),
        (edit_head_hash, "HEAD hash differs from record seq 12"),
        (lambda d: (d / "HEAD").write_text("{"), "HEAD is not valid JSON"),
    ],
    ids=["two-bad-lines", "truncated", "head-missing", "head-hash", "head-garbage"],
)
def test_reopen_refuses_damage_a_crash_cannot_explain(
    audit_dir: Path, damage: Callable[[Path], None], fragment: str
) -> None:
    clock = build_chain(audit_dir)
    damage(audit_dir)
    before = snapshot(audit_dir)

    with pytest.raises(AuditCorrupted, match="vigil audit verify") as caught:
        open_log(audit_dir, clock)

    assert fragment in str(caught.value)
    assert snapshot(audit_dir) == before
    assert not verify(audit_dir).ok


def test_reopen_after_crash_with_head_behind(audit_dir: Path, tmp_path: Path) -> None:
    clock = SimClock(DAY0)
    log = open_log(audit_dir, clock)
    log.append("cycle", {"n": 1}, sync=True)
    log.append("cycle", {"n": 2})
    log.append("cycle", {"n": 3})
    # What a crash leaves behind: records on disk, HEAD still at the last sync.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name, data in snapshot(audit_dir).items():
        (crashed / name).write_bytes(data)
    log.close()
    assert head_json(crashed)["seq"] == 1
    assert verify(crashed).ok

    with open_log(crashed, clock) as resumed:
        assert resumed.head == log.head
        resumed.append("resume", {})
    assert (verify(crashed).ok, head_json(crashed)["seq"]) == (True, 4)


def test_only_one_writer_per_directory(audit_dir: Path) -> None:
    clock = SimClock(DAY0)
    first = open_log(audit_dir, clock)
    with pytest.raises(AlreadyRunning, match="already open for writing"):
        open_log(audit_dir, clock)
    first.close()
    open_log(audit_dir, clock).close()


# --------------------------------------------------------------------------- durability


def intent() -> OrderIntent:
    return OrderIntent(
        client_order_id="vg-rules-1",
        symbol="BTC/USDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        amount=Decimal("0.0125"),
        price=Decimal("42000.50"),
        strategy="rules",
        cycle_ms=DAY0,
        post_only=True,
    )


def test_sync_append_fsyncs_and_moves_head(audit_dir: Path) -> None:
    clock = SimClock(DAY0)
    log = AuditLog(audit_dir, config_hash=CFG, clock=clock)  # fsync on: the daemon's setting
    with log:
        assert head_json(audit_dir) == {"seq": 0, "hash": GENESIS_HASH, "file": ""}
        log.append("cycle", {"n": 1})
        assert head_json(audit_dir)["seq"] == 0  # plain appends leave HEAD alone

        clock.advance(1_000)
        rec = log.append("order_intent", {"intent": intent()}, sync=True)
        assert head_json(audit_dir) == {"seq": 2, "hash": rec["hash"], "file": F1}
        assert rec["data"]["intent"]["price"] == "42000.50"
        assert verify(audit_dir).ok

        log.append("order_ack", {"client_order_id": "vg-rules-1"})
        log.flush()
        assert head_json(audit_dir) == {"seq": 3, "hash": log.head[1], "file": F1}
    assert not (audit_dir / "HEAD.tmp").exists()
    assert verify(audit_dir).records == 3


def test_appends_from_threads_keep_one_chain(audit_dir: Path) -> None:
    # The daemon may run sync appends in a worker thread (asyncio.to_thread) beside the loop.
    with open_log(audit_dir, SimClock(DAY0)) as log, ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: log.append("cycle", {"i": i}, sync=i % 50 == 0), range(400)))
    result = verify(audit_dir)
    assert (result.ok, result.records) == (True, 400)
    assert sorted(r["data"]["i"] for r in iter_records(audit_dir)) == list(range(400))


def test_append_rejects_bad_input_without_side_effects(audit_dir: Path) -> None:
    log = open_log(audit_dir, SimClock(DAY0))
    log.append("cycle", {"n": 1})
    with pytest.raises(ValueError, match="bad audit record kind 'Order Intent'"):
        log.append("Order Intent", {})
    with pytest.raises(TypeError, match="must be a mapping"):
        log.append("cycle", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot record a object"):
        log.append("cycle", {"x": object()})
    assert log.head[0] == 1
    log.close()
    with pytest.raises(RuntimeError, match="CLOSED"):
        log.append("cycle", {})
    assert verify(audit_dir).records == 1


def test_head_requires_open(audit_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="open"):
        _ = AuditLog(audit_dir, config_hash=CFG, clock=SimClock(DAY0)).head


# --------------------------------------------------------------------------- to_jsonable


def test_to_jsonable_decimals_and_enums() -> None:
    assert to_jsonable(Decimal("1.50")) == "1.50"
    assert to_jsonable(Decimal("1E+2")) == "100"
    assert to_jsonable(Decimal("1E-8")) == "0.00000001"
    assert to_jsonable(Decimal("1E+60")) == "1E+60"  # spelled out it would be 61 characters
    assert to_jsonable(Decimal("NaN")) == "NaN"
    assert to_jsonable(Side.SELL) == "sell"
    assert to_jsonable(OrderStatus.FILLED) == "FILLED"
    assert to_jsonable(float("nan")) == "nan"
    assert to_jsonable([1, 2.5, "x", None, True]) == [1, 2.5, "x", None, True]


def test_to_jsonable_nested_frozen_dataclasses() -> None:
    proposal = TradeProposal(
        strategy="rules",
        symbol="ETH/USDT",
        side=Side.BUY,
        kind=ProposalKind.ENTRY,
        confidence=0.75,
        reason="breakout",
        ref_price=Decimal("2250.10"),
    )
    verdict = RiskVerdict(proposal=proposal, approved=False, reason="MAX_POSITIONS")
    assert to_jsonable(verdict) == {
        "proposal": {
            "strategy": "rules",
            "symbol": "ETH/USDT",
            "side": "buy",
            "kind": "entry",
            "confidence": 0.75,
            "reason": "breakout",
            "ref_price": "2250.10",
            "quantity": None,
            "reduce_only": False,
        },
        "approved": False,
        "reason": "MAX_POSITIONS",
        "detail": "",
        "quantity": "0",
        "price": "0",
        "notional": "0",
    }

    state = EngineState(
        breakers=MappingProxyType({"api_errors": BreakerState("api_errors", True, DAY0)}),
        cooldowns=MappingProxyType({"BTC/USDT": DAY0 + 5}),
    )
    out = to_jsonable(state)
    assert out["breakers"]["api_errors"] == {
        "name": "api_errors",
        "tripped": True,
        "tripped_ms": DAY0,
        "clear_since_ms": 0,
        "reason": "",
    }
    assert out["cooldowns"] == {"BTC/USDT": DAY0 + 5}
    assert out["regime"]["regime"] == "chop"
    assert out["marks"]["hwm"] == "0"
    json.dumps(out, allow_nan=False)  # plain JSON all the way down


def test_to_jsonable_collections_models_and_refusals() -> None:
    assert to_jsonable({"b", "a", "c"}) == ["a", "b", "c"]
    assert to_jsonable(frozenset({Decimal(2), 1})) == ["2", 1]  # mixed: canonical-JSON order
    assert to_jsonable((Side.BUY, (1, 2))) == ["buy", [1, 2]]
    assert to_jsonable({Side.BUY: 1, 5: 2, Decimal("0.5"): 3}) == {"buy": 1, "5": 2, "0.5": 3}
    config = to_jsonable(SimConfig())
    assert config["starting_balances"] == {"USDT": "10000"}
    assert config["seed"] == 42

    with pytest.raises(TypeError, match="collide"):
        to_jsonable({1: "a", "1": "b"})
    with pytest.raises(TypeError, match="as a key"):
        to_jsonable({(1, 2): "tuple key"})
    with pytest.raises(TypeError, match="cannot record a bytes"):
        to_jsonable(b"raw")
    with pytest.raises(TypeError, match="cannot record a type"):
        to_jsonable(TradeProposal)


# --------------------------------------------------------------------------- reading


def test_format_record_is_one_readable_line() -> None:
    rec = {
        "seq": 7,
        "ts": DAY0 + 3_723_456,
        "kind": "order_intent",
        "data": {
            "intent": {"symbol": "BTC/USDT", "side": "buy", "price": "42000.5"},
            "note": "two words",
            "tags": ["a", "b"],
            "empty": {},
        },
    }
    assert format_record(rec) == (
        "2024-01-01T01:02:03.456Z #7 order_intent intent.symbol=BTC/USDT intent.side=buy "
        'intent.price=42000.5 note="two words" tags=[a,b] empty={}'
    )
    long = format_record({"seq": 1, "ts": 0, "kind": "cycle", "data": {"x": "y" * 1000}})
    assert "\n" not in long and len(long) < 200


def test_iter_records_and_tail(audit_dir: Path) -> None:
    clock = build_chain(audit_dir)
    with open_log(audit_dir, clock) as log:
        log.append("fill", {"client_order_id": "vg-1", "price": Decimal("10.5")})
        log.append("cycle", {"n": 99})

    records = list(iter_records(audit_dir))
    assert [r["seq"] for r in records] == list(range(1, 15))
    assert tail(audit_dir, 3) == [format_record(r) for r in records[-3:]]
    (fill_line,) = tail(audit_dir, 5, kinds={"fill"})
    assert fill_line.endswith("#13 fill client_order_id=vg-1 price=10.5")
    assert len(tail(audit_dir, 100)) == 14
    assert tail(audit_dir, 0) == []


def test_reading_views_on_a_damaged_log(audit_dir: Path) -> None:
    build_chain(audit_dir)
    insert_garbage(audit_dir)
    with (audit_dir / F3).open("ab") as f:
        f.write(b'{"seq":13')  # the writer may be mid-line: not an error for readers

    view = tail(audit_dir, 20)
    assert f"{F1} line 3: unreadable (not valid JSON); run vigil audit verify" in view
    assert len(view) == 13
    with pytest.raises(AuditCorrupted, match=f"{F1} line 3: not valid JSON"):
        list(iter_records(audit_dir))
