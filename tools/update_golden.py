"""Regenerate the golden scenario's fixture and expected decisions.

Run this only when a change to decisions or accounting is intended, and say why in the
commit; tests/golden/test_golden.py then pins the new behaviour exactly.

    .venv/bin/python tools/update_golden.py            # rewrite expected.json
    .venv/bin/python tools/update_golden.py --candles  # also regenerate the candle CSVs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.golden.scenario import CANDLES, EXPECTED, make_candles, run_scenario  # noqa: E402


def main() -> None:
    if "--candles" in sys.argv or not CANDLES.exists():
        make_candles()
        print(f"wrote {CANDLES}")
    EXPECTED.write_text(json.dumps(run_scenario(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED}")


if __name__ == "__main__":
    main()
