"""The daemon's own config sections beside the pipeline's: exchange connection, loop timing,
WebSocket streams, the HTTP server, alerts, periodic checks and flattening.

VigilConfig (infra/settings.py) puts them together with the pipeline config; the runtime paths
section is in infra/runtime_paths.py.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from core.config import Frozen


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP addresses; a host name could resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def ccxt_exchange_ids() -> list[str]:
    """ccxt's exchange ids, read from its package without importing it: importing ccxt loads
    every exchange module (~90 MB), which a replay or a config check never needs."""
    spec = importlib.util.find_spec("ccxt")  # a top-level spec: ccxt is not imported
    folder = (
        Path(next(iter(spec.submodule_search_locations))) / "async_support"
        if spec is not None and spec.submodule_search_locations
        else None
    )
    if folder is None or not folder.is_dir():
        import ccxt

        return list(ccxt.exchanges)
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


class ExchangeSettings(Frozen):
    id: str = Field(
        default="binance",
        description="ccxt exchange id (e.g. binance, coinbase, mexc); checked against ccxt's list.",
    )
    sandbox: bool = Field(
        default=False, description="Use the venue's testnet/sandbox endpoints where ccxt has them."
    )
    base_url: str | None = Field(
        default=None,
        description="Override the REST base URL. Meant for testing against the fake exchange "
        "on 127.0.0.1; leave null in production.",
    )
    timeout_ms: int = Field(
        default=10_000, ge=100, le=600_000, description="HTTP timeout per request (ms)."
    )
    markets_refresh_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="How often market metadata (precision, limits) is reloaded.",
    )
    weight_per_minute: int = Field(
        default=1200,
        ge=10,
        description="Request-weight budget per minute. vigil slows down at 80% and pauses at "
        "90% of it, before the venue would answer 429. Binance spot allows 6000; 1200 leaves "
        "room for other clients on the same IP.",
    )
    orders_per_10s: int = Field(
        default=50, ge=1, description="Order-entry budget per 10 seconds (Binance: 100)."
    )
    live_confirm: str | None = Field(
        default=None,
        description="Explicit confirmation for mode LIVE: must equal the exchange id. Usually "
        "given as VIGIL_EXCHANGE__LIVE_CONFIRM in the service environment.",
    )
    shadow: bool = Field(
        default=False,
        description="LIVE only: run the paper engine beside the live one and record intended "
        "vs actual fills for `vigil shadow report` (see docs/shadow.md).",
    )

    @field_validator("id", mode="before")
    @classmethod
    def _lower_id(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("id")
    @classmethod
    def _known_id(cls, v: str) -> str:
        known = ccxt_exchange_ids()
        if v not in known:
            close = difflib.get_close_matches(v, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "see ccxt.exchanges"
            raise ValueError(f"unknown ccxt exchange id {v!r}; {hint}")
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://; fix the URL")
        return v


class LoopSettings(Frozen):
    interval_seconds: float = Field(
        default=60, gt=0, le=86_400, description="Seconds between cycle starts (at most a day)."
    )
    jitter_pct: float = Field(
        default=10,
        ge=0,
        le=50,
        description="Random +- spread of the interval (%), so cycles do not hit the venue on "
        "the same second as everyone else.",
    )
    cycle_budget_ms: int = Field(
        default=5_000,
        ge=1,
        le=3_600_000,
        description="A cycle slower than this is logged and counted as slow.",
    )
    cancel_on_shutdown: bool = Field(
        default=True, description="Cancel this bot's open orders on a clean shutdown."
    )
    warmup_candles: int = Field(
        default=300,
        ge=2,
        description="Candles of the index symbol loaded at start; must cover the regime's "
        "slow EMA and drawdown lookback.",
    )
    history_candles: int = Field(
        default=64, ge=2, description="Candles per universe symbol fetched each cycle."
    )
    max_cycle_errors: int = Field(
        default=3,
        ge=1,
        description="Cycles failing in a row with an unexpected error before trading goes "
        "exits only (until `vigil resume` or a restart); twice as many latch HALTED (the "
        "kill-switch latch: until `vigil resume`).",
    )


class StreamSettings(Frozen):
    """WebSocket market streams beside the cycle (docs/streams.md)."""

    enabled: bool = Field(
        default=True,
        description="Stream closed candles, best bid/ask and trades over the venue's "
        "WebSocket (ccxt.pro) in DRY_RUN, PAPER and LIVE; false polls REST every cycle.",
    )
    fast_exits: bool = Field(
        default=True,
        description="Run the exit rules on every streamed price of a held position, between "
        "cycles, through the same risk check, executor and audit path as the cycle.",
    )
    staleness_seconds: float = Field(
        default=30,
        ge=1,
        le=3600,
        description="A symbol with no stream message for this long is stale: its candles "
        "stop (the stale-data breaker sees the age); all stale reconnects the streams.",
    )
    reconnect_min_seconds: float = Field(
        default=1, ge=0.1, le=60, description="First reconnect delay; doubles per failure."
    )
    reconnect_max_seconds: float = Field(
        default=60, ge=1, le=3600, description="Longest delay between reconnect attempts."
    )
    fallback_after_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed connections in a row (no message received) after which candles "
        "are polled over REST, while the streams keep being retried.",
    )

    @model_validator(mode="after")
    def _check(self) -> StreamSettings:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError("stream.reconnect_max_seconds must be >= stream.reconnect_min_seconds")
        return self


class HttpSettings(Frozen):
    enabled: bool = Field(default=True, description="Serve /metrics, /health and /ready.")
    host: str = Field(
        default="127.0.0.1", description="Bind address. Keep it on loopback; use a proxy to expose."
    )
    port: int = Field(default=9108, ge=0, le=65535, description="Port; 0 picks a free port.")
    allow_remote: bool = Field(
        default=False,
        description="Allow a non-loopback host. /metrics and /health reveal positions and "
        "state; expose them only behind an authenticating proxy.",
    )


class AlertSettings(Frozen):
    enabled: bool = Field(
        default=True,
        description="Send alerts. The apprise URLs are secrets: they come only from the "
        "VIGIL_ALERT_URLS and VIGIL_ALERT_URLS_ESCALATE environment variables.",
    )
    dedupe_seconds: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description="The same event alert is sent at most once per this window; repeats "
        "inside it are counted and reported with the next message.",
    )
    escalate_after_seconds: int = Field(
        default=120,
        ge=1,
        le=86_400,
        description="An alert still unresolved (a condition) or still firing (an event) this "
        "long after it started is sent again one level louder, to VIGIL_ALERT_URLS_ESCALATE too.",
    )
    remind_seconds: int = Field(
        default=900,
        ge=1,
        le=604_800,
        description="While a condition lasts (a kill switch, a latched breaker) it is sent "
        "again this often after the last message about it.",
    )
    empty_universe_cycles: int = Field(
        default=10,
        ge=1,
        description="Alert when this many cycles in a row had no eligible symbol.",
    )
    exchange_down_minutes: float = Field(
        default=3,
        gt=0,
        description="Alert when every cycle for this long found the exchange unreachable.",
    )


class CheckSettings(Frozen):
    integrity_interval_minutes: float = Field(
        default=60,
        ge=0,
        le=10_080,
        description="While running, check state.db (PRAGMA quick_check) and the audit log's "
        "last records (hash chain) this often, off the trading loop; a failure alerts and "
        "engages the kill switch. 0 turns the periodic check off.",
    )
    api_key_max_age_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="Rotate the API key this many days after VIGIL_API_KEY_ISSUED (YYYY-MM-DD).",
    )
    api_key_warn_days: int = Field(
        default=14,
        ge=0,
        le=3650,
        description="Alert (warning) this many days before the rotation deadline; critical "
        "once it has passed.",
    )


class FlattenSettings(Frozen):
    paper_unwind_on_stop: bool = Field(
        default=False,
        description="PAPER only: on a clean stop (SIGTERM/SIGINT, not a crash), sell every "
        "paper position first, as `vigil flatten` with no passive step. The simulated fills "
        "come with new candles, so the stop can take up to two timeframes (10 s at least).",
    )
    trim_tolerance_pct: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Auto-trim (null: off): after a cycle, a position worth more than "
        "risk.max_asset_exposure_pct of equity by over this percentage is sold back down to "
        "that cap, reduce-only, as `vigil flatten` does it.",
    )
