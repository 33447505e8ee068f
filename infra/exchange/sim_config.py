"""Settings of the simulated matching engine (backtest, PAPER fills, the fake exchange)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.config_base import check_number


class SimConfig(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    @field_validator("*")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        return check_number(value)

    seed: int = Field(default=42, description="Seed of the fill model's random generator.")
    starting_balances: dict[str, Annotated[Decimal, Field(ge=0)]] = Field(
        default_factory=lambda: {"USDT": Decimal(10_000)},
        description="Paper wallet at start: asset -> amount.",
    )
    synthetic_spread_bps: Decimal = Field(
        default=Decimal(2), ge=0, description="Spread of quotes derived from candles (bps)."
    )
    slippage_bps: Decimal = Field(
        default=Decimal(2), ge=0, description="Base slippage of taker fills (bps)."
    )
    slippage_vol_mult: Decimal = Field(
        default=Decimal("0.1"),
        ge=0,
        description="Extra slippage as a fraction of the fill "
        "candle's high-low range (volatility scaling).",
    )
    participation_cap: Decimal = Field(
        default=Decimal("0.1"),
        gt=0,
        le=1,
        description="Most of a candle's volume one order "
        "may take; the rest fills on later candles (partial fills).",
    )
    latency_ms: int = Field(
        default=0,
        ge=0,
        description="Simulated order-entry latency: an order only becomes "
        "fillable this long after it was placed.",
    )
    maker_fee: Decimal | None = Field(
        default=None, ge=0, description="Override the markets' maker fee rate (e.g. 0.001)."
    )
    taker_fee: Decimal | None = Field(
        default=None, ge=0, description="Override the markets' taker fee rate."
    )
