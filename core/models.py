"""The domain: immutable value objects shared by every stage.

Money is `Decimal`; time is int UTC epoch milliseconds (the exchanges' own unit). Floats appear
only in indicator values and scores, never in prices, quantities, fees or balances.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)

EMPTY_MAP: Mapping[str, int] = MappingProxyType({})


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class MarketStatus(StrEnum):
    ONLINE = "ONLINE"
    POST_ONLY = "POST_ONLY"
    LIMIT_ONLY = "LIMIT_ONLY"
    CANCEL_ONLY = "CANCEL_ONLY"
    OFFLINE = "OFFLINE"


class OrderStatus(StrEnum):
    NEW = "NEW"
    OPEN = "OPEN"
    PARTIAL = "PARTIAL"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_live(self) -> bool:
        """Resting or about to rest on the book: counts toward pending exposure."""
        return self in _LIVE


_TERMINAL = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REJECTED,
        OrderStatus.FAILED,
    }
)
_LIVE = frozenset({OrderStatus.NEW, OrderStatus.OPEN, OrderStatus.PARTIAL})


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # exits only
    HALTED = "HALTED"  # nothing new; open orders are canceled


class Regime(StrEnum):
    BULL = "bull"
    CHOP = "chop"
    BEAR = "bear"
    CRASH = "crash"


class Tier(StrEnum):
    CORE = "core"
    ROTATIONAL = "rotational"


class ProposalKind(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str
    base: str
    quote: str
    price_increment: Decimal
    amount_increment: Decimal
    min_size: Decimal
    min_notional: Decimal
    status: MarketStatus = MarketStatus.ONLINE
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")

    def __post_init__(self) -> None:
        if self.price_increment <= 0 or self.amount_increment <= 0:
            raise ValueError(f"{self.symbol}: increments must be positive")
        if self.min_size < 0 or self.min_notional < 0:
            raise ValueError(f"{self.symbol}: minimums must not be negative")
        if self.maker_fee < 0 or self.taker_fee < 0:
            # Rebates exist on some venues, but we refuse to plan on them.
            raise ValueError(f"{self.symbol}: negative fees are not supported")


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; `ts` is the bar's open time."""

    ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def __post_init__(self) -> None:
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):
            raise ValueError(f"bad candle at {self.ts}: OHLC out of order")
        if self.low <= 0 or self.volume < 0:
            raise ValueError(f"bad candle at {self.ts}: non-positive price or negative volume")


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    ts: int

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> Decimal:
        mid = self.mid
        if mid <= 0:
            return BPS
        return (self.ask - self.bid) / mid * BPS


class QuoteBoard(Mapping[str, "Quote"]):
    """Quotes by symbol, read-only. `spread_bps` answers without building a Quote, so the
    universe can screen hundreds of symbols cheaply; adapters may build Quotes lazily."""

    __slots__ = ("_quotes",)
    # Inherited by every subclass: `of` asks the type for it, which is much faster than
    # isinstance against an ABC (this runs several times a cycle).
    IS_BOARD: ClassVar[bool] = True

    def __init__(self, quotes: Mapping[str, Quote] | None = None) -> None:
        self._quotes: Mapping[str, Quote] = quotes if quotes is not None else {}

    def __getitem__(self, symbol: str) -> Quote:
        return self._quotes[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self._quotes)

    def __len__(self) -> int:
        return len(self._quotes)

    def spread_bps(self, symbol: str) -> float | None:
        q = self._quotes.get(symbol)
        return None if q is None else float(q.spread_bps)

    def last(self, symbol: str) -> Decimal | None:
        """The quote's last price; adapters may answer without building the whole quote
        (marking held positions needs only this, every cycle)."""
        q = self._quotes.get(symbol)
        return None if q is None else q.last

    @staticmethod
    def of(quotes: Mapping[str, Quote]) -> QuoteBoard:
        if getattr(type(quotes), "IS_BOARD", False):
            return quotes  # type: ignore[return-value]
        return QuoteBoard(quotes)


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    ts: int

    def depth_notional(self, side: Side, levels: int = 10) -> Decimal:
        """Quote value available to an order of `side` within the first `levels` levels."""
        book = self.asks if side is Side.BUY else self.bids
        return sum((lv.price * lv.amount for lv in book[:levels]), ZERO)


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    used: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.used


