"""Property tests (hypothesis) for the money-handling stages: sizing, fills, portfolio, risk."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import (
    ExecutionConfig,
    PipelineConfig,
    RiskConfig,
    StrategyBudget,
    StrategyConfig,
    UniverseConfig,
)
from core.models import (
    Fill,
    Market,
    Order,
    OrderStatus,
    OrderType,
    ProposalKind,
    Quote,
    Side,
    TradeProposal,
    TradingState,
)
from core.orders import apply_fill as fill_order
from core.orders import client_order_id
from core.portfolio import Portfolio, apply_fill, exposure, value
from core.reasons import RiskReason as R
from core.risk import RiskInputs, assess, dust_symbols
from core.sizing import ceil_to, fee_for, floor_to, min_buy_quantity, on_grid, size_buy, size_sell

D = Decimal
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INCREMENTS = [D(1), D("0.1"), D("0.01"), D("0.001"), D("0.0001"), D("0.00000001"), D("0.25"), D(5)]
FEE_RATES = [D(0), D("0.0001"), D("0.0005"), D("0.001"), D("0.0025"), D("0.006"), D("0.01")]

prices = st.decimals(min_value=D("0.00000001"), max_value=D(1_000_000), places=8)
budgets = st.decimals(min_value=D("0.01"), max_value=D(1_000_000), places=2)
fee_rates = st.sampled_from(FEE_RATES)
increments = st.sampled_from(INCREMENTS)


@st.composite
def markets(draw: Any) -> Market:
    inc = draw(increments)
    on_grid_min = inc * draw(st.integers(0, 50))
    off_grid_min = draw(st.decimals(min_value=0, max_value=10, places=8))
    return Market(
        symbol="X/USDT",
        base="X",
        quote="USDT",
        price_increment=D("0.00000001"),
        amount_increment=inc,
        min_size=draw(st.sampled_from([on_grid_min, off_grid_min])),
        min_notional=draw(st.decimals(min_value=0, max_value=100, places=2)),
        maker_fee=draw(fee_rates),
        taker_fee=draw(fee_rates),
    )


# --------------------------------------------------------------------------- grid and fees


@PROPS
@given(st.decimals(min_value=-(10**9), max_value=10**9, places=8), increments)
def test_floor_and_ceil_bracket_x_on_the_grid(x: Decimal, step: Decimal) -> None:
    lo, hi = floor_to(x, step), ceil_to(x, step)
    assert lo <= x <= hi
    assert hi - lo in (0, step)
    assert on_grid(lo, step) and on_grid(hi, step)
    assert (lo == x) is on_grid(x, step)


@PROPS
@given(st.decimals(min_value=0, max_value=10**9, places=8), fee_rates)
def test_fees_are_never_negative(notional: Decimal, rate: Decimal) -> None:
    assert fee_for(notional, rate) >= 0


# --------------------------------------------------------------------------- sizing


@PROPS
@given(markets(), prices, budgets, st.decimals(min_value=0, max_value=100_000, places=2))
def test_size_buy_invariants(m: Market, price: Decimal, budget: Decimal, extra: Decimal) -> None:
    fee = m.maker_fee
    hard_cap = budget + extra
    s = size_buy(budget=budget, hard_cap=hard_cap, price=price, market=m, fee_rate=fee)
    unit_cost = price * (1 + fee)
    minimum = min_buy_quantity(m, price, fee)
    if s.reason != R.APPROVED:
        assert s.reason == R.BELOW_MIN_NOTIONAL
        assert (s.quantity, s.notional, s.cost) == (0, 0, 0)
        assert minimum * unit_cost > hard_cap  # refused only when the cap cannot pay
        return
    assert s.quantity > 0
    assert on_grid(s.quantity, m.amount_increment)
    assert s.quantity >= m.min_size
    assert s.notional == s.quantity * price
    assert s.cost == s.notional * (1 + fee)
    assert s.notional * (1 - fee) >= m.min_notional  # sellable after the fee
    if s.cost > budget:
        # Only ever by rounding up to the minimum, and never past the hard cap.
        assert s.quantity == minimum
        assert s.cost <= hard_cap
    else:
        # The floor is tight: one more increment would break the budget.
        assert (s.quantity + m.amount_increment) * unit_cost > budget


@PROPS
@given(markets(), prices, st.decimals(min_value=0, max_value=10**6, places=8))
def test_size_sell_invariants(m: Market, price: Decimal, quantity: Decimal) -> None:
    fee = m.taker_fee
    s = size_sell(quantity=quantity, price=price, market=m, fee_rate=fee)
    if s.reason != R.APPROVED:
        assert s.reason == R.DUST and (s.quantity, s.notional, s.cost) == (0, 0, 0)
        return
    assert 0 < s.quantity <= quantity
    assert quantity - s.quantity < m.amount_increment
    assert on_grid(s.quantity, m.amount_increment)
    assert s.quantity >= m.min_size and s.notional >= m.min_notional
    assert s.cost == s.notional * (1 - fee) <= s.notional


# --------------------------------------------------------------------------- order fills


@PROPS
@given(
    st.lists(
        st.tuples(st.integers(1, 5_000), st.decimals(min_value=1, max_value=1000, places=2)),
        min_size=1,
        max_size=8,
    ),
    fee_rates,
)
def test_fills_accumulate_to_filled_with_a_bounded_vwap(
    chunks: list[tuple[int, Decimal]], rate: Decimal
) -> None:
    amounts = [D(n) / 1000 for n, _ in chunks]
    total = sum(amounts, D(0))
    o = Order("c", "X/USDT", Side.BUY, OrderType.LIMIT, total, D(1000), OrderStatus.OPEN, 0, 0)
    fees = D(0)
    for k, (amt, (_, px)) in enumerate(zip(amounts, chunks, strict=True)):
        fee = amt * px * rate
        fees += fee
        o = fill_order(o, Fill(f"f{k}", "c", "X/USDT", Side.BUY, px, amt, fee, k))
        assert o.status is (OrderStatus.FILLED if k == len(chunks) - 1 else OrderStatus.PARTIAL)
    assert o.filled == total and o.remaining == 0 and o.fee == fees >= 0
    lo, hi = min(px for _, px in chunks), max(px for _, px in chunks)
    assert lo <= o.avg_fill_price <= hi
    exact = sum((a * px for a, (_, px) in zip(amounts, chunks, strict=True)), D(0)) / total
    assert abs(o.avg_fill_price - exact) <= exact * D("1e-24")


# --------------------------------------------------------------------------- client order ids

names = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=16)
symbols = st.builds(
    lambda b, q: f"{b}/{q}",
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6),
    st.sampled_from(["USDT", "USDC", "USD", "BTC"]),
)
id_inputs = st.tuples(
    names,
    symbols,
    st.sampled_from(list(Side)),
    st.decimals(min_value=D("0.00000001"), max_value=10**9, places=8),
    st.integers(0, 2**45),
)
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@PROPS
@given(id_inputs, id_inputs)
def test_client_order_ids_are_safe_deterministic_and_distinct(a: Any, b: Any) -> None:
    ida, idb = client_order_id(*a), client_order_id(*b)
    assert ID_RE.fullmatch(ida) and len(ida) == 32
    assert client_order_id(*a) == ida
    same = a[:3] == b[:3] and a[3] == b[3] and a[4] == b[4]
    assert (ida == idb) is same


# --------------------------------------------------------------------------- portfolio

qtys = st.decimals(min_value=D("0.0001"), max_value=1000, places=4)
book_prices = st.decimals(min_value=D("0.01"), max_value=100_000, places=2)
# (is_buy, price, amount, fee rate, share of the position to sell in percent)
steps = st.lists(
    st.tuples(st.booleans(), book_prices, qtys, fee_rates, st.integers(1, 100)),
    min_size=1,
    max_size=15,
)


def replay(start: Decimal, ops: list[Any], *, buy_price: Decimal | None = None) -> Portfolio:
    """Buys and sells of one symbol; sells take a share of what is held."""
    p = Portfolio(cash=start)
    for k, (is_buy, px, amt, rate, pct) in enumerate(ops):
        pos = p.positions.get("X/USDT")
        if is_buy or pos is None:
            px = buy_price or px
        else:
            amt = (pos.quantity * pct / 100).quantize(D("0.0001"))
            if amt <= 0:
                continue
        side = Side.BUY if is_buy or pos is None else Side.SELL
        before = p.fees_paid
        p = apply_fill(p, Fill(f"f{k}", "c", "X/USDT", side, px, amt, px * amt * rate, k)).portfolio
        assert p.fees_paid >= before >= 0  # fees never negative, never refunded
    return p


def identity_gap(p: Portfolio, start: Decimal, mark: Decimal) -> Decimal:
    """(cash + sum(qty x mark)) - (start + realized + unrealized)."""
    held = sum((pos.quantity * mark for pos in p.positions.values()), D(0))
    v = value(p, {"X/USDT": mark})
    assert v.equity == p.cash + held
    return p.cash + held - (start + p.realized_pnl + v.unrealized)


@PROPS
@given(steps, book_prices, st.sampled_from([D(10_000), D(1_000_000)]))
def test_equity_is_conserved_to_decimal_precision(
    ops: list[Any], mark: Decimal, start: Decimal
) -> None:
    p = replay(start, ops)
    scale = start + sum(px * amt for _, px, amt, _, _ in ops)
    assert abs(identity_gap(p, start, mark)) <= scale * D("1e-24")


@PROPS
@given(steps, book_prices, book_prices, st.sampled_from([D(10_000), D(1_000_000)]))
def test_equity_is_conserved_exactly_when_every_buy_is_at_one_price_without_fees(
    ops: list[Any], mark: Decimal, buy_price: Decimal, start: Decimal
) -> None:
    no_fees = [(b, px, a, D(0), pct) for b, px, a, _, pct in ops]
    p = replay(start, no_fees, buy_price=buy_price)
    assert identity_gap(p, start, mark) == 0


def test_equity_is_conserved_exactly_with_an_averaged_entry() -> None:
    ops = [
        (True, D(2), D("1.5"), D(0), 0),
        (True, D(3), D(7), D(0), 0),
        (False, D(10), D("0.1"), D("0.001"), 0),
    ]
    p = Portfolio(cash=D(10_000))
    for k, (is_buy, px, amt, rate, _) in enumerate(ops):
        side = Side.BUY if is_buy else Side.SELL
        p = apply_fill(p, Fill(f"f{k}", "c", "X/USDT", side, px, amt, px * amt * rate, k)).portfolio
    assert identity_gap(p, D(10_000), D(2)) == 0


@PROPS
@given(
    book_prices,
    st.lists(st.tuples(qtys, fee_rates), min_size=1, max_size=6),
    fee_rates,
)
def test_round_trip_at_one_price_loses_exactly_the_fees(
    px: Decimal, buys: list[tuple[Decimal, Decimal]], sell_rate: Decimal
) -> None:
    start = D(1_000_000)
    p = Portfolio(cash=start)
    for k, (amt, rate) in enumerate(buys):
        p = apply_fill(
            p, Fill(f"b{k}", "c", "X/USDT", Side.BUY, px, amt, px * amt * rate, k)
        ).portfolio
    qty = p.positions["X/USDT"].quantity
    b = apply_fill(p, Fill("s", "c", "X/USDT", Side.SELL, px, qty, px * qty * sell_rate, 99))
    fees = b.portfolio.fees_paid
    assert b.closed and not b.portfolio.positions
    assert fees >= 0
    assert b.portfolio.realized_pnl == -fees
    assert b.portfolio.cash == start - fees


def test_round_trip_sold_in_pieces_loses_exactly_the_fees() -> None:
    p = Portfolio(cash=D(1000))
    p = apply_fill(p, Fill("b", "c", "X/USDT", Side.BUY, D(7), D("1.5"), D("0.07"), 1)).portfolio
    p = apply_fill(p, Fill("s1", "c", "X/USDT", Side.SELL, D(7), D(1), D(0), 2)).portfolio
    p = apply_fill(p, Fill("s2", "c", "X/USDT", Side.SELL, D(7), D("0.5"), D(0), 3)).portfolio
    assert p.cash == D("999.93")
    assert p.realized_pnl == D("-0.07")


# --------------------------------------------------------------------------- risk caps

SYMS = ("A/USDT", "B/USDT", "C/USDT", "D/USDT", "E/USDT", "A/USDC")
THEMES = {"A": "t1", "B": "t1", "C": "t2", "D": "t3"}  # E: unassigned


@st.composite
def risk_scenarios(draw: Any) -> tuple[list[TradeProposal], RiskInputs, PipelineConfig]:
    total = draw(st.integers(1, 100))
    theme = draw(st.integers(1, total))
    asset = draw(st.integers(1, theme))
    cfg = PipelineConfig(
        universe=UniverseConfig(themes=THEMES),
        risk=RiskConfig(
            max_total_exposure_pct=total,
            max_theme_exposure_pct=theme,
            max_asset_exposure_pct=asset,
            max_open_positions=draw(st.integers(1, 8)),
            position_size_pct=draw(st.integers(1, min(40, total))),
        ),
        execution=ExecutionConfig(min_depth_multiple=0),
        strategies={
            "rules": StrategyConfig(
                enabled=True,
                budget=StrategyBudget(
                    max_at_risk_pct=draw(st.integers(1, total)),
                    max_trades_per_cycle=draw(st.integers(0, 4)),
                ),
            )
        },
    )
    mk = {
        s: Market(s, s.split("/")[0], s.split("/")[1], D("0.01"), D("0.001"), D("0.001"), D(5))
        for s in SYMS
    }
    px = {s: draw(st.decimals(min_value=1, max_value=500, places=2)) for s in SYMS}
    quotes = {s: Quote(s, px[s], px[s] + D("0.01"), px[s], 0) for s in SYMS}
    p = Portfolio(cash=draw(st.decimals(min_value=100, max_value=100_000, places=2)))
    for k, s in enumerate(draw(st.lists(st.sampled_from(SYMS), max_size=3, unique=True))):
        amt = draw(st.decimals(min_value=D("0.01"), max_value=50, places=3))
        f = Fill(f"f{k}", "c", s, Side.BUY, px[s], amt, D(0), 0)
        p = apply_fill(p, f, strategy="rules").portfolio
    orders = [
        Order(
            f"o{k}",
            s,
            Side.BUY,
            OrderType.LIMIT,
            D(1),
            px[s],
            OrderStatus.OPEN,
            0,
            0,
            strategy=draw(st.sampled_from(["rules", "ema_cross"])),
        )
        for k, s in enumerate(draw(st.lists(st.sampled_from(SYMS), max_size=2, unique=True)))
    ]
    marks = {s: px[s] for s in p.positions}
    ex = exposure(p, marks, orders, base_of=lambda s: mk[s].base, theme_of=cfg.universe.theme_of)
    inp = RiskInputs(
        now_ms=0,
        state=TradingState.ACTIVE,
        multiplier=draw(st.sampled_from([D("0.25"), D("0.5"), D(1)])),
        eligible=frozenset(SYMS),
        markets=mk,
        quotes=quotes,
        books={},
        portfolio=p,
        equity=value(p, marks).equity,
        exposure=ex,
        open_orders=tuple(orders),
        cooldowns={},
    )
    props = [
        TradeProposal(strat, s, Side.BUY, ProposalKind.ENTRY, 0.9, "t", px[s])
        for s, strat in draw(
            st.lists(
                st.tuples(st.sampled_from(SYMS), st.sampled_from(["rules", "ema_cross"])),
                max_size=8,
            )
        )
    ]
    props += [
        TradeProposal("exits", s, Side.SELL, ProposalKind.EXIT, 1.0, "x", px[s], None, True)
        for s in draw(st.lists(st.sampled_from(SYMS), max_size=3))
    ]
    return props, inp, cfg


@FEW
@given(risk_scenarios())
def test_approved_entries_never_break_a_cap(scenario: Any) -> None:
    props, inp, cfg = scenario
    verdicts, intents = assess(props, inp, cfg)
    assert len(verdicts) == len(props)
    assert all(v.reason in set(R) for v in verdicts)
    assert len(intents) == sum(v.approved for v in verdicts)

    eq, risk, ex = inp.equity, cfg.risk, inp.exposure
    total = ex.total
    by_asset, by_theme, by_strategy = dict(ex.by_asset), dict(ex.by_theme), dict(ex.by_strategy)
    cash = inp.portfolio.cash - ex.pending_buy_cost
    # Dust holdings (too small to sell) take no slot: see core.risk.dust_symbols.
    held = set(inp.portfolio.positions) - dust_symbols(inp)
    slots = len(held | {o.symbol for o in inp.open_orders})
    trades: dict[str, int] = {}
    for v in verdicts:
        if not v.approved:
            continue
        p = v.proposal
        if p.kind is ProposalKind.EXIT:
            assert v.quantity <= inp.portfolio.positions[p.symbol].quantity
            continue
        m = inp.markets[p.symbol]
        theme = cfg.universe.theme_of(m.base)
        budget = (
            cfg.strategies[p.strategy].budget if p.strategy in cfg.strategies else StrategyBudget()
        )
        total += v.notional
        by_asset[m.base] = by_asset.get(m.base, D(0)) + v.notional
        by_theme[theme] = by_theme.get(theme, D(0)) + v.notional
        by_strategy[p.strategy] = by_strategy.get(p.strategy, D(0)) + v.notional
        cash -= v.notional * (1 + m.maker_fee)
        slots += 1
        trades[p.strategy] = trades.get(p.strategy, 0) + 1
        assert total <= eq * risk.max_total_exposure_pct / 100
        assert by_asset[m.base] <= eq * risk.max_asset_exposure_pct / 100
        assert by_theme[theme] <= eq * risk.max_theme_exposure_pct / 100
        assert by_strategy[p.strategy] <= eq * budget.max_at_risk_pct / 100
        assert cash >= 0
        assert slots <= risk.max_open_positions
        assert trades[p.strategy] <= budget.max_trades_per_cycle
        target = eq * risk.position_size_pct / 100 * inp.multiplier
        # The minimum order stays sellable after a fall to the stop (margin over min notional).
        margin = D(100) / (D(100) + cfg.exits.stop_loss_pct)
        minimum = min_buy_quantity(m, v.price, m.maker_fee, margin)
        assert v.notional <= target or v.quantity == minimum

    for i in intents:
        m = inp.markets[i.symbol]
        assert on_grid(i.amount, m.amount_increment) and i.amount >= m.min_size
        if i.side is Side.SELL:
            assert i.reduce_only
        else:
            assert i.order_type is OrderType.LIMIT and i.post_only and not i.reduce_only
            assert i.price is not None and on_grid(i.price, m.price_increment)
            assert i.price <= inp.quotes[i.symbol].bid
