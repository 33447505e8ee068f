"""Shadow mode: a real SimExchange plays the venue (10 bps taker slippage), the shadow's own
SimExchange models it (2 bps); the recorded comparisons are checked to the digit."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.clock import SimClock
from core.errors import InsufficientFunds, OrderNotFound, RequestTimeout
from core.models import Market, Order, OrderIntent, OrderStatus, OrderType, Quote, Side
from infra.audit import AuditLog
from infra.exchange.shadow import ShadowExchange
from infra.exchange.sim import SimExchange
from infra.exchange.sim_config import SimConfig

D = Decimal
TF = 60_000
BTC = "BTC/USDT"
ETH = "ETH/USDT"


def market(symbol: str) -> Market:
    base, quote = symbol.split("/")
    return Market(
        symbol=symbol,
        base=base,
        quote=quote,
        price_increment=D("0.01"),
        amount_increment=D("0.001"),
        min_size=D("0.01"),
        min_notional=D("5"),
        maker_fee=D("0.001"),
        taker_fee=D("0.002"),
    )


MARKETS = {s: market(s) for s in (BTC, ETH)}


class Monotonic:
    """Hands out the given readings in order (seconds)."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def __call__(self) -> float:
        return self.readings.pop(0)


class TimeoutVenue(SimExchange):
    """A venue whose order submits time out before reaching it."""

    async def create_order(self, intent: OrderIntent) -> Order:
        raise RequestTimeout("no answer in 10 s")


class InstantVenue(SimExchange):
    """A venue that answers a submit with the order already filled, and whose fills never
    show up in the trade history we read."""

    async def create_order(self, intent: OrderIntent) -> Order:
        o = await super().create_order(intent)
        return replace(
            o,
            status=OrderStatus.FILLED,
            filled=intent.amount,
            avg_fill_price=D("100.05"),
            fee=D("0.2001"),
        )


class Rig:
    def __init__(
        self,
        *,
        venue_cls: type[SimExchange] = SimExchange,
        venue_cap: str = "0.1",
        sim_cap: str = "0.1",
        sim_symbols: tuple[str, ...] = (BTC, ETH),
        mono: Monotonic | None = None,
        record: Any = None,
        clock: SimClock | None = None,
        **shadow_kw: Any,
    ) -> None:
        self.clock = clock or SimClock(0)
        self.venue = venue_cls(
            markets=MARKETS,
            config=SimConfig(
                slippage_bps=D(10),
                slippage_vol_mult=D(0),
                participation_cap=D(venue_cap),
                starting_balances={"USDT": D(100_000), "BTC": D(10)},
            ),
            rng=random.Random(1),
            clock=self.clock,
            timeframe_ms=TF,
            name="venue",
        )
        self.sims: list[SimExchange] = []
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.mono = mono or Monotonic(*(float(i) for i in range(100)))

        def factory(markets: Mapping[str, Market]) -> SimExchange:
            # An empty wallet on purpose: the shadow tops it up per order.
            sim = SimExchange(
                markets={s: markets[s] for s in sim_symbols},
                config=SimConfig(
                    slippage_bps=D(2),
                    slippage_vol_mult=D(0),
                    participation_cap=D(sim_cap),
                    starting_balances={},
                ),
                rng=random.Random(2),
                clock=self.clock,
                timeframe_ms=TF,
                name="shadow-sim",
            )
            self.sims.append(sim)
            return sim

        self.shadow = ShadowExchange(
            live=self.venue,
            sim_factory=factory,
            clock=self.clock,
            record=record or (lambda kind, data: self.records.append((kind, data))),
            monotonic=self.mono,
            **shadow_kw,
        )

    @property
    def sim(self) -> SimExchange:
        return self.sims[0]

    def candle(
        self, i: int, o: float, h: float, lo: float, c: float, v: float = 1000, sym: str = BTC
    ) -> None:
        """Close candle i (open time i*TF) on the venue and in the shadow's feed."""
        self.clock.advance_to(max(self.clock.now_ms(), (i + 1) * TF))
        self.venue.on_candle(sym, i * TF, o, h, lo, c, v)
        self.shadow.on_candle(sym, i * TF, o, h, lo, c, v)

    async def quote(self, bid: str, ask: str, sym: str = BTC) -> None:
        """The venue's book moves to bid/ask; the engine's quote fetch shows it to the shadow."""
        self.venue.set_quote(
            Quote(symbol=sym, bid=D(bid), ask=D(ask), last=D(bid), ts=self.clock.now_ms())
        )
        await self.shadow.fetch_quotes([sym])

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.records if k == kind]


