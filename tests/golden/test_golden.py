"""A fixed multi-cycle scenario with exact decisions and PnL. If this fails after a change
that was meant to alter decisions, regenerate with tools/update_golden.py and say why."""

from __future__ import annotations

import json

import pytest

from core import candlestep
from tests.golden.scenario import EXPECTED, run_scenario


@pytest.fixture(params=["compiled", "python"])
def candle_step(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both candle steps: the compiled one (when built) and the generated Python one."""
    if request.param == "python":
        monkeypatch.setattr(candlestep, "_candlestep", None)
    elif not candlestep.AVAILABLE:
        pytest.skip("the compiled candle step was not built (no C compiler)")
    return str(request.param)


def test_golden_scenario_decisions_and_pnl_are_exact(candle_step: str) -> None:
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
