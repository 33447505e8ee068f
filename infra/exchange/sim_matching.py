"""The simulated exchange's fill model: resting orders matched against each closed candle.

`Matcher.match` decides which live orders of a symbol a candle fills, how much and at what
price (docs/sim_exchange.md); a fill is settled in the `SimAccount` and recorded there, and
`finish` moves an order to a terminal status and hands back what it still had reserved.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from decimal import Decimal

from core.clock import Clock
from core.models import ZERO, Fill, Liquidity, OrderStatus, Side
from infra.exchange.sim_account import SimAccount
from infra.exchange.sim_book import SymbolBook
from infra.exchange.sim_config import SimConfig
from infra.exchange.sim_orders import SimOrder
from infra.exchange.sim_prices import affordable, floor_to, quantize_fee, slipped_price, to_dec
from infra.exchange.sim_rules import HALTED


class Matcher:
    """Fills with maker/taker fees, slippage, a participation cap (partial fills), latency."""

    def __init__(
        self,
        *,
        config: SimConfig,
        fees: Mapping[str, tuple[Decimal, Decimal]],
        account: SimAccount,
        rng: random.Random,
        clock: Clock,
    ) -> None:
        self._fees = fees
        self._account = account
        self._rng = rng
        self._clock = clock
        self._slip_bps = float(config.slippage_bps)
        self._vol_mult = float(config.slippage_vol_mult)
        self._cap = config.participation_cap
        self._latency = config.latency_ms

    def match(
        self,
        book: SymbolBook,
        ts: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        v: float,
    ) -> list[Fill]:
        """The fills one closed candle (ts = its open time) gives the book's live orders."""
        market = book.market
        if market.status in HALTED:
            return []
        cap_qty: Decimal | None = None  # built on the first trade-through: most candles have none
        ready = ts - self._latency
        fills: list[Fill] = []
        for order in tuple(book.orders):
            if order.created_ms > ready:
                continue  # still "in flight": fills at the next candle at the earliest
            arriving = not order.arrived
            order.arrived = True
            buy = order.side is Side.BUY
            limit = order.price
            pf = order.price_f
            if limit is not None and ((lo >= pf) if buy else (h <= pf)):
                continue  # the candle did not trade through the price
            if cap_qty is None:
                cap_qty = floor_to(to_dec(v) * self._cap, market.amount_increment)
            qty = min(order.amount - order.filled, cap_qty)
            if qty <= 0:
                continue
            if limit is None:
                px = self._slipped(order.side, o, h, lo, market.price_increment, None)
                liq = Liquidity.TAKER
            elif arriving and not order.post_only and ((o < pf) if buy else (o > pf)):
                # It crossed on arrival: a taker fill at the open, never beyond the limit.
                px = self._slipped(order.side, o, h, lo, market.price_increment, limit)
                liq = Liquidity.TAKER
            else:
                px = limit
                liq = Liquidity.TAKER if order.taker_at_placement else Liquidity.MAKER
            fill = self._apply_fill(book, order, qty, px, liq, ts)
            if fill is not None:
                fills.append(fill)
        return fills

    def _slipped(
        self,
        side: Side,
        o: float,
        h: float,
        lo: float,
        inc: Decimal,
        limit: Decimal | None,
    ) -> Decimal:
        u = self._rng.uniform(0.5, 1.0)
        return slipped_price(side, o, h, lo, inc, limit, u, self._slip_bps, self._vol_mult)

    def _apply_fill(
        self, book: SymbolBook, order: SimOrder, qty: Decimal, px: Decimal, liq: Liquidity, ts: int
    ) -> Fill | None:
        market = book.market
        account = self._account
        maker, taker = self._fees[market.symbol]
        rate = maker if liq is Liquidity.MAKER else taker
        notional = px * qty
        fee = quantize_fee(notional * rate)
        short = False
        if order.side is Side.BUY:
            avail = order.reserved + account.free.get(market.quote, ZERO)
            if notional + fee > avail:
                # A market buy (reserved at the ask seen when placed) can outrun its reserve,
                # a limit buy only by fee rounding: like a venue, fill what the wallet pays
                # for and expire the rest.
                short = True
                qty = affordable(qty, px, rate, avail, market.amount_increment)
                if qty <= 0:
                    self.finish(book, order, OrderStatus.EXPIRED, "insufficient funds at fill")
                    return None
                notional = px * qty
                fee = quantize_fee(notional * rate)
            cost = notional + fee
            from_reserve = min(cost, order.reserved)
            order.reserved -= from_reserve
            account.shift(market.quote, -(cost - from_reserve), -from_reserve)
            account.shift(market.base, qty, ZERO)
        else:
            order.reserved -= qty
            account.shift(market.base, ZERO, -qty)
            account.shift(market.quote, notional - fee, ZERO)
        order.filled += qty
        order.cost += notional
        order.fee += fee
        order.fill_count += 1
        order.updated_ms = self._clock.now_ms()
        fill = Fill(
            fill_id=f"{order.client_order_id}-{order.fill_count}",
            client_order_id=order.client_order_id,
            symbol=market.symbol,
            side=order.side,
            price=px,
            amount=qty,
            fee=fee,
            ts=ts,
            liquidity=liq,
        )
        account.record(fill)
        if order.filled >= order.amount:
            self.finish(book, order, OrderStatus.FILLED, "")
        elif short:
            self.finish(book, order, OrderStatus.EXPIRED, "insufficient funds at fill")
        else:
            order.status = OrderStatus.PARTIAL
        return fill

    def finish(self, book: SymbolBook, order: SimOrder, status: OrderStatus, reason: str) -> None:
        """Move an order to a terminal status and hand back whatever it still had reserved."""
        asset = book.market.quote if order.side is Side.BUY else book.market.base
        self._account.shift(asset, order.reserved, -order.reserved)
        order.reserved = ZERO
        order.status = status
        order.reason = reason or order.reason
        order.updated_ms = self._clock.now_ms()
        book.orders.remove(order)
