"""Old audit days compressed by the operator (`gzip audit-YYYY-MM-DD.jsonl`): `vigil audit
verify`, `tail` and `replay` read them, the daemon continues the chain across them, and a
record edited inside a compressed day, or a damaged .gz, fails verify naming the place. The
newest day stays plain: the writer refuses to continue a compressed one (exit 5)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from runner import exit_codes
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration

FAST = ("--speed", "1000000000")


def replay(ws: Workspace, cycles: int) -> None:
    res = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", str(cycles))
    assert res.returncode == 0, res.stderr[-3000:]


def compress(path: Path) -> Path:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return gz


def test_compressed_old_days_verify_read_and_continue(ws: Workspace) -> None:
    replay(ws, 800)
    days = sorted(ws.audit_dir.glob("audit-*.jsonl"))
    assert len(days) >= 3
    plain = ws.vigil("audit", "verify", "--replay")
    assert plain.returncode == 0, plain.stderr
    tail_before = ws.vigil("audit", "tail", "--replay", "-n", "5").stdout
    for day in days[:-1]:
        compress(day)

    ok = ws.vigil("audit", "verify", "--replay")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout + ok.stderr == plain.stdout + plain.stderr  # the same records and files
    assert ws.vigil("audit", "tail", "--replay", "-n", "5").stdout == tail_before
    rep = ws.vigil("audit", "replay", "--replay")
    assert rep.returncode == 0, rep.stdout + rep.stderr

    # the daemon's start-up check walks the compressed days and continues the chain
    replay(ws, 20)
    again = ws.vigil("audit", "verify", "--replay")
    assert again.returncode == 0, again.stdout + again.stderr
    replay(ws, 5)  # and its VERIFIED shortcut accepts them on the next start

    # a record edited inside a compressed day: named by file, line and seq
    gz = sorted(ws.audit_dir.glob("audit-*.jsonl.gz"))[1]
    body = gzip.decompress(gz.read_bytes()).decode().splitlines(keepends=True)
    rec = json.loads(body[3])
    rec["data"]["tampered"] = True
    body[3] = json.dumps(rec) + "\n"
    gz.write_bytes(gzip.compress("".join(body).encode()))
    bad = ws.vigil("audit", "verify", "--replay")
    assert bad.returncode == exit_codes.FAILURE
    assert f"{gz.name} line 4 (seq {rec['seq']}): hash mismatch" in bad.stderr, bad.stderr
    run = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", "5")
    assert run.returncode == exit_codes.AUDIT_CORRUPTED, run.stderr[-2000:]


def test_a_damaged_gz_or_a_compressed_newest_day_is_said_in_one_line(ws: Workspace) -> None:
    replay(ws, 400)
    days = sorted(ws.audit_dir.glob("audit-*.jsonl"))
    gz = compress(days[0])
    raw = gz.read_bytes()
    gz.write_bytes(raw[: len(raw) // 2])  # cut in half: no gzip end marker
    bad = ws.vigil("audit", "verify", "--replay")
    assert bad.returncode == exit_codes.FAILURE
    assert f"{gz.name}" in bad.stderr and "compressed day file unreadable" in bad.stderr
    tail = ws.vigil("audit", "tail", "--replay", "-n", "100000")
    assert "Traceback" not in bad.stderr + tail.stderr
    gz.write_bytes(raw)

    # both the plain and the compressed copy of one day: ambiguous, verify says so
    days[0].write_bytes(gzip.decompress(raw))
    both = ws.vigil("audit", "verify", "--replay")
    assert both.returncode == exit_codes.FAILURE and "the day is here twice" in both.stderr
    days[0].unlink()

    newest = compress(days[-1])
    run = ws.vigil("run", "--replay", str(ws.candles), *FAST, "--max-cycles", "5")
    assert run.returncode == exit_codes.AUDIT_CORRUPTED, run.stderr[-2000:]
    assert f"newest day file {newest.name} is compressed" in run.stderr
    assert "Traceback" not in run.stderr
