"""Fast exits between cycles: the cycle's exit rule, its gate and its risk check, one symbol."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

from core.config import PipelineConfig
from core.cycle import EXITS
from core.fast_exit import plan_fast_exit
from core.models import (
    BreakerState,
    EngineState,
    Market,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
)
from core.portfolio import Portfolio
from core.reasons import RiskReason as R

D = Decimal
NOW = 1_704_067_200_000
SYM = "SOL/USDT"
MARKETS = {
    SYM: Market(
        symbol=SYM,
        base="SOL",
        quote="USDT",
        price_increment=D("0.01"),
        amount_increment=D("0.001"),
        min_size=D("0.001"),
        min_notional=D(5),
    )
}
CFG = PipelineConfig()  # stop_loss_pct from the defaults
POS = Position(SYM, D(2), D(100), D(0), NOW - 60_000, D(100))
BOOK = Portfolio(cash=D(1000), positions={SYM: POS}, quote="USDT")


def q(last: str) -> Quote:
    return Quote(SYM, D(last), D(last), D(last), NOW)


def plan(price: str, *, state: EngineState | None = None, kill: bool = False, orders=()):  # type: ignore[no-untyped-def]
    return plan_fast_exit(
        symbol=SYM,
        quote=q(price),
        portfolio=BOOK,
        markets=MARKETS,
        features={},
        state=state or EngineState(),
        open_orders=orders,
        config=CFG,
        now_ms=NOW,
        kill=kill,
    )


def crash() -> str:
    return str(D(100) * (1 + (CFG.exits.stop_loss_pct - 1) / 100))


def test_a_price_through_the_stop_sells_the_whole_position_reduce_only() -> None:
    p = plan(crash())
    assert p.proposal is not None and p.proposal.strategy == EXITS
    assert p.proposal.reason == "stop_loss"
    [intent] = p.intents
    assert intent.side is Side.SELL and intent.reduce_only and intent.amount == D(2)
    assert intent.order_type is OrderType(CFG.execution.exit_order_type)


def test_a_price_inside_the_stop_does_nothing() -> None:
    assert plan("99.9").proposal is None


def test_the_kill_switch_and_a_halting_breaker_block_it_as_in_the_cycle() -> None:
    assert plan(crash(), kill=True).blocked == "kill_switch"
    assert not plan(crash(), kill=True).intents
    halted = EngineState(
        breakers=MappingProxyType({"stale_data": BreakerState("stale_data", tripped=True)})
    )
    p = plan(crash(), state=halted)
    assert p.blocked == "stale_data" and not p.intents


def test_a_live_sell_means_no_second_sell() -> None:
    live = Order(
        "vgexisting", SYM, Side.SELL, OrderType.LIMIT, D(2), D(99), OrderStatus.OPEN, NOW, NOW,
        reduce_only=True,
    )  # fmt: skip
    p = plan(crash(), orders=(live,))
    assert not p.intents and p.verdicts[0].reason == R.EXIT_PENDING


def test_no_position_no_exit() -> None:
    p = plan_fast_exit(
        symbol="ETH/USDT", quote=q("1"), portfolio=BOOK, markets=MARKETS, features={},
        state=EngineState(), open_orders=(), config=CFG, now_ms=NOW, kill=False,
    )  # fmt: skip
    assert p.proposal is None


def test_the_streamed_high_is_the_trailing_peak_for_the_decision() -> None:
    cfg = CFG.model_copy(
        update={
            "exits": CFG.exits.model_copy(
                update={"trailing_stop_pct": D(2), "trailing_activation_pct": D(1)}
            )
        }
    )

    def trail(high: str | None):  # type: ignore[no-untyped-def]
        return plan_fast_exit(
            symbol=SYM, quote=q("102.5"), portfolio=BOOK, markets=MARKETS, features={},
            state=EngineState(), open_orders=(), config=cfg, now_ms=NOW, kill=False,
            high=None if high is None else D(high),
        )  # fmt: skip

    # stored peak 100: 102.5 is a gain, nothing fires; a streamed high of 105 makes it 2.4% off
    assert trail(None).proposal is None
    p = trail("105")
    assert p.proposal is not None and p.proposal.reason == "trailing_stop" and p.intents
    assert BOOK.positions[SYM].peak_price == D(100)  # the stored peak is the cycle's
