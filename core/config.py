"""Typed configuration for every pipeline stage.

Pydantic v2, frozen, unknown keys forbidden, a description on every field. The defaults form a
conservative profile. Percentages are written as percent numbers (25 means 25%); the stages
convert them. Loading files and environment variables lives in infra/config_loader.py.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cached_property
from typing import Any, Final, NamedTuple

from pydantic import Field, model_validator

from core.clock import timeframe_ms
from core.config_base import Frozen, FrozenMap
from core.config_reconcile import ReconcileConfig
from core.config_risk import (
    BreakersConfig,
    BreakerSpec,
    ExecutionConfig,
    ExitConfig,
    RiskConfig,
)
from core.models import MarketStatus, Regime

__all__ = [
    "BreakerSpec",
    "BreakersConfig",
    "BreakoutTrigger",
    "ExecutionConfig",
    "ExitConfig",
    "Frozen",
    "MomentumTrigger",
    "OutlierGuard",
    "PipelineConfig",
    "RegimeConfig",
    "RegimeMultipliers",
    "RiskConfig",
    "RsiReversionTrigger",
    "StrategyBudget",
    "StrategyConfig",
    "TriggerConfig",
    "UniverseConfig",
    "VolumeSpikeTrigger",
]

# --------------------------------------------------------------------------- universe

# Markets are written the way ccxt names spot markets: BASE/QUOTE in capitals.
SYMBOL_RE: Final = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}/[A-Z0-9][A-Z0-9._-]{0,31}")


def symbol_problem(symbol: str, quote: str) -> str | None:
    """Why `symbol` is not a BASE/QUOTE market symbol (a short reason with the fix; `quote`
    is only used to suggest one). Symbols in another quote are excluded at run time
    (WRONG_QUOTE), as the universe stage documents."""
    if not SYMBOL_RE.fullmatch(symbol):
        plain = symbol.upper()
        if "/" in plain:
            fixed = plain
        elif plain.endswith(quote) and len(plain) > len(quote):
            fixed = f"{plain[: -len(quote)]}/{quote}"
        else:
            fixed = f"BASE/{quote}"
        return f"{symbol!r} is not a BASE/QUOTE market symbol; write it as {fixed}"
    return None


def symbols_problem(symbols: tuple[str, ...], quote: str) -> str | None:
    for symbol in symbols:
        problem = symbol_problem(symbol, quote)
        if problem:
            return problem
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        return f"{', '.join(repeated)} listed more than once; remove the repeats"
    return None


class UniverseScreen(NamedTuple):
    red_flags: frozenset[str]
    core: frozenset[str]
    tradable: frozenset[MarketStatus]
    max_spread_bps: float
    min_quote_volume: float


class UniverseConfig(Frozen):
    symbols: tuple[str, ...] = Field(
        default=(),
        description="Candidate symbols (BASE/QUOTE). Empty means every market quoted in "
        "quote_currency that the exchange lists.",
    )
    quote_currency: str = Field(default="USDT", description="Quote currency all accounting is in.")
    core_symbols: tuple[str, ...] = Field(
        default=("BTC/USDT", "ETH/USDT"),
        description="Core tier: eligible regardless of volume rank (still subject to status, "
        "bans, red flags and spread).",
    )
    min_quote_volume_24h: Decimal = Field(
        default=Decimal(5_000_000),
        ge=0,
        description="Minimum 24h traded volume in the quote currency for a rotational symbol.",
    )
    max_spread_bps: Decimal = Field(
        default=Decimal(20), gt=0, description="Widest bid/ask spread (basis points) allowed."
    )
    max_size: int = Field(default=15, ge=1, le=500, description="Most symbols in the universe.")
    rotational_max_rank: int = Field(
        default=10,
        ge=1,
        description="Rotational symbols are eligible only within this rank by 24h quote volume.",
    )
    red_flags: tuple[str, ...] = Field(
        default=(), description="Symbols never traded (delisting notices, known problems)."
    )
    ban_minutes: int = Field(
        default=1440,
        ge=1,
        description="How long a runtime red flag (outlier tick, rejection burst) bans a symbol.",
    )
    tradable_statuses: tuple[MarketStatus, ...] = Field(
        default=(MarketStatus.ONLINE,),
        description="Product statuses that count as healthy; any other status is 'degraded' "
        "and excludes the symbol.",
    )
    themes: FrozenMap[str] = Field(
        default_factory=dict,
        description="Base asset -> theme (e.g. SOL: layer1). Themes share an exposure cap.",
    )
    default_theme: str = Field(
        default="unassigned",
        description="Theme for assets not listed in themes. Unlisted assets share one cap, "
        "which is the conservative choice.",
    )

    @model_validator(mode="after")
    def _check_symbols(self) -> UniverseConfig:
        for name in ("symbols", "core_symbols", "red_flags"):
            problem = symbols_problem(getattr(self, name), self.quote_currency)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return self

    @cached_property
    def symbol_list(self) -> tuple[str, ...]:
        """`symbols` without repeats, in the order given."""
        return tuple(dict.fromkeys(self.symbols))

    @cached_property
    def screen(self) -> UniverseScreen:
        """The sets and float limits the universe stage reads every cycle, built once."""
        return UniverseScreen(
            red_flags=frozenset(self.red_flags),
            core=frozenset(self.core_symbols),
            tradable=frozenset(self.tradable_statuses),
            max_spread_bps=float(self.max_spread_bps),
            min_quote_volume=float(self.min_quote_volume_24h),
        )

    def theme_of(self, base: str) -> str:
        return self.themes.get(base, self.default_theme)


# --------------------------------------------------------------------------- regime


class RegimeMultipliers(Frozen):
    bull: Decimal = Field(default=Decimal(1), ge=0, le=1, description="Risk multiplier in bull.")
    chop: Decimal = Field(default=Decimal("0.5"), ge=0, le=1, description="Multiplier in chop.")
    bear: Decimal = Field(default=Decimal("0.25"), ge=0, le=1, description="Multiplier in bear.")
    crash: Decimal = Field(default=Decimal(0), ge=0, le=1, description="Multiplier in crash.")

    def of(self, regime: Regime) -> Decimal:
        value: Decimal = getattr(self, regime.value)
        return value


class RegimeConfig(Frozen):
    index_symbol: str = Field(
        default="BTC/USDT", description="The symbol whose trend defines the market regime."
    )
    ema_fast: int = Field(default=50, ge=2, description="Fast EMA period (candles) for trend.")
    ema_slow: int = Field(default=200, ge=3, description="Slow EMA period (candles) for trend.")
    atr_period: int = Field(default=14, ge=2, description="ATR period (candles) for volatility.")
    drawdown_lookback: int = Field(
        default=288, ge=2, description="Candles over which the index's peak is taken."
    )
    bear_drawdown_pct: Decimal = Field(
        default=Decimal(5),
        gt=0,
        description="Drawdown from peak (%) that with a down trend means bear.",
    )
    crash_drawdown_pct: Decimal = Field(
        default=Decimal(10), gt=0, description="Drawdown from peak (%) that means crash."
    )
    crash_atr_pct: Decimal = Field(
        default=Decimal(3), gt=0, description="ATR as % of price at or above which means crash."
    )
    confirm_cycles: int = Field(
        default=3,
        ge=1,
        description="Consecutive evaluations a new regime must hold before it is adopted "
        "(hysteresis). Entering crash is immediate.",
    )
    multipliers: RegimeMultipliers = Field(
        default_factory=RegimeMultipliers, description="Risk multiplier per regime."
    )

    @cached_property
    def feature_keys(self) -> tuple[str, str, str, str]:
        """(fast EMA, slow EMA, ATR, peak) feature keys, built once: read every cycle."""
        return (
            f"ema:{self.ema_fast}",
            f"ema:{self.ema_slow}",
            f"atr:{self.atr_period}",
            f"peak:{self.drawdown_lookback}",
        )

    @cached_property
    def float_limits(self) -> tuple[float, float, float]:
        """(crash floor, bear floor, crash ATR %) as floats: classify reads them every cycle.
        The floors are fractions of the peak: 1 - drawdown% / 100."""
        return (
            1.0 - float(self.crash_drawdown_pct) / 100.0,
            1.0 - float(self.bear_drawdown_pct) / 100.0,
            float(self.crash_atr_pct),
        )

    @model_validator(mode="after")
    def _check(self) -> RegimeConfig:
        if self.ema_fast >= self.ema_slow:
            raise ValueError(f"ema_fast ({self.ema_fast}) must be below ema_slow ({self.ema_slow})")
        if self.bear_drawdown_pct >= self.crash_drawdown_pct:
            raise ValueError("bear_drawdown_pct must be below crash_drawdown_pct")
        return self


# --------------------------------------------------------------------------- triggers


class BreakoutTrigger(Frozen):
    enabled: bool = Field(default=True, description="Scan for breakouts of the N-bar high.")
    lookback: int = Field(default=20, ge=2, description="Bars whose high must be exceeded.")
    volume_mult: float = Field(
        default=1.5, ge=1, description="Volume must be at least this multiple of its average."
    )
    volume_lookback: int = Field(default=20, ge=2, description="Bars in the volume average.")


class MomentumTrigger(Frozen):
    enabled: bool = Field(default=True, description="Scan for momentum (rate of change).")
    lookback: int = Field(default=12, ge=1, description="Bars over which return is measured.")
    min_return_pct: float = Field(default=1.5, gt=0, description="Return (%) that fires.")


class VolumeSpikeTrigger(Frozen):
    enabled: bool = Field(default=True, description="Scan for volume spikes on up bars.")
    lookback: int = Field(default=20, ge=2, description="Bars in the volume average.")
    mult: float = Field(default=3.0, gt=1, description="Volume multiple of average that fires.")


class RsiReversionTrigger(Frozen):
    enabled: bool = Field(default=True, description="Scan for RSI mean-reversion setups.")
    period: int = Field(default=14, ge=2, description="RSI period (Wilder).")
    oversold: float = Field(default=30.0, gt=0, lt=50, description="RSI at or below fires.")


class OutlierGuard(Frozen):
    median_lookback: int = Field(
        default=20,
        ge=3,
        description="Bars in the rolling median the latest close is checked against.",
    )
    max_deviation_pct: float = Field(
        default=8.0,
        gt=0,
        description="Largest deviation (%) from the median accepted without volume confirmation.",
    )
    volume_confirm_mult: float = Field(
        default=2.0, ge=1, description="Volume multiple of average that confirms a big move."
    )


class TriggerConfig(Frozen):
    @cached_property
    def feature_keys(self) -> tuple[str, str, str, str, str, str, str]:
        """(median, outlier volume avg, N-bar high, breakout volume avg, ROC, spike volume
        avg, RSI) feature keys, built once: read every cycle."""
        og, bo = self.outlier, self.breakout
        return (
            f"med:{og.median_lookback}",
            f"vavg:{og.median_lookback}",
            f"hh:{bo.lookback}",
            f"vavg:{bo.volume_lookback}",
            f"roc:{self.momentum.lookback}",
            f"vavg:{self.volume_spike.lookback}",
            f"rsi:{self.rsi_reversion.period}",
        )

    @cached_property
    def scan_keys(self) -> tuple[str, str, str, str, str, str, str]:
        """`feature_keys` with each disabled trigger's keys replaced by the median key (read
        anyway; the scan ignores the value of a disabled trigger), so the scan fetches all
        seven in one pass and reads only keys the feature bank computes."""
        k_med, k_ovol, k_hh, k_bvol, k_roc, k_svol, k_rsi = self.feature_keys
        bo, mo = self.breakout.enabled, self.momentum.enabled
        vs, rs = self.volume_spike.enabled, self.rsi_reversion.enabled
        return (
            k_med,
            k_ovol,
            k_hh if bo else k_med,
            k_bvol if bo else k_med,
            k_roc if mo else k_med,
            k_svol if vs else k_med,
            k_rsi if rs else k_med,
        )

    breakout: BreakoutTrigger = Field(default_factory=BreakoutTrigger, description="Breakout.")
    momentum: MomentumTrigger = Field(default_factory=MomentumTrigger, description="Momentum.")
    volume_spike: VolumeSpikeTrigger = Field(
        default_factory=VolumeSpikeTrigger, description="Volume spike."
    )
    rsi_reversion: RsiReversionTrigger = Field(
        default_factory=RsiReversionTrigger, description="RSI mean reversion."
    )
    outlier: OutlierGuard = Field(default_factory=OutlierGuard, description="Bad-tick guard.")
    stale_after_candles: int = Field(
        default=2,
        ge=1,
        description="A symbol whose last closed candle is older than this many timeframes is "
        "stale and gets no triggers.",
    )


# --------------------------------------------------------------------------- strategies


class StrategyBudget(Frozen):
    max_at_risk_pct: Decimal = Field(
        default=Decimal(10),
        gt=0,
        le=100,
        description="Most of equity (%) this strategy may hold in positions and pending entries.",
    )
    max_trades_per_cycle: int = Field(default=2, ge=0, description="Most entries per cycle.")


class StrategyConfig(Frozen):
    enabled: bool = Field(default=False, description="New strategies start disabled.")
    budget: StrategyBudget = Field(
        default_factory=StrategyBudget, description="Risk budget checked before global caps."
    )
    # Validated against the strategy's own model outside core (strategy.registry.resolve).
    params: FrozenMap[Any] = Field(
        default_factory=dict, description="Strategy parameters, validated by its own model."
    )


class PipelineConfig(Frozen):
    """Everything `run_cycle` needs. The daemon's own settings wrap it (infra/settings.py)."""

    timeframe: str = Field(default="5m", description="Candle timeframe the pipeline reads.")
    universe: UniverseConfig = Field(default_factory=UniverseConfig, description="Universe.")
    regime: RegimeConfig = Field(default_factory=RegimeConfig, description="Regime.")
    triggers: TriggerConfig = Field(default_factory=TriggerConfig, description="Triggers.")
    exits: ExitConfig = Field(default_factory=ExitConfig, description="Exit rules.")
    risk: RiskConfig = Field(default_factory=RiskConfig, description="Risk limits.")
    breakers: BreakersConfig = Field(
        default_factory=BreakersConfig, description="Circuit breakers."
    )
    execution: ExecutionConfig = Field(
        default_factory=ExecutionConfig, description="Order placement."
    )
    reconcile: ReconcileConfig = Field(
        default_factory=ReconcileConfig, description="Reconciliation with the venue."
    )
    strategies: FrozenMap[StrategyConfig] = Field(
        default_factory=lambda: {"rules": StrategyConfig(enabled=True)},
        description="Strategy name -> its settings. Names resolve through the registry.",
    )

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        timeframe_ms(self.timeframe)  # raises with the accepted forms
        problem = symbol_problem(self.regime.index_symbol, self.universe.quote_currency)
        if problem:
            raise ValueError(f"regime.index_symbol: {problem}")
        cap = self.risk.max_total_exposure_pct
        for name, spec in sorted(self.strategies.items()):
            if spec.budget.max_at_risk_pct > cap:
                raise ValueError(
                    f"strategies.{name}.budget.max_at_risk_pct ({spec.budget.max_at_risk_pct}) "
                    f"is above risk.max_total_exposure_pct ({cap}): lower it to at most {cap}"
                )
        return self

    @cached_property
    def timeframe_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    def enabled_strategies(self) -> list[tuple[str, StrategyConfig]]:
        """(name, settings) of each enabled strategy, by name. Which class a name means and
        whether its params fit are decided outside core (strategy.registry.resolve)."""
        return [(n, s) for n, s in sorted(self.strategies.items()) if s.enabled]
