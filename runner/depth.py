"""The depth check around the pure cycle: entry candidates get their order book, and the
cycle runs again with those books."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from types import MappingProxyType

from core.config import PipelineConfig
from core.cycle import MarketSnapshot, StrategySlot, run_cycle
from core.models import CycleDecision, OrderBook, Side
from core.portfolio import Portfolio

# Levels of an entry candidate's book fetched for the depth check: the levels
# OrderBook.depth_notional counts.
DEPTH_LEVELS = 10


async def with_books(
    snapshot: MarketSnapshot,
    decision: CycleDecision,
    portfolio: Portfolio,
    config: PipelineConfig,
    strategies: Sequence[StrategySlot],
    fetch_book: Callable[[str, int], Awaitable[OrderBook]],
    timer: Callable[[], float] | None,
) -> CycleDecision:
    """The symbols risk approved an entry on get their order book, and the (pure) cycle runs
    again with those books. An entry approved only on that second run (room freed by a thin
    book) gets its book and another run, until every approved entry was judged on its book.
    `fetch_book` returns an empty book when none can be fetched, so the entry is refused
    (THIN_BOOK), never sent unchecked."""
    now_ms = snapshot.ts
    books: dict[str, OrderBook] = {}
    while True:
        want = [
            i.symbol
            for i in decision.intents
            if i.side is Side.BUY and not i.reduce_only and i.symbol not in books
        ]
        if not want:
            return decision
        for sym in want:
            books[sym] = await fetch_book(sym, now_ms)
        snapshot = replace(snapshot, books=MappingProxyType(dict(books)))
        decision = run_cycle(
            snapshot, portfolio, config, now_ms, strategies=strategies, timer=timer
        )