@dataclass(frozen=True, slots=True)
class Position:
    """A long spot holding. `entry_fees` are the quote fees still attributable to `quantity`."""

    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal
    entry_fees: Decimal
    opened_ms: int
    peak_price: Decimal  # highest mark seen since entry, for trailing stops
    strategy: str = ""
    cost: Decimal | None = None  # exact quote paid for `quantity`; avg price is this / qty

    @property
    def cost_basis(self) -> Decimal:
        return self.cost if self.cost is not None else self.quantity * self.avg_entry_price


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    amount: Decimal
    price: Decimal | None
    status: OrderStatus
    created_ms: int
    updated_ms: int
    filled: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    fee: Decimal = ZERO
    exchange_order_id: str = ""
    strategy: str = ""
    post_only: bool = False
    reduce_only: bool = False
    reason: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    def remaining_notional(self, ref_price: Decimal) -> Decimal:
        return self.remaining * (self.price if self.price is not None else ref_price)


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal  # in the quote currency: everything charged, converted
    ts: int
    liquidity: Liquidity = Liquidity.TAKER
    # Base units the venue kept instead of quote (Binance takes buy fees from the coin bought):
    # the holding grows by amount - base_fee, and fee already includes their quote value.
    base_fee: Decimal = ZERO

    @property
    def quote_fee_paid(self) -> Decimal:
        """The part of `fee` that left the quote balance."""
        return self.fee - self.base_fee * self.price

    @property
    def notional(self) -> Decimal:
        return self.price * self.amount


@dataclass(frozen=True, slots=True)
class Trigger:
    """A deterministic scan result: something noteworthy happened on `symbol` at candle `ts`."""

    symbol: str
    kind: str
    strength: float  # 0..1, how far past the threshold; feeds proposal confidence
    ts: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TradeProposal:
    strategy: str
    symbol: str
    side: Side
    kind: ProposalKind
    confidence: float  # 0..1
    reason: str
    ref_price: Decimal  # the price the strategy saw; sizing and limits start here
    quantity: Decimal | None = None  # exits name the quantity; entries are sized by risk
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    proposal: TradeProposal
    approved: bool
    reason: str  # "APPROVED" or a machine-readable rejection code
    detail: str = ""
    quantity: Decimal = ZERO
    price: Decimal = ZERO
    notional: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class OrderIntent:
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    amount: Decimal
    price: Decimal | None
    strategy: str
    cycle_ms: int
    post_only: bool = False
    reduce_only: bool = False
    reason: str = ""

    @property
    def notional(self) -> Decimal:
        return self.amount * (self.price or ZERO)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    client_order_id: str
    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class Exclusion:
    symbol: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class UniverseResult:
    eligible: tuple[str, ...]
    excluded: tuple[Exclusion, ...]


@dataclass(frozen=True, slots=True)
class RegimeState:
    """The regime plus what hysteresis needs to remember between cycles."""

    regime: Regime = Regime.CHOP
    candidate: Regime | None = None
    candidate_count: int = 0
    since_ms: int = 0
    candle_ts: int = -1  # the index candle last evaluated; each candle counts once


@dataclass(frozen=True, slots=True)
class BreakerState:
    name: str
    tripped: bool = False
    tripped_ms: int = 0
    clear_since_ms: int = 0  # when its condition was first seen clear while still latched
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EquityMarks:
    """Reference equities the loss stops and drawdown are measured from."""

    hwm: Decimal = ZERO
    day_start_ms: int = -1
    day_start_equity: Decimal = ZERO
    week_start_ms: int = -1
    week_start_equity: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class EngineState:
    """What the cycle remembers between runs; the daemon persists it, a backtest carries it."""

    regime: RegimeState = field(default_factory=RegimeState)
    breakers: Mapping[str, BreakerState] = field(default_factory=lambda: MappingProxyType({}))
    cooldowns: Mapping[str, int] = field(default_factory=lambda: EMPTY_MAP)  # symbol -> until_ms
    bans: Mapping[str, int] = field(default_factory=lambda: EMPTY_MAP)  # symbol -> until_ms
    kill_switch: bool = False
    kill_reason: str = ""
    marks: EquityMarks = field(default_factory=lambda: EquityMarks())


@dataclass(frozen=True, slots=True)
class CycleDecision:
    ts: int
    trading_state: TradingState
    regime: Regime
    risk_multiplier: Decimal
    universe: UniverseResult
    triggers: tuple[Trigger, ...]
    proposals: tuple[TradeProposal, ...]
    verdicts: tuple[RiskVerdict, ...]
    intents: tuple[OrderIntent, ...]
    cancels: tuple[CancelRequest, ...]
    no_trade_reason: str | None
    state: EngineState
    equity: Decimal
    timings_ms: tuple[tuple[str, float], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def traded(self) -> bool:
        return bool(self.intents)