def intent(
    coid: str,
    side: Side = Side.BUY,
    *,
    price: str | None = None,
    amount: str = "1.000",
    symbol: str = BTC,
    post_only: bool = False,
) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        symbol=symbol,
        side=side,
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        amount=D(amount),
        price=None if price is None else D(price),
        strategy="test",
        cycle_ms=0,
        post_only=post_only,
    )


async def started(rig: Rig) -> Rig:
    await rig.shadow.load_markets()
    rig.candle(0, 100, 100.5, 99.5, 100)
    return rig


async def test_market_buy_slippage_fees_and_latency_recorded_exactly() -> None:
    rig = await started(Rig(mono=Monotonic(10.0, 10.25)))
    await rig.quote("99.90", "100.00")
    ack = await rig.shadow.create_order(intent("b1"))
    assert ack.status is OrderStatus.OPEN  # the venue's answer, passed through untouched
    rig.candle(1, 100, 101, 99, 100.5)  # venue fills at 100.10, the sim at 100.02

    fills = await rig.shadow.fetch_my_trades()
    assert [(f.client_order_id, f.price) for f in fills] == [("b1", D("100.10"))]
    assert rig.kinds("shadow_order") == []  # the engine has not seen the order end yet
    order = await rig.shadow.fetch_order("b1", BTC)
    assert order.status is OrderStatus.FILLED

    [fill] = rig.kinds("shadow_fill")
    assert fill["fill_id"] == "b1-1"
    assert fill["slippage_bps"] == "10.00"
    assert fill["since_submit_ms"] == 0
    [rec] = rig.kinds("shadow_order")
    assert rec["client_order_id"] == "b1"
    assert (rec["side"], rec["type"]) == ("buy", "market")
    assert rec["intended_price"] == "100.00"  # the ask the strategy saw
    assert rec["intended_qty"] == "1.000"
    assert rec["quote"] == {"bid": "99.90", "ask": "100.00", "ts": 60_000}
    live = rec["live"]
    assert live["status"] == "FILLED"
    assert D(live["filled"]) == D(1)
    assert D(live["avg_price"]) == D("100.10")
    assert D(live["fee"]) == D("0.2002")  # 100.10 x 0.002
    assert live["ack_latency_ms"] == 250
    assert (
        live["first_fill_latency_ms"] == 0
    )  # submitted at 60000, filled on the candle opening then
    sim = rec["sim"]
    assert sim["status"] == "FILLED"
    assert D(sim["filled"]) == D(1)
    assert D(sim["avg_price"]) == D("100.02")
    assert D(sim["fee"]) == D("0.20004")
    assert sim["first_fill_latency_ms"] == 0
    assert rec["slippage_bps"] == "10.00"  # (100.10 - 100.00) / 100.00: worse for us, positive
    assert rec["sim_slippage_bps"] == "2.00"
    assert rec["sim_vs_live_bps"] == "8.00"  # live paid 8 bps more than the sim said
    assert rig.shadow.tracked == 0


async def test_filled_in_the_ack_and_fills_never_seen_uses_the_order_after_the_grace() -> None:
    rig = await started(Rig(venue_cls=InstantVenue, mono=Monotonic(5.0, 5.08)))
    await rig.quote("99.90", "100.00")
    await rig.shadow.create_order(intent("i1"))
    rig.candle(1, 100, 101, 99, 100)  # the sim fills its copy at 100.02
    assert await rig.shadow.reconcile_shadow() == 0  # still waiting for the live fills
    rig.clock.advance_to(60_000 + 3 * TF)  # submitted (and ended) at 60000, plus the grace
    assert await rig.shadow.reconcile_shadow() == 1

    [rec] = rig.kinds("shadow_order")
    assert rec["live"]["status"] == "FILLED"
    assert D(rec["live"]["avg_price"]) == D("100.05")
    assert D(rec["live"]["fee"]) == D("0.2001")
    assert rec["live"]["fills"] == 0
    assert rec["live"]["ack_latency_ms"] == 80
    assert rec["live"]["first_fill_latency_ms"] == 80  # filled before the answer came back
    assert rec["sim"]["status"] == "FILLED"
    assert (rec["slippage_bps"], rec["sim_slippage_bps"], rec["sim_vs_live_bps"]) == (
        "5.00",
        "2.00",
        "3.00",
    )


