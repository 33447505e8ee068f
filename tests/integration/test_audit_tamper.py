"""Tampered audit logs, from outside: `vigil audit verify` names the first bad record and
`vigil run` refuses (exit 5) without appending anything (docs/audit.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import exit_codes
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration

FAST = ("--speed", "1000000000")
KEY = "k" * 40


def replay(ws: Workspace, cycles: int = 400, env: dict[str, str] | None = None) -> str:
    res = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", str(cycles), env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


def day_files(ws: Workspace) -> list[Path]:
    return sorted(ws.audit_dir.glob("audit-*.jsonl"))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*.jsonl")}


def set_head_to_last_record(ws: Workspace) -> None:
    last_file = day_files(ws)[-1]
    rec = json.loads(lines(last_file)[-1])
    head = {"file": last_file.name, "hash": rec["hash"], "seq": rec["seq"]}
    (ws.audit_dir / "HEAD").write_text(json.dumps(head, sort_keys=True) + "\n")


def edit(ws: Workspace) -> str:
    path = day_files(ws)[0]
    body = lines(path)
    rec = json.loads(body[5])
    rec["data"]["tampered"] = True
    body[5] = json.dumps(rec) + "\n"
    path.write_text("".join(body))
    return f"{path.name} line 6 (seq {rec['seq']}): hash mismatch"


def delete(ws: Workspace) -> str:
    path = day_files(ws)[0]
    body = lines(path)
    del body[5]
    path.write_text("".join(body))
    return f"{path.name} line 6 (seq 7): seq gap: expected 6, found 7"


def reorder(ws: Workspace) -> str:
    path = day_files(ws)[0]
    body = lines(path)
    body[5], body[6] = body[6], body[5]
    path.write_text("".join(body))
    return f"{path.name} line 6 (seq 7): out of order"


def truncate_and_rewrite_head(ws: Workspace) -> str:
    path = day_files(ws)[-1]
    body = lines(path)
    path.write_text("".join(body[:-5]))
    set_head_to_last_record(ws)
    return "truncated: checkpoint seq"


def drop_newest_day_file(ws: Workspace) -> str:
    day_files(ws)[-1].unlink()
    set_head_to_last_record(ws)
    return "truncated: checkpoint seq"


def move_record_to_older_day(ws: Workspace) -> str:
    older, newer = day_files(ws)[-2:]
    moved, *rest = lines(newer)
    older.write_text("".join(lines(older)) + moved)
    newer.write_text("".join(rest))
    seq = json.loads(moved)["seq"]
    return f"{older.name} line {len(lines(older))} (seq {seq}): record of "


def empty_future_day_file(ws: Workspace) -> str:
    (ws.audit_dir / "audit-2030-01-01.jsonl").write_text("")
    return "audit-2030-01-01.jsonl (expected seq"


TAMPERS: dict[str, Callable[[Workspace], str]] = {
    "edit": edit,
    "delete": delete,
    "reorder": reorder,
    "truncate-head-rewritten": truncate_and_rewrite_head,
    "newest-day-dropped": drop_newest_day_file,
    "record-moved-to-older-day": move_record_to_older_day,
    "empty-future-day-file": empty_future_day_file,
}


@pytest.mark.parametrize("how", list(TAMPERS))
def test_tampered_log_fails_verify_and_run_refuses(ws: Workspace, how: str) -> None:
    replay(ws)
    log = replay(ws, 50)  # a second run: its start verified the first run's records
    assert len(day_files(ws)) >= 2
    checkpoint = re.findall(r"audit checkpoint seq=\d+ hash=[0-9a-f]{64}", log)
    expected = TAMPERS[how](ws)
    before = snapshot(ws.audit_dir)

    verify_args = ["audit", "verify", "--replay"]
    if "truncated" in expected:
        verify_args += ["--checkpoint", checkpoint[-1].replace("audit checkpoint ", "")]
    res = ws.vigil(*verify_args)
    assert res.returncode == exit_codes.FAILURE, res.stdout
    assert "audit log FAILED at" in res.stderr and expected in res.stderr, res.stderr

    run = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", "5")
    assert run.returncode == exit_codes.AUDIT_CORRUPTED, run.stderr[-2000:]
    assert "refusing to start" in run.stderr and "Traceback" not in run.stderr
    assert "fails verification at" in run.stderr
    assert snapshot(ws.audit_dir) == before  # nothing appended, nothing rewritten


def test_unkeyed_truncation_hides_only_when_verified_is_rewritten_too(ws: Workspace) -> None:
    replay(ws)
    truncate_and_rewrite_head(ws)
    res = ws.vigil("audit", "verify", "--replay")  # VERIFIED still names the last record
    assert res.returncode == exit_codes.FAILURE and "truncated: checkpoint seq" in res.stderr
    # What docs/audit.md says: without a key or a checkpoint kept elsewhere, someone who also
    # rewrites (here: removes) VERIFIED hides the cut from verify and from the daemon's start.
    (ws.audit_dir / "VERIFIED").unlink()
    assert ws.vigil("audit", "verify", "--replay").returncode == exit_codes.OK
    run = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", "5")
    assert run.returncode == exit_codes.OK, run.stderr[-2000:]


def test_keyed_log_detects_truncation_without_checkpoints(ws: Workspace) -> None:
    env = {"VIGIL_AUDIT_KEY": KEY}
    replay(ws, env=env)
    assert '"mac":"' in day_files(ws)[-1].read_text()
    ok = ws.vigil("audit", "verify", "--replay", env=env)
    assert ok.returncode == 0 and "MACs verified from seq 1" in ok.stdout, ok.stderr
    assert KEY not in ok.stdout + ok.stderr

    truncate_and_rewrite_head(ws)
    (ws.audit_dir / "VERIFIED").unlink()  # even then, HEAD's missing MAC gives it away
    res = ws.vigil("audit", "verify", "--replay", env=env)
    assert res.returncode == exit_codes.FAILURE
    assert "HEAD (expected seq" in res.stderr and "HEAD has no MAC" in res.stderr
    wrong = ws.vigil("audit", "verify", "--replay", env={"VIGIL_AUDIT_KEY": "x" * 40})
    assert wrong.returncode == exit_codes.FAILURE and "MAC mismatch" in wrong.stderr
    # The daemon without the key refuses to append unkeyed records to a keyed chain.
    run = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", "5")
    assert run.returncode == exit_codes.AUDIT_CORRUPTED
