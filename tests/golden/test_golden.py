"""A fixed multi-cycle scenario with exact decisions and PnL. If this fails after a change
that was meant to alter decisions, regenerate with tools/update_golden.py and say why."""

from __future__ import annotations

import json

from tests.golden.scenario import EXPECTED, run_scenario


def test_golden_scenario_decisions_and_pnl_are_exact() -> None:
    expected = json.loads(EXPECTED.read_text())
    got = json.loads(json.dumps(run_scenario(), sort_keys=True))
    # Readable parts first, so a failure says what moved before the digest does.
    assert got["cycles"] == expected["cycles"]
    assert got["decision_counts"] == expected["decision_counts"]
    assert got["intents"] == expected["intents"]
    assert got["fills"] == expected["fills"]
    assert got["trades"] == expected["trades"]
    assert got["positions"] == expected["positions"]
    assert got["final_cash"] == expected["final_cash"]
    assert got["final_equity"] == expected["final_equity"]
    assert got["realized_pnl"] == expected["realized_pnl"]
    assert got["no_trade"] == expected["no_trade"]
    assert got["decisions_sha256"] == expected["decisions_sha256"]
    assert got["fills"], "the scenario must trade to mean anything"