async def test_sell_slippage_is_positive_when_worse_and_negative_when_better() -> None:
    rig = await started(Rig())
    await rig.quote("100.00", "100.10")
    await rig.shadow.create_order(intent("s1", Side.SELL))
    rig.candle(1, 100, 101, 99, 100)  # venue sells at 99.90, the sim at 99.98
    await rig.shadow.fetch_my_trades()
    await rig.shadow.fetch_order("s1", BTC)
    await rig.quote("99.90", "100.00")
    await rig.shadow.create_order(intent("b2"))
    rig.candle(2, 99.5, 101, 99, 100)  # opens below the ask: 99.60 live, 99.52 sim
    await rig.shadow.fetch_my_trades()
    await rig.shadow.fetch_order("b2", BTC)

    sell, buy = rig.kinds("shadow_order")
    assert sell["intended_price"] == "100.00"  # the bid
    assert D(sell["live"]["avg_price"]) == D("99.90")
    assert sell["slippage_bps"] == "10.00"
    assert sell["sim_slippage_bps"] == "2.00"
    assert sell["sim_vs_live_bps"] == "8.00"
    assert D(buy["live"]["avg_price"]) == D("99.60")
    assert buy["slippage_bps"] == "-40.00"  # bought 40 bps under the ask: better for us
    assert buy["sim_slippage_bps"] == "-48.00"
    assert buy["sim_vs_live_bps"] == "8.00"


async def test_limit_that_never_fills_and_is_canceled() -> None:
    rig = await started(Rig(mono=Monotonic(1.0, 1.04)))
    await rig.quote("99.90", "100.00")
    await rig.shadow.create_order(intent("l1", price="95.00", post_only=True))
    rig.candle(1, 100, 101, 99, 100)
    rig.candle(2, 100, 101, 99, 100)
    assert await rig.shadow.fetch_open_orders() != []
    assert rig.kinds("shadow_order") == []
    canceled = await rig.shadow.cancel_order("l1", BTC)
    assert canceled.status is OrderStatus.CANCELED

    [rec] = rig.kinds("shadow_order")
    assert rec["intended_price"] == "95.00"
    assert rec["post_only"] is True
    assert rec["live"] == {
        "status": "CANCELED",
        "filled": "0",
        "avg_price": None,
        "fee": "0",
        "ack_latency_ms": 40,
        "first_fill_latency_ms": None,
        "fills": 0,
        "error": "",
    }
    assert rec["sim"]["status"] == "CANCELED"
    assert D(rec["sim"]["filled"]) == 0
    assert rec["sim"]["avg_price"] is None
    assert rec["slippage_bps"] is None
    assert rec["sim_vs_live_bps"] is None
    # The sim's copy ended with the live one: nothing left resting in the sim.
    assert await rig.sim.fetch_open_orders() == []
    assert rig.shadow.tracked == 0


async def test_mid_candle_order_latency_counts_from_submit() -> None:
    rig = await started(Rig())
    await rig.quote("99.90", "100.00")
    rig.clock.advance_to(90_000)  # half-way through candle 1
    await rig.shadow.create_order(intent("m1"))
    rig.candle(1, 100, 101, 99, 100)  # opened before the submit: no fill for anyone
    rig.candle(2, 100, 101, 99, 100)
    await rig.shadow.fetch_my_trades()
    await rig.shadow.fetch_order("m1", BTC)
    [rec] = rig.kinds("shadow_order")
    assert rec["submitted_ms"] == 90_000
    assert rec["live"]["first_fill_latency_ms"] == 30_000  # fill ts 120000 - submit 90000
    assert rec["sim"]["first_fill_latency_ms"] == 30_000


async def test_live_filled_sim_partial_waits_for_grace_then_cancels_the_sim() -> None:
    # The venue lets an order take the whole candle; the sim only a tenth of its volume.
    rig = await started(Rig(venue_cap="1", sim_cap="0.1"))
    await rig.quote("99.90", "100.00")
    await rig.shadow.create_order(intent("g1", price="99.50", post_only=True))
    rig.candle(1, 100, 100.5, 99.4, 100, v=5)  # trades through 99.50: venue 1.000, sim 0.500
    await rig.shadow.fetch_my_trades()
    await rig.shadow.fetch_order("g1", BTC)  # FILLED live at 120000
    assert rig.kinds("shadow_order") == []  # the sim may still follow within the grace
    rig.candle(2, 100, 101, 99.8, 100)
    await rig.shadow.fetch_open_orders()
    assert rig.kinds("shadow_order") == []
    rig.candle(3, 100, 101, 99.8, 100)
    await rig.shadow.fetch_open_orders()
    assert rig.kinds("shadow_order") == []
    rig.candle(4, 100, 101, 99.8, 100)  # clock 300000 = live end + 3 candles
    await rig.shadow.fetch_open_orders()

    [rec] = rig.kinds("shadow_order")
    assert rec["live"]["status"] == "FILLED"
    assert D(rec["live"]["filled"]) == D(1)
    assert D(rec["live"]["fee"]) == D("0.0995")  # maker: 99.50 x 0.001
    assert rec["sim"]["status"] == "CANCELED"
    assert D(rec["sim"]["filled"]) == D("0.5")
    assert D(rec["sim"]["avg_price"]) == D("99.50")
    assert D(rec["sim"]["fee"]) == D("0.04975")
    assert rec["slippage_bps"] == "0.00"
    assert rec["sim_vs_live_bps"] == "0.00"
    assert await rig.sim.fetch_open_orders() == []


