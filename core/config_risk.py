"""Config models for exits, risk limits, circuit breakers and order placement."""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property

from pydantic import (
    Field,
    model_validator,
)

from core.config_base import Frozen

# --------------------------------------------------------------------------- exits


class ExitConfig(Frozen):
    stop_loss_pct: Decimal = Field(
        default=Decimal(-10),
        lt=0,
        description="Exit when the mark is this % below entry (negative, e.g. -10).",
    )
    take_profit_pct: Decimal | None = Field(
        default=Decimal(20),
        gt=0,
        description="Exit when the mark is this % above entry; null disables.",
    )
    trailing_stop_pct: Decimal | None = Field(
        default=Decimal(5),
        gt=0,
        description="Exit when the mark falls this % from its peak since entry; null disables.",
    )
    trailing_activation_pct: Decimal = Field(
        default=Decimal(3),
        ge=0,
        description="The trailing stop arms only after the peak is this % above entry.",
    )
    max_holding_minutes: int | None = Field(
        default=7 * 24 * 60, ge=1, description="Exit after holding this long; null disables."
    )


# --------------------------------------------------------------------------- risk


class RiskConfig(Frozen):
    max_total_exposure_pct: Decimal = Field(
        default=Decimal(25),
        gt=0,
        le=100,
        description="Most of equity (%) at risk in positions plus pending buy orders.",
    )
    max_asset_exposure_pct: Decimal = Field(
        default=Decimal(5), gt=0, le=100, description="Most of equity (%) in one asset."
    )
    max_theme_exposure_pct: Decimal = Field(
        default=Decimal(10), gt=0, le=100, description="Most of equity (%) in one theme."
    )
    max_open_positions: int = Field(default=5, ge=1, description="Most positions held at once.")
    position_size_pct: Decimal = Field(
        default=Decimal(5),
        gt=0,
        le=100,
        description="Target entry size (% of equity) before "
        "the regime multiplier, confidence and caps shrink it.",
    )
    min_confidence: float = Field(
        default=0.0, ge=0, le=1, description="Proposals below this confidence are rejected."
    )
    daily_loss_stop_pct: Decimal = Field(
        default=Decimal(-3),
        lt=0,
        description="Realized+unrealized loss today (% of the day's "
        "starting equity) that switches to exits only.",
    )
    weekly_loss_stop_pct: Decimal = Field(
        default=Decimal(-6), lt=0, description="Same for the ISO week."
    )
    max_drawdown_pct: Decimal = Field(
        default=Decimal(-15),
        lt=0,
        description="Drawdown of equity from its high-water mark "
        "(unrealized included) that switches to exits only.",
    )
    cooldown_after_fill_minutes: int = Field(
        default=60, ge=0, description="No new entry on a symbol this long after any fill on it."
    )
    cooldown_after_stop_minutes: int = Field(
        default=360, ge=0, description="No new entry on a symbol this long after a stop-out."
    )

    @model_validator(mode="after")
    def _check(self) -> RiskConfig:
        if self.max_asset_exposure_pct > self.max_total_exposure_pct:
            raise ValueError(
                f"max_asset_exposure_pct ({self.max_asset_exposure_pct}) is above "
                f"max_total_exposure_pct ({self.max_total_exposure_pct}); lower it"
            )
        if self.position_size_pct > self.max_total_exposure_pct:
            raise ValueError(
                f"position_size_pct ({self.position_size_pct}) is above max_total_exposure_pct "
                f"({self.max_total_exposure_pct}): no entry could ever be that large; lower it"
            )
        if self.max_theme_exposure_pct > self.max_total_exposure_pct:
            raise ValueError("max_theme_exposure_pct is above max_total_exposure_pct; lower it")
        if self.max_asset_exposure_pct > self.max_theme_exposure_pct:
            raise ValueError(
                "max_asset_exposure_pct is above max_theme_exposure_pct: one asset could "
                "never use its cap; lower it"
            )
        if self.weekly_loss_stop_pct > self.daily_loss_stop_pct:
            raise ValueError(
                "weekly_loss_stop_pct is tighter than daily_loss_stop_pct; make it at least "
                "as negative"
            )
        return self


class BreakerSpec(Frozen):
    enabled: bool = Field(default=True, description="Whether this breaker can trip.")
    action: str = Field(
        default="REDUCING",
        pattern="^(REDUCING|HALTED)$",
        description="Trading state while tripped: REDUCING (exits only) or HALTED.",
    )


class BreakersConfig(Frozen):
    stale_data_seconds: int = Field(
        default=900, ge=1, description="Trip when the freshest index/universe data is older."
    )
    stale_data: BreakerSpec = Field(
        default_factory=lambda: BreakerSpec(action="HALTED"), description="Data staleness."
    )
    api_error_count: int = Field(default=5, ge=1, description="API errors that trip ...")
    api_error_window_seconds: int = Field(default=60, ge=1, description="... within this window.")
    api_errors: BreakerSpec = Field(
        default_factory=lambda: BreakerSpec(action="HALTED"), description="API-error burst."
    )
    rejection_count: int = Field(default=3, ge=1, description="Order rejections that trip ...")
    rejection_window_seconds: int = Field(default=300, ge=1, description="... within this window.")
    rejections: BreakerSpec = Field(
        default_factory=BreakerSpec, description="Order-rejection burst."
    )
    degraded_products_pct: Decimal = Field(
        default=Decimal(50),
        gt=0,
        le=100,
        description="Share (%) of candidate symbols in a degraded status that trips.",
    )
    degraded_products: BreakerSpec = Field(
        default_factory=BreakerSpec, description="Degraded products."
    )
    crash_regime: BreakerSpec = Field(
        default_factory=BreakerSpec, description="Trips while the regime is crash."
    )
    clear_after_seconds: int = Field(
        default=300,
        ge=0,
        description="A tripped breaker stays latched until its condition has been clear this long.",
    )

    @cached_property
    def specs(self) -> dict[str, BreakerSpec]:
        """Breaker name -> its spec, for the breakers that have one."""
        return {
            name: value
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), BreakerSpec)
        }


# --------------------------------------------------------------------------- execution


class ExecutionConfig(Frozen):
    entry_order_type: str = Field(
        default="limit", pattern="^(limit|market)$", description="Order type for entries."
    )
    post_only: bool = Field(
        default=True, description="Entry limits are post-only (maker), never crossing."
    )
    exit_order_type: str = Field(
        default="market",
        pattern="^(limit|market)$",
        description="Order type for exits; market gets out at once.",
    )
    limit_offset_bps: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="Entry limit this far inside our side of the book (below the bid for buys).",
    )
    max_spread_bps: Decimal = Field(
        default=Decimal(30), gt=0, description="Entries are refused when the spread is wider."
    )
    stale_quote_seconds: int = Field(
        default=120, ge=1, description="Entries are refused on a quote older than this."
    )
    min_depth_multiple: Decimal = Field(
        default=Decimal(3),
        ge=0,
        description="When a book is known, its depth within 10 levels "
        "must be this multiple of the order notional (0 disables).",
    )
    order_ttl_seconds: int = Field(
        default=900, ge=1, description="Open orders older than this are canceled as stale."
    )
    foreign_orders: str = Field(
        default="leave",
        pattern="^(leave|cancel)$",
        description="Open orders on the account that this vigil did not place: 'leave' them "
        "(reported once) or 'cancel' them.",
    )

    @property
    def ttl_ms(self) -> int:
        return self.order_ttl_seconds * 1000
