"""Automatic exits through the flatten path (runner/flatten.py): auto-trim of positions grown
past their cap, and the PAPER auto-unwind on a clean stop. Both off by default (`flatten:`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.sizing import floor_to
from runner.flatten import Flattener, FlattenRequest, FlattenResult


@dataclass(frozen=True, slots=True)
class TrimRule:
    """flatten.trim_tolerance_pct: a position worth more than risk.max_asset_exposure_pct of
    equity by over `tolerance_pct` percent is sold back down to that cap."""

    max_asset_pct: Decimal
    tolerance_pct: Decimal


def trim_request(engine: Any, rule: TrimRule) -> FlattenRequest | None:
    """The trim due after the last cycle (its equity, each symbol's last close), or None."""
    d = engine.last_decision
    if d is None or d.equity <= 0:
        return None
    latest = engine.bank.latest()
    cap = d.equity * rule.max_asset_pct / 100
    keep = []
    for sym, pos in sorted(engine.portfolio.positions.items()):
        f = latest.get(sym)
        market = engine.markets.get(sym)
        if f is None or market is None or f.close <= 0:
            continue
        mark = Decimal(repr(f.close))
        if pos.quantity * mark > cap * (1 + rule.tolerance_pct / 100):
            keep.append((sym, str(floor_to(cap / mark, market.amount_increment))))
    if not keep:
        return None
    return FlattenRequest.new(
        tuple(s for s, _ in keep),
        f"auto-trim: over risk.max_asset_exposure_pct by more than {rule.tolerance_pct}%",
        keep=tuple(keep),
    )


async def paper_unwind(flattener: Flattener, timeframe_ms: int) -> FlattenResult:
    """flatten.paper_unwind_on_stop: every paper position sold, marketable at once, waiting up
    to two candles for the simulated fills."""
    wait_s = min(3600.0, max(10.0, 2 * timeframe_ms / 1000))
    req = FlattenRequest.new(
        (), "PAPER auto-unwind on stop", passive_seconds=0.0, marketable_seconds=wait_s
    )
    return await flattener.execute(req)