async def test_sim_refusal_is_recorded_not_raised() -> None:
    # The shadow started without ETH data: its sim cannot price a market order yet.
    rig = await started(Rig())
    rig.venue.on_candle(ETH, 0, 50, 51, 49, 50, 1000)
    ack = await rig.shadow.create_order(intent("e1", symbol=ETH))
    assert ack.status is OrderStatus.OPEN
    rig.clock.advance_to(2 * TF)
    rig.venue.on_candle(ETH, TF, 50, 51, 49, 50, 1000)
    await rig.shadow.fetch_my_trades()
    await rig.shadow.fetch_order("e1", ETH)

    [rec] = rig.kinds("shadow_order")
    assert rec["live"]["status"] == "FILLED"
    assert rec["sim"]["status"] == "REFUSED"
    assert rec["sim"]["reason"].startswith("InvalidOrder: ETH/USDT: no price yet")
    assert rec["intended_price"] is None  # no live quote was seen either
    assert rec["slippage_bps"] is None


async def test_sim_without_the_symbol_refuses_too() -> None:
    rig = await started(Rig(sim_symbols=(BTC,)))
    rig.venue.on_candle(ETH, 0, 50, 51, 49, 50, 1000)
    await rig.shadow.create_order(intent("e2", price="49.00", symbol=ETH, post_only=True))
    await rig.shadow.cancel_order("e2", ETH)
    [rec] = rig.kinds("shadow_order")
    assert rec["sim"]["status"] == "REFUSED"
    assert rec["sim"]["reason"].startswith("BadSymbol")
    assert rec["live"]["status"] == "CANCELED"


async def test_live_refusal_is_raised_and_recorded_with_the_sim_copy_canceled() -> None:
    rig = await started(Rig(mono=Monotonic(3.0, 3.002)))
    await rig.quote("99.90", "100.00")
    with pytest.raises(InsufficientFunds):
        await rig.shadow.create_order(intent("big", price="99.00", amount="5000.000"))
    [rec] = rig.kinds("shadow_order")
    assert rec["live"]["status"] == "REJECTED"
    assert rec["live"]["error"].startswith("InsufficientFunds")
    assert rec["live"]["ack_latency_ms"] == 2
    assert rec["sim"]["status"] == "CANCELED"  # the sim took it (its wallet is topped up)
    assert await rig.sim.fetch_open_orders() == []


async def test_submit_timeout_then_not_found_is_recorded_as_failed() -> None:
    rig = await started(Rig(venue_cls=TimeoutVenue))
    await rig.quote("99.90", "100.00")
    with pytest.raises(RequestTimeout):
        await rig.shadow.create_order(intent("t1", price="99.00"))
    assert rig.kinds("shadow_order") == []  # outcome unknown: wait for the lookup
    with pytest.raises(OrderNotFound):
        await rig.shadow.fetch_order("t1", BTC)
    [rec] = rig.kinds("shadow_order")
    assert rec["live"]["status"] == "FAILED"
    assert rec["live"]["error"] == "RequestTimeout"
    assert rec["live"]["ack_latency_ms"] is None
    assert rec["sim"]["status"] == "CANCELED"


async def test_memory_is_bounded_and_entries_dropped_once_recorded() -> None:
    rig = await started(Rig(max_orders=2))
    await rig.quote("99.90", "100.00")
    for n, px in enumerate(("95.00", "94.00", "93.00")):
        await rig.shadow.create_order(intent(f"o{n}", price=px, post_only=True))
    assert rig.shadow.tracked == 2
    [ev] = rig.kinds("shadow_evicted")
    assert ev["client_order_id"] == "o0"
    assert ev["reason"] == "table full"
    assert (await rig.sim.fetch_order("o0", BTC)).status is OrderStatus.CANCELED
    assert (await rig.venue.fetch_order("o0", BTC)).status is OrderStatus.OPEN  # live untouched
    for coid in ("o0", "o1", "o2"):
        await rig.shadow.cancel_order(coid, BTC)
    assert [r["client_order_id"] for r in rig.kinds("shadow_order")] == ["o1", "o2"]
    assert rig.shadow.tracked == 0


