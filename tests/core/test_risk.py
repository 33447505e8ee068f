"""Risk verdicts: every reason in isolation, entry/exit shape, and caps within one cycle.

Most tests call `core.risk.assess` on hand-built inputs; the last section drives the same
rules through `core.cycle.run_cycle` with hand-built features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.config import (
    ExecutionConfig,
    PipelineConfig,
    RiskConfig,
    StrategyBudget,
    StrategyConfig,
    UniverseConfig,
)
from core.cycle import EXITS, MarketSnapshot, run_cycle
from core.features import SymbolFeatures
from core.models import (
    BookLevel,
    EngineState,
    Fill,
    Market,
    MarketStatus,
    Order,
    OrderBook,
    OrderIntent,
    OrderStatus,
    OrderType,
    ProposalKind,
    Quote,
    Regime,
    RegimeState,
    RiskVerdict,
    Side,
    TradeProposal,
    TradingState,
)
from core.orders import client_order_id
from core.portfolio import Portfolio, apply_fill, exposure, value
from core.reasons import NoTradeReason
from core.reasons import RiskReason as R
from core.risk import RiskInputs, assess
from strategy.registry import resolve

D = Decimal
NOW = 1_704_067_200_000  # 2024-01-01 00:00 UTC
EQUITY = D(10_000)
THEMES = {"SOL": "layer1", "ETH": "layer1", "AVAX": "layer1", "BTC": "store", "DOGE": "meme"}
SYMBOLS = ("SOL/USDT", "ETH/USDT", "AVAX/USDT", "BTC/USDT", "DOGE/USDT", "SOL/USDC")


def mkt(symbol: str, **kw: Any) -> Market:
    base, quote = symbol.split("/")
    args: dict[str, Any] = {
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "price_increment": D("0.01"),
        "amount_increment": D("0.001"),
        "min_size": D("0.001"),
        "min_notional": D(5),
    }
    args.update(kw)
    return Market(**args)


def quote(symbol: str, bid: str = "100", ask: str = "100.1", ts: int = NOW) -> Quote:
    return Quote(symbol, D(bid), D(ask), (D(bid) + D(ask)) / 2, ts)


def entry(symbol: str = "SOL/USDT", strategy: str = "rules", conf: float = 0.8) -> TradeProposal:
    return TradeProposal(strategy, symbol, Side.BUY, ProposalKind.ENTRY, conf, "breakout", D(100))


def exit_(symbol: str = "SOL/USDT", quantity: Decimal | None = None) -> TradeProposal:
    return TradeProposal(
        EXITS, symbol, Side.SELL, ProposalKind.EXIT, 1.0, "stop_loss", D(100), quantity, True
    )


def config(
    *, budget: Mapping[str, Any] | None = None, ex: Any = None, **risk: Any
) -> PipelineConfig:
    return PipelineConfig(
        universe=UniverseConfig(themes=THEMES),
        risk=RiskConfig(**risk),
        execution=ExecutionConfig(**(ex or {})),
        strategies={"rules": StrategyConfig(enabled=True, budget=StrategyBudget(**(budget or {})))},
    )


def held(*positions: tuple[str, str, str], cash: Decimal = EQUITY, strategy: str = "") -> Portfolio:
    """A portfolio that bought (symbol, qty, price) with no fee, starting from `cash`."""
    p = Portfolio(cash=cash)
    for i, (sym, qty, px) in enumerate(positions):
        f = Fill(f"f{i}", f"c{i}", sym, Side.BUY, D(px), D(qty), D(0), NOW - 10_000)
        p = apply_fill(p, f, strategy=strategy).portfolio
    return p


def pending(symbol: str, amount: str, price: str = "100", **kw: Any) -> Order:
    args: dict[str, Any] = {
        "client_order_id": f"p-{symbol}-{amount}",
        "symbol": symbol,
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "amount": D(amount),
        "price": D(price),
        "status": OrderStatus.OPEN,
        "created_ms": NOW - 1_000,
        "updated_ms": NOW - 1_000,
        "strategy": "other",
    }
    args.update(kw)
    return Order(**args)


def inputs(
    cfg: PipelineConfig,
    *,
    portfolio: Portfolio | None = None,
    orders: Sequence[Order] = (),
    state: TradingState = TradingState.ACTIVE,
    multiplier: Decimal = D(1),
    eligible: Sequence[str] = SYMBOLS,
    markets: Mapping[str, Market] | None = None,
    quotes: Mapping[str, Quote] | None = None,
    books: Mapping[str, OrderBook] | None = None,
    cooldowns: Mapping[str, int] | None = None,
    equity: Decimal | None = None,
) -> RiskInputs:
    p = portfolio if portfolio is not None else Portfolio(cash=EQUITY)
    mk = markets if markets is not None else {s: mkt(s) for s in SYMBOLS}
    qs = quotes if quotes is not None else {s: quote(s) for s in SYMBOLS}
    marks = {s: q.last for s, q in qs.items() if s in p.positions}
    ex = exposure(p, marks, orders, base_of=lambda s: mk[s].base, theme_of=cfg.universe.theme_of)
    return RiskInputs(
        now_ms=NOW,
        state=state,
        multiplier=multiplier,
        eligible=frozenset(eligible),
        markets=mk,
        quotes=qs,
        books=books or {},
        portfolio=p,
        equity=equity if equity is not None else value(p, marks).equity,
        exposure=ex,
        open_orders=tuple(orders),
        cooldowns=cooldowns or {},
    )


def run(
    proposals: Sequence[TradeProposal], cfg: PipelineConfig | None = None, **kw: Any
) -> tuple[list[RiskVerdict], list[OrderIntent]]:
    cfg = cfg or config()
    return assess(proposals, inputs(cfg, **kw), cfg)


def reasons(
    proposals: Sequence[TradeProposal], cfg: PipelineConfig | None = None, **kw: Any
) -> list[str]:
    return [v.reason for v in run(proposals, cfg, **kw)[0]]


def one(proposal: TradeProposal, cfg: PipelineConfig | None = None, **kw: Any) -> str:
    """The reason of the only verdict for `proposal`."""
    (v,) = run([proposal], cfg, **kw)[0]
    return v.reason


# --------------------------------------------------------------------------- approved entries


def test_approved_entry_is_a_post_only_limit_at_the_bid() -> None:
    verdicts, intents = run([entry()])
    (v,) = verdicts
    (i,) = intents
    assert v.approved and v.reason == R.APPROVED
    # 5% of 10_000 = 500 incl. the 0.1% maker fee, at the bid 100, on the 0.001 grid.
    assert (v.quantity, v.price, v.notional) == (D("4.995"), D(100), D("499.500"))
    assert i.side is Side.BUY and i.order_type is OrderType.LIMIT
    assert i.price == D(100) and i.post_only and not i.reduce_only
    assert i.amount == v.quantity and i.symbol == "SOL/USDT" and i.strategy == "rules"
    assert i.cycle_ms == NOW and i.reason == "breakout"
    assert i.client_order_id == client_order_id("rules", "SOL/USDT", Side.BUY, i.amount, NOW)


def test_entry_price_is_floored_to_the_price_grid_with_the_offset() -> None:
    qs = {"SOL/USDT": quote("SOL/USDT", "100.037", "100.05")}
    (_, [i]) = run([entry()], quotes=qs)
    assert i.price == D("100.03")
    (_, [j]) = run([entry()], config(ex={"limit_offset_bps": 10}), quotes=qs)
    assert j.price == D("99.93")  # 100.037 x 0.999 = 99.936... floored


def test_entry_size_scales_with_the_regime_multiplier() -> None:
    ([v], _) = run([entry()], multiplier=D("0.5"))
    assert v.quantity == D("2.497")  # 250 / (100 x 1.001) floored
    assert v.notional * D("1.001") <= D(250)


def test_entry_size_is_capped_by_the_tightest_room() -> None:
    # 300 of SOL already held through another quote leaves 200 under the 5% asset cap.
    p = held(("SOL/USDC", "3", "100"))
    qs = {"SOL/USDT": quote("SOL/USDT"), "SOL/USDC": quote("SOL/USDC", "99.95", "100.05")}
    ([v], _) = run([entry()], portfolio=p, quotes=qs)
    assert v.approved and v.quantity == D("1.998")  # 200 / 100.1 floored
    assert v.notional <= D(200)


def test_taker_fee_and_ask_for_market_entries() -> None:
    cfg = config(ex={"entry_order_type": "market"})
    markets = {"SOL/USDT": mkt("SOL/USDT", taker_fee=D("0.004"))}
    ([v], [i]) = run([entry()], cfg, markets=markets)
    assert i.order_type is OrderType.MARKET and i.price is None and not i.post_only
    assert v.price == D("100.1")  # sized at the ask
    assert v.quantity == D("4.975")  # 500 / (100.1 x 1.004) floored


def test_post_only_false_uses_taker_fee() -> None:
    markets = {"SOL/USDT": mkt("SOL/USDT", taker_fee=D("0.004"))}
    ([v], [i]) = run([entry()], config(ex={"post_only": False}), markets=markets)
    assert not i.post_only and i.order_type is OrderType.LIMIT
    assert v.quantity == D("4.980")  # 500 / (100 x 1.004)


# --------------------------------------------------------------------------- entry rejections


@pytest.mark.parametrize(
    ("state", "reason"),
    [(TradingState.HALTED, R.HALTED), (TradingState.REDUCING, R.EXITS_ONLY)],
)
def test_trading_state_blocks_entries(state: TradingState, reason: str) -> None:
    verdicts, intents = run([entry()], state=state)
    assert [v.reason for v in verdicts] == [reason] and intents == []
    assert not verdicts[0].approved and verdicts[0].quantity == 0


def test_regime_multiplier_zero_blocks_entries() -> None:
    assert one(entry(), multiplier=D(0)) == R.REGIME_BLOCKS


def test_low_confidence() -> None:
    cfg = config(min_confidence=0.6)
    assert reasons([entry(conf=0.59)], cfg) == [R.LOW_CONFIDENCE]
    assert reasons([entry(conf=0.6)], cfg) == [R.APPROVED]


def test_not_eligible() -> None:
    assert one(entry(), eligible=["ETH/USDT"]) == R.NOT_ELIGIBLE


def test_already_holding() -> None:
    assert one(entry(), portfolio=held(("SOL/USDT", "1", "100"))) == R.ALREADY_HOLDING


def test_pending_order_on_the_symbol() -> None:
    assert one(entry(), orders=[pending("SOL/USDT", "1")]) == R.PENDING_ORDER
    done = pending("SOL/USDT", "1", status=OrderStatus.CANCELED)
    assert one(entry(), orders=[done]) == R.APPROVED


def test_cooldown_until_its_end() -> None:
    assert one(entry(), cooldowns={"SOL/USDT": NOW + 1}) == R.COOLDOWN
    assert one(entry(), cooldowns={"SOL/USDT": NOW}) == R.APPROVED


def test_strategy_budget_used_up() -> None:
    # rules may hold 3% (300); it already holds 300 of ETH. Global caps have room.
    p = held(("ETH/USDT", "3", "100"), strategy="rules")
    cfg = config(budget={"max_at_risk_pct": 3})
    assert one(entry(), cfg, portfolio=p) == R.STRATEGY_BUDGET
    assert reasons([entry("SOL/USDT", "ema_cross")], cfg, portfolio=p) == [R.APPROVED]


def test_strategy_trade_limit() -> None:
    cfg = config(budget={"max_trades_per_cycle": 1})
    assert reasons([entry("SOL/USDT"), entry("BTC/USDT")], cfg) == [
        R.APPROVED,
        R.STRATEGY_TRADE_LIMIT,
    ]
    assert one(entry(), config(budget={"max_trades_per_cycle": 0})) == R.STRATEGY_TRADE_LIMIT


def test_max_positions_counts_holdings_and_pending_orders() -> None:
    cfg = config(max_open_positions=2)
    p = held(("BTC/USDT", "1", "100"))
    assert one(entry(), cfg, portfolio=p, orders=[pending("DOGE/USDT", "1")]) == R.MAX_POSITIONS
    assert one(entry(), cfg, portfolio=p) == R.APPROVED


def test_total_exposure_cap_counts_pending_orders() -> None:
    cfg = config(max_total_exposure_pct=10)
    p = held(("BTC/USDT", "5", "100"))  # 500 held
    order = pending("DOGE/USDT", "5")  # 500 pending: total 1000 = 10%
    assert one(entry(), cfg, portfolio=p, orders=[order]) == R.TOTAL_EXPOSURE_CAP
    assert one(entry(), cfg, portfolio=p) == R.APPROVED


def test_asset_exposure_cap_counts_pending_orders_on_other_quotes() -> None:
    order = pending("SOL/USDC", "5")  # 500 of SOL pending = 5%
    assert one(entry(), orders=[order]) == R.ASSET_EXPOSURE_CAP


def test_theme_exposure_cap_counts_pending_orders() -> None:
    p = held(("ETH/USDT", "5", "100"))  # layer1 500
    order = pending("AVAX/USDT", "5")  # layer1 500 pending: 10%
    assert one(entry(), portfolio=p, orders=[order]) == R.THEME_EXPOSURE_CAP
    assert reasons([entry("BTC/USDT")], portfolio=p, orders=[order]) == [R.APPROVED]


def test_insufficient_cash() -> None:
    # Equity (10_000, given) sits mostly outside this quote's cash; all 300 cash is reserved.
    p = Portfolio(cash=D(300))
    order = pending("DOGE/USDT", "3")
    assert one(entry(), portfolio=p, orders=[order], equity=EQUITY) == R.INSUFFICIENT_CASH


@pytest.mark.parametrize("status", [MarketStatus.CANCEL_ONLY, MarketStatus.OFFLINE])
def test_market_not_tradable(status: MarketStatus) -> None:
    assert (
        one(entry(), markets={"SOL/USDT": mkt("SOL/USDT", status=status)}) == R.MARKET_NOT_TRADABLE
    )


def test_unknown_market_is_not_tradable() -> None:
    assert one(entry(), markets={}) == R.MARKET_NOT_TRADABLE


@pytest.mark.parametrize("status", [MarketStatus.POST_ONLY, MarketStatus.LIMIT_ONLY])
def test_limit_only_markets_take_limits_but_not_market_entries(status: MarketStatus) -> None:
    markets = {"SOL/USDT": mkt("SOL/USDT", status=status)}
    assert one(entry(), markets=markets) == R.APPROVED
    cfg = config(ex={"entry_order_type": "market"})
    assert one(entry(), cfg, markets=markets) == R.MARKET_NOT_TRADABLE


def test_no_quote() -> None:
    assert one(entry(), quotes={}) == R.NO_QUOTE


def test_stale_quote_after_stale_quote_seconds() -> None:
    old = {"SOL/USDT": quote("SOL/USDT", ts=NOW - 120_001)}
    edge = {"SOL/USDT": quote("SOL/USDT", ts=NOW - 120_000)}
    assert one(entry(), quotes=old) == R.STALE_QUOTE
    assert one(entry(), quotes=edge) == R.APPROVED


def test_spread_too_wide() -> None:
    assert (
        one(entry(), quotes={"SOL/USDT": quote("SOL/USDT", "100", "100.31")}) == R.SPREAD_TOO_WIDE
    )
    # Exactly 30 bps is allowed.
    assert one(entry(), quotes={"SOL/USDT": quote("SOL/USDT", "99.85", "100.15")}) == R.APPROVED


def _book(depth: str) -> dict[str, OrderBook]:
    return {"SOL/USDT": OrderBook("SOL/USDT", (), (BookLevel(D(1), D(depth)),), NOW)}


def test_thin_book_needs_depth_multiple_of_the_notional() -> None:
    # Notional 499.5 x 3 = 1498.5 of asks needed.
    assert one(entry(), books=_book("1498.4")) == R.THIN_BOOK
    assert one(entry(), books=_book("1498.5")) == R.APPROVED
    assert one(entry(), config(ex={"min_depth_multiple": 0}), books=_book("1")) == R.APPROVED
    assert one(entry(), books={}) == R.APPROVED  # unknown book: not checked


def test_below_min_notional_when_room_cannot_pay_the_minimum() -> None:
    markets = {"SOL/USDT": mkt("SOL/USDT", min_notional=D(600))}
    assert one(entry(), markets=markets) == R.BELOW_MIN_NOTIONAL
    # A small target rounds up to the minimum when the room allows it; the minimum keeps a
    # margin so the holding is still sellable after a fall to the -10% stop.
    ([v], _) = run([entry()], multiplier=D("0.001"))
    assert v.approved and v.quantity == D("0.056")  # 5 / 0.9 / (100 x 0.999) on the grid
    assert v.notional * D("0.9") * D("0.999") >= D(5)


def test_crossed_quote_is_refused() -> None:
    assert one(entry(), quotes={"SOL/USDT": quote("SOL/USDT", "101", "100")}) == R.CROSSED_QUOTE


# --------------------------------------------------------------------------- exits


def test_exit_is_a_reduce_only_market_sell_of_the_position() -> None:
    p = held(("SOL/USDT", "2.5", "120"))
    ([v], [i]) = run([exit_()], portfolio=p)
    assert v.approved and v.quantity == D("2.5") and v.price == D(100)
    assert v.notional == D(250)
    assert i.side is Side.SELL and i.reduce_only and not i.post_only
    assert i.order_type is OrderType.MARKET and i.price is None
    assert i.strategy == EXITS and i.reason == "stop_loss"


def test_exit_limit_at_the_bid_and_post_only_markets() -> None:
    p = held(("SOL/USDT", "2", "120"))
    ([_], [i]) = run([exit_()], config(ex={"exit_order_type": "limit"}), portfolio=p)
    assert i.order_type is OrderType.LIMIT and i.price == D(100) and not i.post_only
    lim = {"SOL/USDT": mkt("SOL/USDT", status=MarketStatus.LIMIT_ONLY)}
    ([_], [j]) = run([exit_()], portfolio=p, markets=lim)
    assert j.order_type is OrderType.LIMIT and j.price == D(100)
    post = {"SOL/USDT": mkt("SOL/USDT", status=MarketStatus.POST_ONLY)}
    ([_], [k]) = run([exit_()], portfolio=p, markets=post)
    assert k.order_type is OrderType.LIMIT and k.post_only and k.price == D("100.1")
    assert k.reduce_only


def test_exit_quantity_is_capped_at_the_position_and_rounded_down() -> None:
    p = held(("SOL/USDT", "2.0005", "120"))
    ([v], _) = run([exit_(quantity=D(5))], portfolio=p)
    assert v.quantity == D("2.000")
    ([w], _) = run([exit_(quantity=D("0.5"))], portfolio=p)
    assert w.quantity == D("0.5")


def test_exit_of_zero_quantity_sells_nothing() -> None:
    p = held(("SOL/USDT", "2", "120"))
    assert run([exit_(quantity=D(0))], portfolio=p)[1] == []


def test_exit_rejections() -> None:
    p = held(("SOL/USDT", "2", "120"))
    assert one(exit_(), state=TradingState.HALTED, portfolio=p) == R.HALTED
    assert one(exit_()) == R.NO_POSITION
    sell = pending("SOL/USDT", "2", side=Side.SELL)
    assert one(exit_(), portfolio=p, orders=[sell]) == R.EXIT_PENDING
    assert reasons([exit_(), exit_()], portfolio=p) == [R.APPROVED, R.EXIT_PENDING]
    off = {"SOL/USDT": mkt("SOL/USDT", status=MarketStatus.OFFLINE)}
    assert one(exit_(), portfolio=p, markets=off) == R.MARKET_NOT_TRADABLE
    dust = held(("SOL/USDT", "0.0004", "120"))
    assert one(exit_(), portfolio=dust) == R.DUST


def test_exits_pass_while_reducing_and_over_every_cap() -> None:
    p = held(("SOL/USDT", "60", "100"))  # 60% of equity in one asset
    assert one(exit_(), state=TradingState.REDUCING, portfolio=p) == R.APPROVED


def test_exits_are_judged_before_entries() -> None:
    p = held(("SOL/USDT", "2", "120"))
    verdicts, _ = run([entry("BTC/USDT"), exit_()], portfolio=p)
    assert [v.proposal.kind for v in verdicts] == [ProposalKind.EXIT, ProposalKind.ENTRY]


# --------------------------------------------------------------------------- within one cycle


def _zero_fee_markets(n: int) -> dict[str, Market]:
    return {f"A{k}/USDT": mkt(f"A{k}/USDT", maker_fee=D(0)) for k in range(n)}


def test_theme_cap_accumulates_across_approvals() -> None:
    cfg = config(budget={"max_trades_per_cycle": 9, "max_at_risk_pct": 25})
    markets = {s: mkt(s, maker_fee=D(0)) for s in SYMBOLS}
    props = [entry("SOL/USDT"), entry("ETH/USDT"), entry("AVAX/USDT"), entry("BTC/USDT")]
    verdicts, intents = run(props, cfg, markets=markets)
    assert [v.reason for v in verdicts] == [
        R.APPROVED,
        R.APPROVED,
        R.THEME_EXPOSURE_CAP,  # layer1 is at 1000 = 10%
        R.APPROVED,
    ]
    assert [i.symbol for i in intents] == ["SOL/USDT", "ETH/USDT", "BTC/USDT"]


def test_conservative_defaults_five_positions_of_five_percent() -> None:
    markets = _zero_fee_markets(6)
    themes = {f"A{k}": f"t{k}" for k in range(6)}
    cfg = PipelineConfig(universe=UniverseConfig(themes=themes))
    props = [entry(s, strategy=f"s{k}") for k, s in enumerate(markets)]
    verdicts, intents = assess(
        props,
        inputs(cfg, markets=markets, quotes={s: quote(s) for s in markets}, eligible=list(markets)),
        cfg,
    )
    assert [v.reason for v in verdicts] == [R.APPROVED] * 5 + [R.MAX_POSITIONS]
    assert all(v.notional == D(500) for v in verdicts[:5])  # 5% each
    assert sum(i.amount * (i.price or 0) for i in intents) == D(2500)  # 25% total


def test_conservative_total_cap_of_25_percent() -> None:
    markets = _zero_fee_markets(6)
    themes = {f"A{k}": f"t{k}" for k in range(6)}
    cfg = PipelineConfig(
        universe=UniverseConfig(themes=themes), risk=RiskConfig(max_open_positions=10)
    )
    props = [entry(s, strategy=f"s{k}") for k, s in enumerate(markets)]
    qs = {s: quote(s) for s in markets}
    verdicts, _ = assess(
        props, inputs(cfg, markets=markets, quotes=qs, eligible=list(markets)), cfg
    )
    assert [v.reason for v in verdicts] == [R.APPROVED] * 5 + [R.TOTAL_EXPOSURE_CAP]


def test_max_positions_accumulates_across_approvals() -> None:
    cfg = config(max_open_positions=2, budget={"max_trades_per_cycle": 9})
    props = [entry("SOL/USDT"), entry("BTC/USDT"), entry("DOGE/USDT")]
    assert reasons(props, cfg) == [R.APPROVED, R.APPROVED, R.MAX_POSITIONS]


def test_same_symbol_twice_in_one_cycle_is_pending() -> None:
    assert reasons([entry("SOL/USDT", "a"), entry("SOL/USDT", "b")]) == [
        R.APPROVED,
        R.PENDING_ORDER,
    ]


# --------------------------------------------------------------------------- through run_cycle

TF = 300_000
T = NOW + 100 * TF  # the candle that closed at T opened at T - TF


def feats(sym: str, close: float, open_: float, volume: float, **values: float) -> SymbolFeatures:
    base = {
        "qvol:288": 1e9,
        "med:20": 100.0,
        "vavg:20": 100.0,
        "hh:20": 200.0,
        "roc:12": 0.0,
        "rsi:14": 50.0,
        "ema:50": 99.0,
        "ema:200": 95.0,
        "atr:14": 1.0,
        "peak:288": 100.0,
    }
    base.update(values)
    hi, lo = max(open_, close), min(open_, close)
    return SymbolFeatures(sym, T - TF, open_, hi, lo, close, volume, base, base, 500)


def snapshot(*, state: EngineState | None = None, **kw: Any) -> MarketSnapshot:
    markets = {s: mkt(s) for s in ("BTC/USDT", "SOL/USDT", "ETH/USDT")}
    return MarketSnapshot(
        ts=T,
        markets=markets,
        features={
            "BTC/USDT": feats("BTC/USDT", 100.0, 100.0, 100.0),
            # A breakout on 2x the needed volume: the rules strategy proposes SOL.
            "SOL/USDT": feats("SOL/USDT", 101.0, 100.0, 300.0, **{"hh:20": 100.0}),
        },
        quotes={
            "BTC/USDT": quote("BTC/USDT", "99.99", "100.01", T),
            "SOL/USDT": quote("SOL/USDT", "100.9", "101", T),
            "ETH/USDT": Quote("ETH/USDT", D("89.99"), D("90.01"), D(90), T),
        },
        state=state or EngineState(regime=RegimeState(regime=Regime.BULL)),
        **kw,
    )


def cycle(portfolio: Portfolio | None = None, **kw: Any) -> Any:
    cfg = PipelineConfig()
    return run_cycle(
        snapshot(**kw), portfolio or Portfolio(cash=EQUITY), cfg, T, strategies=resolve(cfg)
    )


def test_cycle_approves_a_sized_post_only_entry() -> None:
    d = cycle()
    assert d.trading_state is TradingState.ACTIVE and d.regime is Regime.BULL
    (v,) = d.verdicts
    assert v.proposal.symbol == "SOL/USDT" and v.reason == R.APPROVED
    (i,) = d.intents
    assert i.price == D("100.9") and i.post_only and i.order_type is OrderType.LIMIT
    assert i.amount == D("4.950")  # 500 / (100.9 x 1.001) on the grid
    assert d.no_trade_reason is None


def test_cycle_cooldown_and_pending_order_reject_with_all_rejected() -> None:
    cool = EngineState(regime=RegimeState(regime=Regime.BULL), cooldowns={"SOL/USDT": T + 1})
    d = cycle(state=cool)
    assert [v.reason for v in d.verdicts] == [R.COOLDOWN]
    assert d.no_trade_reason == NoTradeReason.ALL_REJECTED
    d2 = cycle(open_orders=(pending("SOL/USDT", "1", created_ms=T - 1_000),))
    assert [v.reason for v in d2.verdicts] == [R.PENDING_ORDER]


def test_cycle_reducing_state_refuses_entries_as_exits_only() -> None:
    d = cycle(rejections=(T - 3_000, T - 2_000, T - 1_000))  # rejection burst -> REDUCING
    assert d.trading_state is TradingState.REDUCING
    assert [v.reason for v in d.verdicts] == [R.EXITS_ONLY] and d.intents == ()


def test_cycle_stop_loss_at_minus_ten_percent_is_a_reduce_only_exit() -> None:
    p = held(("ETH/USDT", "3", "100"))  # marked at 90: exactly the default -10% stop
    d = cycle(p)
    exits = [v for v in d.verdicts if v.proposal.kind is ProposalKind.EXIT]
    assert [(v.proposal.symbol, v.reason, v.proposal.reason) for v in exits] == [
        ("ETH/USDT", R.APPROVED, "stop_loss")
    ]
    sell = next(i for i in d.intents if i.side is Side.SELL)
    assert sell.reduce_only and sell.amount == D(3) and sell.order_type is OrderType.MARKET


def test_cycle_no_stop_just_above_minus_ten_percent() -> None:
    p = held(("ETH/USDT", "3", "99.99"))  # 90 / 99.99 - 1 = -9.99%
    d = cycle(p)
    assert [(v.proposal.symbol, v.proposal.kind) for v in d.verdicts] == [
        ("SOL/USDT", ProposalKind.ENTRY)
    ]


def test_cycle_exit_pending_when_a_sell_is_working() -> None:
    p = held(("ETH/USDT", "3", "100"))
    sell = pending("ETH/USDT", "3", price="90", side=Side.SELL, created_ms=T - 1_000)
    d = cycle(p, open_orders=(sell,))
    exits = [v.reason for v in d.verdicts if v.proposal.kind is ProposalKind.EXIT]
    assert exits == [R.EXIT_PENDING]


def test_every_risk_reason_has_a_scenario_in_this_module() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    missing = [r.name for r in R if f"R.{r.name}" not in source]
    assert missing == [], f"no scenario asserts {missing}"


# --------------------------------------------------------------------------- dust


def test_dust_takes_no_slot_and_may_be_topped_up() -> None:
    # 0.04 SOL at 100 is 4 USDT: below the 5 USDT minimum, the venue will not buy it back.
    p = held(("SOL/USDT", "0.04", "100"))
    assert one(entry(), portfolio=p) == R.APPROVED  # not ALREADY_HOLDING
    cfg = config(max_open_positions=1)
    assert one(entry("ETH/USDT"), cfg, portfolio=p) == R.APPROVED  # the dust holds no slot


def test_dust_gets_no_exit_proposal_every_cycle() -> None:
    p = held(("SOL/USDT", "0.04", "150"))  # bought at 150, now 100: far below the stop
    d = cycle(p)
    assert not [v for v in d.verdicts if v.proposal.kind is ProposalKind.EXIT]
