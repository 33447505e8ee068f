"""A strategy file that defines its own indicator, exactly as the built-ins are defined
(docs/indicators.md), loaded with --strategy-path from outside the repository: `vigil
backtest` and the replayed daemon both compute it and make identical decisions from it."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from runner.recorder import DECISION_KINDS
from tests.integration.conftest import Workspace
from tests.integration.test_user_strategies import vigil

pytestmark = pytest.mark.integration

STRATEGY = textwrap.dedent(
    '''
    """stretch_revert: buy when the close is stretched below its recent mean."""

    from __future__ import annotations

    from collections import deque
    from collections.abc import Sequence
    from typing import Any

    from strategy.base import (
        BaseStrategy,
        Indicator,
        ProposalKind,
        Side,
        StrategyContext,
        TradeProposal,
        ref_price,
    )
    from strategy.registry import register


    class Stretch(Indicator):
        """Close over the mean close of the last N candles (current included), minus one."""

        kind = "stretch"
        __slots__ = ("closes", "total")

        def __init__(self, period: int) -> None:
            super().__init__(period)
            self.closes: deque[float] = deque()
            self.total = 0.0

        def update(self, o: float, h: float, lo: float, c: float, v: float) -> float | None:
            self.closes.append(c)
            self.total += c
            if len(self.closes) > self.period:
                self.total -= self.closes.popleft()
            if len(self.closes) < self.period:
                return None
            return c / (self.total / self.period) - 1.0


    @register("stretch_revert")
    class StretchRevert(BaseStrategy):
        """Buy closes stretched below their 12-candle mean; sell when back above it."""

        indicators = (Stretch,)

        @classmethod
        def required_features(cls, params: Any) -> frozenset[str]:
            return frozenset({"stretch:12"})

        def propose(self, ctx: StrategyContext) -> Sequence[TradeProposal]:
            out: list[TradeProposal] = []
            for symbol, pos in sorted(ctx.positions.items()):
                f = ctx.features.get(symbol)
                s = f.values.get("stretch:12") if f is not None else None
                price = ref_price(ctx, symbol)
                if pos.strategy == self.name and s is not None and s > 0 and price is not None:
                    out.append(
                        TradeProposal(
                            strategy=self.name, symbol=symbol, side=Side.SELL,
                            kind=ProposalKind.EXIT, confidence=1.0, reason="back_to_mean",
                            ref_price=price, quantity=pos.quantity, reduce_only=True,
                        )
                    )
            for symbol in ctx.eligible:
                f = ctx.features.get(symbol)
                s = f.values.get("stretch:12") if f is not None else None
                price = ref_price(ctx, symbol)
                if symbol in ctx.positions or s is None or s > -0.006 or price is None:
                    continue
                out.append(
                    TradeProposal(
                        strategy=self.name, symbol=symbol, side=Side.BUY,
                        kind=ProposalKind.ENTRY, confidence=0.8, reason="stretched",
                        ref_price=price,
                    )
                )
            return out
    '''
)


def _decisions(records: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(r["kind"], r["data"]) for r in records if r["kind"] in DECISION_KINDS]


def test_a_strategy_indicator_drives_backtest_and_daemon_alike(
    ws: Workspace, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "stretch_revert.py").write_text(STRATEGY)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    common = ("--strategy", "stretch_revert", "--strategy-path", str(mine))
    cfg = ("--config", str(ws.config))

    audit_dir = tmp_path / "bt_audit"
    report = tmp_path / "report.json"
    bt = vigil(
        ws,
        outside,
        "backtest",
        *common,
        "--data",
        str(ws.candles),
        "--output",
        str(report),
        "--audit",
        str(audit_dir),
        "--no-progress",
        *cfg,
    )
    assert bt.returncode == 0, bt.stderr[-3000:]
    backtest: list[dict[str, object]] = []
    for f in sorted(audit_dir.glob("audit-*.jsonl")):
        backtest.extend(json.loads(line) for line in f.read_text().splitlines() if line)
    rep = json.loads(report.read_text())
    assert rep["summary"]["trades"] > 0, rep["summary"]
    assert {t["strategy"] for t in rep["trades"]} == {"stretch_revert"}

    run = vigil(
        ws, outside, "run", "--replay", str(ws.candles), "--speed", "1000000000", *common, *cfg
    )
    assert run.returncode == 0, run.stderr[-3000:]
    daemon = _decisions(ws.records())
    reasons = {r["data"]["reason"] for r in ws.records() if r["kind"] == "proposal"}  # type: ignore[index]
    assert {"stretched", "back_to_mean"} <= reasons

    backtest_dec = _decisions(backtest)
    assert len(daemon) == len(backtest_dec)
    for i, (a, b) in enumerate(zip(daemon, backtest_dec, strict=True)):
        assert a == b, f"decision {i} differs:\n daemon:   {a}\n backtest: {b}"
    with sqlite3.connect(ws.state_db) as db:
        rows = db.execute("SELECT symbol, quantity FROM positions").fetchall()
    assert {s: Decimal(q) for s, q in rows} == {
        s: Decimal(q) for s, q in rep["final_positions"].items()
    }


def test_an_indicator_kind_clashing_with_a_built_in_is_refused(
    ws: Workspace, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    clash = STRATEGY.replace('kind = "stretch"', 'kind = "ema"').replace("stretch:12", "ema:12")
    (mine / "stretch_revert.py").write_text(clash)
    res = vigil(
        ws,
        tmp_path,
        "backtest",
        "--strategy",
        "stretch_revert",
        "--strategy-path",
        str(mine),
        "--data",
        str(ws.candles),
        "--no-progress",
        "--config",
        str(ws.config),
    )
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "indicator kind 'ema' is defined twice" in res.stderr
