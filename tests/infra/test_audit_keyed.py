"""The audit log's defences against quiet cuts: MACs, checkpoints, day-file rules, VERIFIED."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from core.clock import DAY_MS, SimClock
from core.errors import AuditCorrupted
from infra.audit import AuditLog
from infra.audit_format import Checkpoint, parse_checkpoint
from infra.audit_startup import VERIFIED_NAME
from infra.audit_verify import verify
from tests.infra.test_audit import DAY0, F1, F2, F3, build_chain, lines_of, open_log, write_lines

KEY = b"k" * 32
NOW = DAY0 + 10 * DAY_MS


def keyed_chain(directory: Path, key: bytes = KEY, days: int = 3) -> SimClock:
    clock = SimClock(DAY0)
    with AuditLog(directory, config_hash="c", clock=clock, fsync=False, key=key) as log:
        for day in range(days):
            clock.advance_to(DAY0 + day * DAY_MS + 1_000)
            for i in range(4):
                log.append("cycle", {"day": day, "i": i, "equity": Decimal(i)})
    return clock


def cut_tail_and_rewrite_head(directory: Path, drop: int = 2) -> None:
    body = lines_of(directory / F3)
    write_lines(directory / F3, body[:-drop])
    rec = json.loads(body[-drop - 1])
    head = {"file": F3, "hash": rec["hash"], "seq": rec["seq"]}
    (directory / "HEAD").write_text(json.dumps(head) + "\n")


def test_keyed_records_carry_a_mac_that_only_the_key_verifies(tmp_path: Path) -> None:
    keyed_chain(tmp_path)
    assert all(b'"mac":"' in line for line in lines_of(tmp_path / F1))
    assert "mac" in json.loads((tmp_path / "HEAD").read_text())
    res = verify(tmp_path, key=KEY, now_ms=NOW)
    assert res.ok and res.keyed_from == 1
    assert "MACs verified from seq 1" in res.summary()
    unchecked = verify(tmp_path, now_ms=NOW)
    assert unchecked.ok and "not checked (set VIGIL_AUDIT_KEY" in unchecked.summary()
    wrong = verify(tmp_path, key=b"x" * 32, now_ms=NOW)
    assert not wrong.ok and wrong.first_bad is not None
    assert (wrong.first_bad.file, wrong.first_bad.seq) == (F1, 1)
    assert "MAC mismatch" in wrong.first_bad.reason


def test_a_cut_tail_with_rewritten_head_needs_a_key_or_a_checkpoint(tmp_path: Path) -> None:
    plain, keyed = tmp_path / "plain", tmp_path / "keyed"
    build_chain(plain)
    keyed_chain(keyed)
    last = json.loads(lines_of(plain / F3)[-1])
    for d in (plain, keyed):
        cut_tail_and_rewrite_head(d)
    assert verify(plain, now_ms=NOW).ok  # undetectable without a key or a checkpoint
    res = verify(plain, checkpoints=[Checkpoint(12, last["hash"][:16])], now_ms=NOW)
    assert not res.ok and res.first_bad is not None
    assert "truncated: checkpoint seq 12 is past the end of the log (seq 10)" in str(res.first_bad)
    res = verify(keyed, key=KEY, now_ms=NOW)
    assert not res.ok and "HEAD has no MAC" in str(res.first_bad)


def test_a_checkpoint_that_differs_names_the_record(tmp_path: Path) -> None:
    build_chain(tmp_path)
    res = verify(tmp_path, checkpoints=[Checkpoint(6, "0" * 16)], now_ms=NOW)
    assert not res.ok and res.first_bad is not None
    assert (res.first_bad.file, res.first_bad.line, res.first_bad.seq) == (F2, 2, 6)
    assert "differs from checkpoint 6:0000000000000000" in res.first_bad.reason
    good = json.loads(lines_of(tmp_path / F2)[1])["hash"]
    assert verify(tmp_path, checkpoints=[Checkpoint(6, good)], now_ms=NOW).checkpoints == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12:" + "ab" * 32, Checkpoint(12, "ab" * 32)),
        ("7:0123456789ABCDEF", Checkpoint(7, "0123456789abcdef")),
        ("... INFO infra.audit: audit checkpoint seq=40 hash=" + "c" * 64 + " file=x", None),
        ("12:abc", None),
        ("0:" + "a" * 16, None),
        ("no checkpoint here", None),
    ],
)
def test_parse_checkpoint(text: str, expected: Checkpoint | None) -> None:
    if "seq=40" in text:
        expected = Checkpoint(40, "c" * 64)
    assert parse_checkpoint(text) == expected


def test_record_in_an_older_day_file_and_empty_or_future_files_fail(tmp_path: Path) -> None:
    build_chain(tmp_path)
    older, newer = lines_of(tmp_path / F1), lines_of(tmp_path / F2)
    write_lines(tmp_path / F1, [*older, newer[0]])
    write_lines(tmp_path / F2, newer[1:])
    res = verify(tmp_path, now_ms=NOW)
    assert res.first_bad is not None and (res.first_bad.file, res.first_bad.line) == (F1, 5)
    assert "record of 2024-01-02 in the file of an earlier day" in res.first_bad.reason

    fresh = tmp_path / "fresh"
    build_chain(fresh)
    (fresh / "audit-2024-01-02.jsonl").rename(fresh / "audit-2024-01-03.jsonl.keep")
    (fresh / "audit-2024-01-02.jsonl").write_bytes(b"")
    res = verify(fresh, now_ms=NOW)
    assert res.first_bad is not None and "empty day file" in res.first_bad.reason

    future = tmp_path / "future"
    build_chain(future)
    (future / "audit-2030-01-01.jsonl").write_bytes(b"")
    res = verify(future, now_ms=NOW)
    assert res.first_bad is not None and res.first_bad.file == "audit-2030-01-01.jsonl"
    assert "day file from the future" in res.first_bad.reason


def test_open_refuses_a_mid_log_edit_behind_verified_and_appends_nothing(tmp_path: Path) -> None:
    clock = build_chain(tmp_path)
    open_log(tmp_path, clock).close()  # VERIFIED now covers all 12 records
    assert json.loads((tmp_path / VERIFIED_NAME).read_text())["seq"] == 12
    body = lines_of(tmp_path / F1)
    body[1] = body[1].replace(b'"i":1', b'"i":7')
    write_lines(tmp_path / F1, body)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(AuditCorrupted, match=f"{F1} line 2 \\(seq 2\\): hash mismatch"):
        open_log(tmp_path, clock)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_open_refuses_a_cut_tail_that_verified_remembers(tmp_path: Path) -> None:
    clock = SimClock(DAY0)
    log = AuditLog(tmp_path, config_hash="c", clock=clock, fsync=False, checkpoint_every_ms=1)
    with log:
        for i in range(6):
            clock.advance(1_000)
            log.append("cycle", {"i": i}, sync=True)
    body = lines_of(tmp_path / F1)
    write_lines(tmp_path / F1, body[:-2])
    rec = json.loads(body[-3])
    head = {"file": F1, "hash": rec["hash"], "seq": rec["seq"]}
    (tmp_path / "HEAD").write_text(json.dumps(head) + "\n")
    assert verify(tmp_path, now_ms=NOW).ok
    with pytest.raises(AuditCorrupted, match="truncated: checkpoint seq 6 is past the end"):
        open_log(tmp_path, clock)


def test_unkeyed_writer_refuses_a_keyed_chain_and_a_key_can_be_adopted(tmp_path: Path) -> None:
    clock = keyed_chain(tmp_path / "keyed")
    with pytest.raises(AuditCorrupted, match="VIGIL_AUDIT_KEY is not set"):
        open_log(tmp_path / "keyed", clock)
    clock = build_chain(tmp_path / "plain")
    with AuditLog(tmp_path / "plain", config_hash="c", clock=clock, fsync=False, key=KEY) as log:
        log.append("cycle", {"i": 99})
    res = verify(tmp_path / "plain", key=KEY, now_ms=NOW)
    assert res.ok and res.keyed_from == 13
