"""The daemon's whole config, VigilConfig: the pipeline config plus the daemon's own sections,
with the checks across sections; and what is derived from it: its hash, the redacted dump for
`vigil config show` and the JSON schema.

`VigilConfig` IS a `PipelineConfig` (a subclass), so `run_cycle` takes it directly. The sections
live in infra/settings_sections.py and infra/runtime_paths.py. Loading it from YAML and the
environment lives in infra/config_loader.py; secrets never live here (they come from the
environment, infra/secrets.py).
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from core.config import PipelineConfig
from infra.clock_sync import ClockSettings
from infra.exchange.sim_config import SimConfig
from infra.runtime_paths import PathSettings
from infra.settings_sections import (
    AlertSettings,
    CheckSettings,
    ExchangeSettings,
    FlattenSettings,
    HttpSettings,
    LoopSettings,
    StreamSettings,
    is_loopback,
)


class Mode(StrEnum):
    DRY_RUN = "DRY_RUN"
    PAPER = "PAPER"
    LIVE = "LIVE"


class VigilConfig(PipelineConfig):
    """The whole effective configuration: pipeline stages plus the daemon's own settings."""

    mode: Mode = Field(
        default=Mode.DRY_RUN,
        description="DRY_RUN decides and records but sends nothing; PAPER fills simulated "
        "orders on real market data; LIVE sends real orders.",
    )
    read_only: bool = Field(
        default=True,
        description="A second key for LIVE: true refuses mode LIVE, the only mode that places "
        "or cancels orders on the venue. No effect in DRY_RUN and PAPER (they never send orders "
        "to the venue; PAPER's go to its in-process simulator).",
    )
    exchange: ExchangeSettings = Field(
        default_factory=ExchangeSettings, description="Exchange connection."
    )
    loop: LoopSettings = Field(default_factory=LoopSettings, description="Main loop timing.")
    stream: StreamSettings = Field(
        default_factory=StreamSettings, description="WebSocket market streams and fast exits."
    )
    http: HttpSettings = Field(
        default_factory=HttpSettings, description="Metrics and health HTTP server."
    )
    paths: PathSettings = Field(default_factory=PathSettings, description="Runtime files.")
    strategies_path: Path | None = Field(
        default=None,
        description="Directory of your own strategy modules (every *.py except test_*.py and "
        "_*.py), imported when the config is loaded; relative to the config directory's parent. "
        "`--strategy-path DIR` adds one for a single command. See docs/strategies.md.",
    )
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="Alerting.")
    sim: SimConfig = Field(
        default_factory=SimConfig,
        description="Simulated matching engine (backtest and PAPER fills).",
    )
    clock: ClockSettings = Field(
        default_factory=ClockSettings,
        description="Host clock drift check (against the exchange's server time and NTP).",
    )
    checks: CheckSettings = Field(
        default_factory=CheckSettings,
        description="Periodic integrity check and API key age.",
    )
    flatten: FlattenSettings = Field(
        default_factory=FlattenSettings, description="Getting flat automatically."
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_upper(cls, v: Any) -> Any:
        return v.strip().upper().replace("-", "_") if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check_daemon(self) -> VigilConfig:
        # Messages name the dotted fields so the loader can point at the file that set them.
        if self.mode is Mode.LIVE and self.read_only:
            raise ValueError(
                "mode LIVE needs read_only: false (read_only is true); set read_only: false, "
                "or use mode DRY_RUN or PAPER"
            )
        if self.mode is Mode.LIVE and self.exchange.live_confirm != self.exchange.id:
            raise ValueError(
                f"mode LIVE needs exchange.live_confirm equal to the exchange id "
                f"({self.exchange.id!r}) as an explicit confirmation; set "
                f"VIGIL_EXCHANGE__LIVE_CONFIRM={self.exchange.id}"
            )
        if self.exchange.shadow and self.mode is not Mode.LIVE:
            raise ValueError(
                f"exchange.shadow compares real fills with simulated ones, so it needs mode "
                f"LIVE (mode is {self.mode.value}); set exchange.shadow: false"
            )
        if self.http.enabled and not is_loopback(self.http.host) and not self.http.allow_remote:
            raise ValueError(
                f"http.host {self.http.host!r} is not a loopback address: /metrics and /health "
                "would be reachable from the network; set http.host: 127.0.0.1 (and put a "
                "proxy in front), or set http.allow_remote: true to expose them deliberately"
            )
        need = max(self.regime.ema_slow, self.regime.drawdown_lookback)
        if self.loop.warmup_candles < need:
            raise ValueError(
                f"loop.warmup_candles ({self.loop.warmup_candles}) is below what "
                f"regime.ema_slow ({self.regime.ema_slow}) and regime.drawdown_lookback "
                f"({self.regime.drawdown_lookback}) need; raise it to at least {need}"
            )
        return self


# --------------------------------------------------------------------------- derived outputs

_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "config.schema.json"


def config_hash(config: VigilConfig) -> str:
    """First 16 hex chars of SHA-256 over the canonical JSON of the effective config."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def redacted_dump(config: VigilConfig) -> dict[str, Any]:
    """The effective config as JSON-ready data for `vigil config show`."""
    data = config.model_dump(mode="json")
    url = data["exchange"].get("base_url")
    if url:
        data["exchange"]["base_url"] = _redact_url(url)
    return data


def schema_text() -> str:
    return json.dumps(VigilConfig.model_json_schema(), indent=2, sort_keys=True) + "\n"


def export_schema(path: Path = _SCHEMA_PATH) -> None:
    """Write VigilConfig's JSON schema (docs/config.schema.json)."""
    path.write_text(schema_text(), encoding="utf-8")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
