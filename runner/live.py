"""Wiring for the daemon on a real venue: the mode decides which adapter the engine gets.

LIVE   -> CcxtExchange with keys (real orders)
PAPER  -> PaperExchange: the venue's public market data, fills from the SimExchange
DRY_RUN-> DryRunExchange over PAPER: decide and record, send nothing
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.clock import Clock
from core.models import Market, Position
from core.ports import CandleFeed, Exchange
from core.universe import candidates
from infra.exchange.ccxt_exchange import CcxtExchange
from infra.exchange.ccxt_factory import make_ccxt
from infra.exchange.dry_run import DryRunExchange
from infra.exchange.paper import PaperExchange
from infra.exchange.shadow import ShadowExchange
from infra.exchange.sim import SimExchange
from infra.live_feed import ExchangeFeed
from infra.ratelimit import Budget
from infra.secrets import Secrets, require_live_credentials
from infra.settings import Mode, VigilConfig
from infra.state_store import StateStore
from infra.streams import StreamFeed, capacity
from runner.store import paper_wallet

log = logging.getLogger("vigil.live")

# Polling candles for hundreds of symbols every cycle would spend the whole request budget;
# list the symbols you trade in universe.symbols.
MAX_FEED_SYMBOLS = 60


@dataclass
class LiveParts:
    exchange: Exchange
    data: CcxtExchange
    feed: CandleFeed
    listeners: list[Any]
    stream: StreamFeed | None = None


class FeedSymbols:
    """What the feed polls: the universe's candidates, the regime index and held symbols.
    The engine tells it its markets and positions (`follow`, the engine's `on_account`)
    after start and after every cycle; before that it polls the configured symbols."""

    def __init__(self, cfg: VigilConfig, *, streams: bool = False) -> None:
        """`streams`: the candles come over the WebSocket streams (build_stream)."""
        self._cfg = cfg
        self._markets: Mapping[str, Market] = {}
        self._held: tuple[str, ...] = ()
        self._warned = False
        # Streams carry every candidate (up to the venue's documented capacity, docs/streams.md);
        # REST polling keeps to the first MAX_FEED_SYMBOLS, and says so.
        self.cap = (capacity(cfg.exchange.id) if streams else 0) or MAX_FEED_SYMBOLS

    def follow(self, markets: Mapping[str, Market], positions: Mapping[str, Position]) -> None:
        self._markets = markets
        self._held = tuple(positions)

    def __call__(self) -> Sequence[str]:
        markets = self._markets
        if not markets:
            return list(self._cfg.universe.symbols)
        cands = [s for s in candidates(self._cfg.universe, markets) if s in markets]
        if len(cands) > self.cap:
            if not self._warned:
                log.warning(
                    "%d candidate symbols; polling candles for the first %d only. List "
                    "the symbols you trade in universe.symbols.",
                    len(cands),
                    self.cap,
                )
                self._warned = True
            cands = cands[: self.cap]
        extra = [self._cfg.regime.index_symbol, *self._held]
        return cands + [s for s in extra if s not in cands and s in markets]


def ccxt_exchange(
    cfg: VigilConfig,
    secrets: Secrets,
    clock: Clock,
    *,
    notes: Callable[..., Any] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> CcxtExchange:
    """The venue as configured; credentials only in LIVE (PAPER and DRY_RUN read prices).
    `on_error(exc)` hears of every failed request to the venue."""
    live = cfg.mode is Mode.LIVE
    return CcxtExchange(
        exchange_id=cfg.exchange.id,
        clock=clock,
        rng=random.Random(),
        api_key=secrets.api_key if live else None,
        api_secret=secrets.api_secret if live else None,
        api_password=secrets.api_password if live else None,
        sandbox=cfg.exchange.sandbox,
        base_url=cfg.exchange.base_url,
        timeout_ms=cfg.exchange.timeout_ms,
        markets_refresh_s=cfg.exchange.markets_refresh_seconds,
        quote_currency=cfg.universe.quote_currency,
        budgets={
            "weight": Budget(capacity=cfg.exchange.weight_per_minute, per_seconds=60),
            "orders": Budget(capacity=cfg.exchange.orders_per_10s, per_seconds=10),
        },
        notes=notes,
        on_error=on_error,
    )


def build_live(
    cfg: VigilConfig,
    secrets: Secrets,
    clock: Clock,
    db: StateStore,
    symbols: FeedSymbols,
    record: Callable[..., Any],
    observer: Any = None,
) -> LiveParts:
    """`record(kind, data)` receives shadow-mode records (the audit log's append);
    `observer.event("api_error", kind=...)` hears of every failed request to the venue."""
    live = cfg.mode is Mode.LIVE
    if live:
        require_live_credentials(cfg, secrets)
    data = ccxt_exchange(
        cfg,
        secrets,
        clock,
        notes=record if live else None,
        on_error=None
        if observer is None
        else lambda exc: observer.event("api_error", kind=type(exc).__name__),
    )
    rest = ExchangeFeed(
        exchange=data, symbols=symbols, timeframe=cfg.timeframe, page=cfg.loop.history_candles
    )
    feed: CandleFeed = rest
    stream: StreamFeed | None = None
    if cfg.stream.enabled:
        stream = build_stream(cfg, clock, rest, symbols)
        feed = stream
    wallet = cfg.sim if live else paper_wallet(cfg.sim, cfg.universe.quote_currency, db)

    def make_sim(markets: Mapping[str, Market]) -> SimExchange:
        return SimExchange(
            markets=markets,
            config=wallet,
            rng=random.Random(wallet.seed),
            clock=clock,
            timeframe_ms=cfg.timeframe_ms,
            history_size=4,
        )

    if live and cfg.exchange.shadow:
        shadow = ShadowExchange(
            live=data, sim_factory=make_sim, clock=clock, record=record, observer=observer
        )
        return LiveParts(shadow, data, feed, [shadow.on_candle], stream)
    if live:
        return LiveParts(data, data, feed, [], stream)
    paper = PaperExchange(data=data, sim_factory=make_sim)
    exchange: Exchange = paper
    if cfg.mode is Mode.DRY_RUN:
        exchange = DryRunExchange(paper, now_ms=clock.now_ms)
    return LiveParts(exchange, data, feed, [paper.on_candle], stream)


def build_stream(
    cfg: VigilConfig, clock: Clock, rest: ExchangeFeed, symbols: FeedSymbols
) -> StreamFeed:
    """Public streams only: no keys go to the WebSocket client."""
    sc = cfg.stream
    ex = cfg.exchange
    return StreamFeed(
        rest=rest,
        exchange_id=ex.id,
        client_factory=lambda: make_ccxt(
            ex.id, sandbox=ex.sandbox, base_url=ex.base_url, timeout_ms=ex.timeout_ms, pro=True
        ),
        symbols=symbols,
        now_ms=clock.now_ms,
        staleness_s=sc.staleness_seconds,
        backoff_min_s=sc.reconnect_min_seconds,
        backoff_max_s=sc.reconnect_max_seconds,
        fallback_after=sc.fallback_after_failures,
        rng=random.Random(),
    )
