"""The audit log's checks: a full `verify` against the writer's start-up check from VERIFIED.

Writes a log of N records (about 400 bytes each, 10 000 a day file) in a temporary directory,
then times `verify` over all of it, the start-up check of a writer that finds VERIFIED covering
all of it (digests only), and the same with a key.

    .venv/bin/python tools/bench_audit_verify.py [--records 200000]

Prints: records=.. mb=.. verify_s=.. verify_records_per_s=.. startup_s=.. startup_mb_per_s=..
keyed_verify_s=..
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.clock import SimClock  # noqa: E402
from infra.audit import AuditLog  # noqa: E402
from infra.audit_startup import check_before_append  # noqa: E402
from infra.audit_verify import verify  # noqa: E402

DAY0 = 1_704_067_200_000
KEY = b"bench-key-0123456789abcdef0123456789"


def write_log(directory: Path, records: int, key: bytes | None) -> None:
    clock = SimClock(DAY0)
    data = {"symbol": "BTC/USDT", "equity": Decimal("10234.56"), "reason": "x" * 200}
    with AuditLog(directory, config_hash="c" * 16, clock=clock, fsync=False, key=key) as log:
        for i in range(records):
            clock.advance(8_640)  # 10 000 records a UTC day
            log.append("cycle", {**data, "i": i})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    now = DAY0 + 400 * 86_400_000
    with tempfile.TemporaryDirectory() as tmp:
        plain, keyed = Path(tmp) / "plain", Path(tmp) / "keyed"
        write_log(plain, args.records, None)
        write_log(keyed, args.records, KEY)
        size_mb = sum(p.stat().st_size for p in plain.glob("*.jsonl")) / 1e6
        t0 = time.perf_counter()
        assert verify(plain, now_ms=now).ok
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert verify(keyed, key=KEY, now_ms=now).ok
        keyed_s = time.perf_counter() - t0
        AuditLog(plain, config_hash="c" * 16, clock=SimClock(now), fsync=False).open().close()
        t0 = time.perf_counter()
        result, _ = check_before_append(plain, None)  # VERIFIED now covers every record
        startup = time.perf_counter() - t0
        assert result.ok
    print(
        f"records={args.records} mb={size_mb:.1f} verify_s={full:.2f} "
        f"verify_records_per_s={args.records / full:.0f} startup_s={startup:.3f} "
        f"startup_mb_per_s={size_mb / startup:.0f} keyed_verify_s={keyed_s:.2f}"
    )


if __name__ == "__main__":
    main()
