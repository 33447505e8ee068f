"""tools/bench_intake.py keeps working and keeps its output lines (one pair, one run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "binance_spot_2024"


@pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} absent (see ../shared/data/README.md)")
def test_bench_intake_prints_one_line_per_stage(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_intake.py"), "--runs", "1", "--pairs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=True,
    ).stdout.splitlines()
    line = r"strategy={} pairs=1 stage={} candles=\d+ candles_per_s=\d+ wall_s=[\d.]+"
    expected = [
        line.format(s, stage) for s in ("rules", "ema_cross") for stage in ("deliver", "indicators")
    ]
    assert len(out) == len(expected), out
    for got, pattern in zip(out, expected, strict=True):
        assert re.fullmatch(pattern, got), got
