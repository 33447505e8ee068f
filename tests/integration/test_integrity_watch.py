"""The periodic integrity check runs in the real daemon: an audit record edited while it runs
is found within one interval, recorded, alerted and answered with the kill switch; the API
key's issue date is on /metrics."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

from tests.integration.conftest import Workspace, wait_for


def _records(ws: Workspace) -> list[dict[str, object]]:
    try:
        return ws.records()
    except (json.JSONDecodeError, FileNotFoundError):
        return []


def flip_one_digit(path: Path, line_no: int) -> int:
    """Change one digit inside the data of line `line_no` in place (same length, so the
    daemon's appends are not disturbed); the record's seq."""
    raw = path.read_bytes()
    starts = [0] + [i + 1 for i, b in enumerate(raw) if b == 0x0A]
    start = starts[line_no]
    line = raw[start : starts[line_no + 1]]
    seq = json.loads(line)["seq"]
    at = line.index(b'"data":')
    digit = next(i for i in range(at, len(line)) if chr(line[i]).isdigit())
    new = b"7" if line[digit : digit + 1] != b"7" else b"3"
    with open(path, "r+b") as f:
        f.seek(start + digit)
        f.write(new)
    return int(seq)


def test_an_edited_audit_record_halts_trading_within_one_check(ws: Workspace) -> None:
    env = {
        "VIGIL_CHECKS__INTEGRITY_INTERVAL_MINUTES": "0.03",  # every 1.8 s
        "VIGIL_API_KEY_ISSUED": "2026-10-01",
    }
    proc = ws.start("run", "--replay", str(ws.candles), "--speed", "300", env=env)
    try:
        assert wait_for(lambda: sum(r["kind"] == "integrity_check" for r in _records(ws)) >= 1, 60)
        first = next(r for r in _records(ws) if r["kind"] == "integrity_check")
        assert first["data"]["ok"] is True, first
        port = int((ws.data / "health" / "http_port").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert "vigil_api_key_issued_timestamp_seconds 1.7908128e+09" in metrics
        # a record a few lines before the end of the newest day with some (the check reads
        # the last two day files)
        days = sorted(ws.audit_dir.glob("audit-*.jsonl"))[-2:]
        day = next(d for d in reversed(days) if d.read_bytes().count(b"\n") >= 4)
        seq = flip_one_digit(day, day.read_bytes().count(b"\n") - 3)
        assert wait_for(
            lambda: any(
                r["kind"] == "kill_switch" and r["data"]["source"] == "integrity"
                for r in _records(ws)
            ),
            20,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    failed = [r for r in _records(ws) if r["kind"] == "integrity_check" and not r["data"]["ok"]]
    assert failed and failed[0]["data"]["audit"] == f"seq {seq}: hash mismatch", failed
    kill = next(r for r in _records(ws) if r["kind"] == "kill_switch")
    assert f"seq {seq}: hash mismatch" in kill["data"]["reason"]
    assert "ALERT integrity_check [critical] vigil integrity check FAILED" in err
