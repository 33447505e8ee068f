"""Risk: every proposal gets a verdict with a reason; approved ones become sized order intents.

Exits go first and only need a tradable market and something to sell. Entries pass, in
order: trading state, regime, confidence, eligibility, holdings and pending orders,
cooldown, the strategy's own budget, then the global caps (positions, total, asset, theme,
cash), then execution checks (quote freshness, spread, depth) and sizing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.config import PipelineConfig, StrategyBudget
from core.models import (
    ONE,
    ZERO,
    Market,
    MarketStatus,
    Order,
    OrderBook,
    OrderIntent,
    OrderType,
    ProposalKind,
    Quote,
    RiskVerdict,
    Side,
    TradeProposal,
    TradingState,
)
from core.orders import client_order_id
from core.portfolio import Exposure, Portfolio
from core.reasons import RiskReason as R
from core.sizing import ceil_to, floor_to, is_dust, size_buy, size_sell

_HUNDRED = Decimal(100)
_BPS = Decimal(10_000)
_NO_ORDERS = frozenset({MarketStatus.CANCEL_ONLY, MarketStatus.OFFLINE})
_NO_MARKET_ORDERS = frozenset({MarketStatus.POST_ONLY, MarketStatus.LIMIT_ONLY})


@dataclass(frozen=True, slots=True)
class RiskInputs:
    now_ms: int
    state: TradingState
    multiplier: Decimal
    eligible: frozenset[str]
    markets: Mapping[str, Market]
    quotes: Mapping[str, Quote]
    books: Mapping[str, OrderBook]
    portfolio: Portfolio
    equity: Decimal
    exposure: Exposure
    open_orders: Sequence[Order]
    cooldowns: Mapping[str, int]


class _Book:
    """Running totals while proposals are approved one by one within a cycle."""

    def __init__(self, inp: RiskInputs, cfg: PipelineConfig) -> None:
        ex = inp.exposure
        self.total = ex.total
        self.by_asset = dict(ex.by_asset)
        self.by_theme = dict(ex.by_theme)
        self.by_strategy = dict(ex.by_strategy)
        self.cash = inp.portfolio.cash - ex.pending_buy_cost
        self.trades: dict[str, int] = {}
        self.busy = {o.symbol for o in inp.open_orders if o.status.is_live}
        self.selling = {
            o.symbol for o in inp.open_orders if o.status.is_live and o.side is Side.SELL
        }
        # Dust (a holding too small to sell) takes no position slot and does not block
        # buying more of the symbol: topping it up is the way to get rid of it.
        self.dust = dust_symbols(inp)
        holding = set(inp.portfolio.positions) - self.dust
        self.slots = len(holding | {o.symbol for o in inp.open_orders if o.status.is_live})
        self.exits: set[str] = set()


def dust_symbols(inp: RiskInputs) -> set[str]:
    out = set()
    for sym, pos in inp.portfolio.positions.items():
        m = inp.markets.get(sym)
        q = inp.quotes.get(sym)
        if m is not None and is_dust(pos.quantity, q.bid if q else pos.avg_entry_price, m):
            out.add(sym)
    return out


def _intent(
    p: TradeProposal,
    side: Side,
    order_type: OrderType,
    amount: Decimal,
    price: Decimal | None,
    now_ms: int,
    post_only: bool,
) -> OrderIntent:
    """The order for an approved proposal; sells are always reduce-only."""
    return OrderIntent(
        client_order_id=client_order_id(p.strategy, p.symbol, side, amount, now_ms),
        symbol=p.symbol,
        side=side,
        order_type=order_type,
        amount=amount,
        price=price,
        strategy=p.strategy,
        cycle_ms=now_ms,
        post_only=post_only,
        reduce_only=side is Side.SELL,
        reason=p.reason,
    )


def _verdict(p: TradeProposal, reason: str, detail: str = "") -> RiskVerdict:
    return RiskVerdict(p, False, reason, detail)


def assess(
    proposals: Sequence[TradeProposal], inp: RiskInputs, cfg: PipelineConfig
) -> tuple[list[RiskVerdict], list[OrderIntent]]:
    book = _Book(inp, cfg)
    verdicts: list[RiskVerdict] = []
    intents: list[OrderIntent] = []
    exits = [p for p in proposals if p.kind is ProposalKind.EXIT]
    entries = [p for p in proposals if p.kind is ProposalKind.ENTRY]
    for p in exits:
        v, intent = _assess_exit(p, inp, cfg, book)
        verdicts.append(v)
        if intent is not None:
            intents.append(intent)
    for p in entries:
        v, intent = _assess_entry(p, inp, cfg, book)
        verdicts.append(v)
        if intent is not None:
            intents.append(intent)
    return verdicts, intents


def _assess_exit(
    p: TradeProposal, inp: RiskInputs, cfg: PipelineConfig, book: _Book
) -> tuple[RiskVerdict, OrderIntent | None]:
    if inp.state is TradingState.HALTED:
        return _verdict(p, R.HALTED), None
    pos = inp.portfolio.positions.get(p.symbol)
    if pos is None or pos.quantity <= 0:
        return _verdict(p, R.NO_POSITION), None
    if p.symbol in book.selling or p.symbol in book.exits:
        return _verdict(p, R.EXIT_PENDING), None
    market = inp.markets.get(p.symbol)
    if market is None or market.status in _NO_ORDERS:
        return _verdict(p, R.MARKET_NOT_TRADABLE, market.status if market else "no market"), None
    quote = inp.quotes.get(p.symbol)
    bid = quote.bid if quote is not None else p.ref_price
    qty = pos.quantity if p.quantity is None else min(p.quantity, pos.quantity)
    order_type = OrderType(cfg.execution.exit_order_type)
    post_only = False
    price: Decimal | None = None
    if order_type is OrderType.MARKET and market.status in _NO_MARKET_ORDERS:
        order_type = OrderType.LIMIT
    if order_type is OrderType.LIMIT:
        if market.status is MarketStatus.POST_ONLY and quote is not None:
            price = ceil_to(quote.ask, market.price_increment)
            post_only = True
        else:
            # A limit at the bid gets out now on a limit-only venue without giving away more.
            price = floor_to(bid, market.price_increment)
    size = size_sell(quantity=qty, price=price or bid, market=market, fee_rate=market.taker_fee)
    if size.reason != R.APPROVED:
        return _verdict(p, size.reason, f"{qty} below market minimums"), None
    book.exits.add(p.symbol)
    intent = _intent(p, Side.SELL, order_type, size.quantity, price, inp.now_ms, post_only)
    v = RiskVerdict(p, True, R.APPROVED, "", size.quantity, price or bid, size.notional)
    return v, intent


def _assess_entry(
    p: TradeProposal, inp: RiskInputs, cfg: PipelineConfig, book: _Book
) -> tuple[RiskVerdict, OrderIntent | None]:
    risk, ex = cfg.risk, cfg.execution
    if inp.state is TradingState.HALTED:
        return _verdict(p, R.HALTED), None
    if inp.state is TradingState.REDUCING:
        return _verdict(p, R.EXITS_ONLY), None
    if inp.multiplier <= 0:
        return _verdict(p, R.REGIME_BLOCKS), None
    if p.confidence < risk.min_confidence:
        return _verdict(p, R.LOW_CONFIDENCE, f"{p.confidence:.3f} < {risk.min_confidence}"), None
    if p.symbol not in inp.eligible:
        return _verdict(p, R.NOT_ELIGIBLE), None
    if p.symbol in inp.portfolio.positions and p.symbol not in book.dust:
        return _verdict(p, R.ALREADY_HOLDING), None
    if p.symbol in book.busy:
        return _verdict(p, R.PENDING_ORDER), None
    until = inp.cooldowns.get(p.symbol, 0)
    if until > inp.now_ms:
        return _verdict(p, R.COOLDOWN, f"until {until}"), None
    spec = cfg.strategies.get(p.strategy)
    budget = spec.budget if spec is not None else StrategyBudget()
    if book.trades.get(p.strategy, 0) >= budget.max_trades_per_cycle:
        return _verdict(p, R.STRATEGY_TRADE_LIMIT), None
    if book.slots >= risk.max_open_positions:
        return _verdict(p, R.MAX_POSITIONS, f"{book.slots} open"), None

    market = inp.markets.get(p.symbol)
    if market is None or market.status in _NO_ORDERS:
        return _verdict(p, R.MARKET_NOT_TRADABLE, market.status if market else "no market"), None
    order_type = OrderType(ex.entry_order_type)
    if order_type is OrderType.MARKET and market.status in _NO_MARKET_ORDERS:
        return _verdict(p, R.MARKET_NOT_TRADABLE, market.status), None
    quote = inp.quotes.get(p.symbol)
    if quote is None:
        return _verdict(p, R.NO_QUOTE), None
    if inp.now_ms - quote.ts > ex.stale_quote_seconds * 1000:
        return _verdict(p, R.STALE_QUOTE, f"{(inp.now_ms - quote.ts) // 1000}s old"), None
    if quote.bid >= quote.ask:
        return _verdict(p, R.CROSSED_QUOTE, f"bid {quote.bid} >= ask {quote.ask}"), None
    spread = quote.spread_bps
    if spread > ex.max_spread_bps:
        return _verdict(p, R.SPREAD_TOO_WIDE, f"{spread:.1f}bps"), None

    equity = inp.equity
    base = market.base
    theme = cfg.universe.theme_of(base)
    rooms = (
        (
            equity * budget.max_at_risk_pct / _HUNDRED - book.by_strategy.get(p.strategy, ZERO),
            R.STRATEGY_BUDGET,
        ),
        (equity * risk.max_total_exposure_pct / _HUNDRED - book.total, R.TOTAL_EXPOSURE_CAP),
        (
            equity * risk.max_asset_exposure_pct / _HUNDRED - book.by_asset.get(base, ZERO),
            R.ASSET_EXPOSURE_CAP,
        ),
        (
            equity * risk.max_theme_exposure_pct / _HUNDRED - book.by_theme.get(theme, ZERO),
            R.THEME_EXPOSURE_CAP,
        ),
        (book.cash, R.INSUFFICIENT_CASH),
    )
    room, binding = min(rooms, key=lambda r: r[0])
    if room <= 0:
        return _verdict(p, binding, f"room {room:.2f}"), None

    if order_type is OrderType.LIMIT:
        price = floor_to(quote.bid * (ONE - ex.limit_offset_bps / _BPS), market.price_increment)
        fee_rate = market.maker_fee if ex.post_only else market.taker_fee
        price_for_size: Decimal = price
    else:
        price = None
        fee_rate = market.taker_fee
        price_for_size = quote.ask
    target = equity * risk.position_size_pct / _HUNDRED * inp.multiplier
    size = size_buy(
        budget=min(target, room),
        hard_cap=room,
        price=price_for_size,
        market=market,
        fee_rate=fee_rate,
        margin=_HUNDRED / (_HUNDRED + cfg.exits.stop_loss_pct),
    )
    if size.reason != R.APPROVED:
        return _verdict(p, size.reason, f"room {room:.2f} below market minimum"), None
    if ex.min_depth_multiple > 0:
        ob = inp.books.get(p.symbol)
        if ob is not None:
            depth, need = ob.depth_notional(Side.BUY), size.notional * ex.min_depth_multiple
            if depth < need:
                return _verdict(p, R.THIN_BOOK, f"ask depth {depth:.2f} < {need:.2f}"), None

    post_only = order_type is OrderType.LIMIT and ex.post_only
    intent = _intent(p, Side.BUY, order_type, size.quantity, price, inp.now_ms, post_only)
    book.total += size.notional
    book.by_asset[base] = book.by_asset.get(base, ZERO) + size.notional
    book.by_theme[theme] = book.by_theme.get(theme, ZERO) + size.notional
    book.by_strategy[p.strategy] = book.by_strategy.get(p.strategy, ZERO) + size.notional
    book.cash -= size.cost
    book.trades[p.strategy] = book.trades.get(p.strategy, 0) + 1
    book.busy.add(p.symbol)
    book.slots += 1
    v = RiskVerdict(p, True, R.APPROVED, "", size.quantity, price_for_size, size.notional)
    return v, intent
