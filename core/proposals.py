"""Combining every strategy's proposals into one list per cycle (the pipeline's step, not part
of the plugin API)."""

from __future__ import annotations

from collections.abc import Sequence

from core.models import ProposalKind, TradeProposal


def aggregate(proposals: Sequence[TradeProposal]) -> list[TradeProposal]:
    """Keep the highest-confidence proposal per (symbol, kind); ties go to the strategy name
    that sorts first, so the outcome never depends on dict order."""
    best: dict[tuple[str, str], TradeProposal] = {}
    for p in proposals:
        key = (p.symbol, p.kind.value)
        cur = best.get(key)
        if (
            cur is None
            or p.confidence > cur.confidence
            or (p.confidence == cur.confidence and p.strategy < cur.strategy)
        ):
            best[key] = p
    # Exits sort first; then by confidence, symbol and strategy, so order never depends on
    # the order strategies ran in.
    return sorted(
        best.values(),
        key=lambda p: (p.kind is not ProposalKind.EXIT, -p.confidence, p.symbol, p.strategy),
    )
