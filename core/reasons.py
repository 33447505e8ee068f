"""Machine-readable reasons. Every rejection, exclusion and quiet cycle names one of these."""

from __future__ import annotations

from enum import StrEnum


class UniverseReason(StrEnum):
    NO_MARKET = "NO_MARKET"  # the exchange lists no such market
    WRONG_QUOTE = "WRONG_QUOTE"  # not quoted in the accounting currency
    DEGRADED_STATUS = "DEGRADED_STATUS"  # product status outside tradable_statuses
    RED_FLAG = "RED_FLAG"  # listed in universe.red_flags
    BANNED = "BANNED"  # temporary ban from a runtime red flag, not yet expired
    NO_DATA = "NO_DATA"  # no candles or quote for it
    WARMING_UP = "WARMING_UP"  # not enough history for 24h volume yet
    LOW_VOLUME = "LOW_VOLUME"  # 24h quote volume below min_quote_volume_24h
    WIDE_SPREAD = "WIDE_SPREAD"  # spread above max_spread_bps
    OUT_OF_RANK = "OUT_OF_RANK"  # rotational, ranked beyond rotational_max_rank
    UNIVERSE_FULL = "UNIVERSE_FULL"  # beyond max_size


class TriggerReject(StrEnum):
    STALE_CANDLE = "STALE_CANDLE"  # last closed candle older than stale_after_candles
    OUTLIER_PRICE = "OUTLIER_PRICE"  # far from the recent median without volume to back it
    WARMING_UP = "WARMING_UP"  # indicators not warm yet


class ExitReason(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    MAX_HOLD = "max_hold"


class RiskReason(StrEnum):
    APPROVED = "APPROVED"
    HALTED = "HALTED"  # kill switch or a halting breaker
    EXITS_ONLY = "EXITS_ONLY"  # trading state REDUCING refuses entries
    REGIME_BLOCKS = "REGIME_BLOCKS"  # the regime multiplier is zero
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"  # not in this cycle's universe
    ALREADY_HOLDING = "ALREADY_HOLDING"  # no pyramiding
    PENDING_ORDER = "PENDING_ORDER"  # an order on this symbol is still working
    COOLDOWN = "COOLDOWN"
    STRATEGY_BUDGET = "STRATEGY_BUDGET"  # the strategy's max_at_risk_pct is used up
    STRATEGY_TRADE_LIMIT = "STRATEGY_TRADE_LIMIT"  # max_trades_per_cycle reached
    MAX_POSITIONS = "MAX_POSITIONS"
    TOTAL_EXPOSURE_CAP = "TOTAL_EXPOSURE_CAP"
    ASSET_EXPOSURE_CAP = "ASSET_EXPOSURE_CAP"
    THEME_EXPOSURE_CAP = "THEME_EXPOSURE_CAP"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    MARKET_NOT_TRADABLE = "MARKET_NOT_TRADABLE"  # status forbids this order
    NO_QUOTE = "NO_QUOTE"
    STALE_QUOTE = "STALE_QUOTE"
    CROSSED_QUOTE = "CROSSED_QUOTE"  # bid at or above ask: the data is wrong
    SPREAD_TOO_WIDE = "SPREAD_TOO_WIDE"
    THIN_BOOK = "THIN_BOOK"  # depth below min_depth_multiple x notional
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"  # even rounded up, the budget cannot pay
    NO_POSITION = "NO_POSITION"  # exit for something we do not hold
    EXIT_PENDING = "EXIT_PENDING"  # an exit order is already working
    DUST = "DUST"  # position too small to sell under the market's minimums


class NoTradeReason(StrEnum):
    KILL_SWITCH = "KILL_SWITCH"
    BREAKER_HALT = "BREAKER_HALT"
    MISSING_DATA = "MISSING_DATA"  # critical data (balances, orders, quotes) not fetched
    EXCHANGE_DOWN = "EXCHANGE_DOWN"
    WARMING_UP = "WARMING_UP"  # no symbol has enough history yet
    NO_ELIGIBLE_SYMBOLS = "NO_ELIGIBLE_SYMBOLS"
    EXITS_ONLY_NOTHING_TO_EXIT = "EXITS_ONLY_NOTHING_TO_EXIT"
    NO_SIGNAL = "NO_SIGNAL"  # strategies proposed nothing
    ALL_REJECTED = "ALL_REJECTED"  # proposals existed; risk refused every one


class CancelReason(StrEnum):
    KILL_SWITCH = "KILL_SWITCH"
    HALTED = "HALTED"
    REDUCING = "REDUCING"  # pending entries are withdrawn when only exits are allowed
    STALE_ORDER = "STALE_ORDER"  # older than execution.order_ttl_seconds


class Breaker(StrEnum):
    STALE_DATA = "stale_data"
    API_ERRORS = "api_errors"
    REJECTIONS = "rejections"
    DEGRADED_PRODUCTS = "degraded_products"
    CRASH_REGIME = "crash_regime"
    DAILY_LOSS = "daily_loss"
    WEEKLY_LOSS = "weekly_loss"
    MAX_DRAWDOWN = "max_drawdown"