async def test_an_ended_order_is_written_not_evicted_when_the_table_is_full() -> None:
    rig = await started(Rig(max_orders=1))
    await rig.quote("99.90", "100.00")
    await rig.shadow.create_order(intent("f1"))
    rig.candle(1, 100, 101, 99, 100)
    await rig.shadow.fetch_order("f1", BTC)  # FILLED, its fill not fetched yet: waiting
    await rig.shadow.create_order(intent("f2", price="95.00", post_only=True))
    [rec] = rig.kinds("shadow_order")
    assert rec["client_order_id"] == "f1"
    assert D(rec["live"]["avg_price"]) == D("100.10")  # from the order, as the venue said
    assert rig.kinds("shadow_evicted") == []


async def test_observer_hook_and_broken_recorder_never_break_trading() -> None:
    seen: list[Mapping[str, Any]] = []

    class Observer:
        def on_shadow(self, data: Mapping[str, Any]) -> None:
            seen.append(data)

    rig = await started(Rig(observer=Observer()))
    await rig.quote("99.90", "100.00")
    await rig.shadow.create_order(intent("h1", price="95.00", post_only=True))
    await rig.shadow.cancel_order("h1", BTC)
    assert seen == rig.kinds("shadow_order")
    assert len(seen) == 1

    def broken(kind: str, data: dict[str, Any]) -> None:
        raise OSError("disk full")

    rig2 = await started(Rig(record=broken))
    await rig2.quote("99.90", "100.00")
    await rig2.shadow.create_order(intent("x1", price="95.00", post_only=True))
    order = await rig2.shadow.cancel_order("x1", BTC)
    assert order.status is OrderStatus.CANCELED
    assert rig2.shadow.errors == 1
    rig2.shadow.on_candle(BTC, 0, 100, 101, 99, 100, 1000)  # not newer for the sim: ignored
    rig2.shadow.on_candle(BTC, TF, 100, 99, 101, 100, 1000)  # high below low: ignored
    assert rig2.shadow.errors == 1


async def test_passes_account_and_market_data_through_to_live() -> None:
    rig = await started(Rig())
    assert rig.shadow.name == "shadow(venue)"
    assert await rig.shadow.fetch_balances() == await rig.venue.fetch_balances()
    assert await rig.shadow.fetch_fees() == await rig.venue.fetch_fees()
    assert len(await rig.shadow.fetch_ohlcv(BTC, "1m")) == 1
    book = await rig.shadow.fetch_order_book(BTC, 5)
    assert len(book.asks) == 5
    await rig.shadow.close()


def test_bad_settings_are_refused() -> None:
    rig = Rig()
    with pytest.raises(ValueError, match="max_orders"):
        ShadowExchange(
            live=rig.venue,
            sim_factory=lambda m: rig.venue,
            clock=rig.clock,
            record=lambda k, d: None,
            max_orders=0,
        )


async def test_records_through_the_audit_log_feed_the_report(tmp_path: Path) -> None:
    from runner.shadow_report import build_shadow_report

    clock = SimClock(0)
    with AuditLog(tmp_path, config_hash="cafe", clock=clock, fsync=False) as audit:
        rig = await started(
            Rig(record=audit.append, mono=Monotonic(1.0, 1.1, 2.0, 2.3), clock=clock)
        )
        await rig.quote("99.90", "100.00")
        await rig.shadow.create_order(intent("a1"))
        await rig.shadow.create_order(intent("a2", price="95.00", post_only=True))
        rig.candle(1, 100, 101, 99, 100)
        await rig.shadow.fetch_my_trades()
        await rig.shadow.fetch_order("a1", BTC)
        await rig.shadow.cancel_order("a2", BTC)
    report = build_shadow_report(tmp_path)
    assert report["records"] == 2
    assert report["slippage_bps"]["buy/market"]["median"] == 10.0
    assert report["sim_vs_live_bps"]["all"]["median"] == 8.0
    assert report["latency_ms"]["ack"] == {"n": 2, "median": 200.0, "mean": 200.0, "p95": 300.0}
    assert report["fill_rate"]["all"]["live_rate"] == 0.5
