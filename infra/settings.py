"""The daemon's settings: the pipeline config plus what the runner, HTTP, paths and alerts need.

`VigilConfig` IS a `PipelineConfig` (a subclass), so `run_cycle` takes it directly. Loading it
from YAML and the environment lives in infra/config_loader.py; secrets never live here (they come
from the environment, infra/secrets.py).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import ipaddress
import json
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from core.config import Frozen, PipelineConfig
from infra.clock_sync import ClockSettings
from infra.exchange.sim_config import SimConfig


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP addresses; a host name could resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Mode(StrEnum):
    DRY_RUN = "DRY_RUN"
    PAPER = "PAPER"
    LIVE = "LIVE"


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


@dataclass(frozen=True, slots=True)
class ResolvedPaths:
    """Every runtime path, made concrete (see PathSettings.resolved)."""

    data_dir: Path
    state_db: Path
    audit_dir: Path
    kill_switch: Path
    quarantine_dir: Path
    lock_file: Path
    health_dir: Path


REPLAY_SUBDIR = "replay"  # `vigil run --replay` keeps its runtime files in <data_dir>/replay


class PathSettings(Frozen):
    """Relative paths are taken relative to the directory that holds the config directory
    (for `--config config` in the repository: the repository root), never the working
    directory, so every command finds the same files from anywhere."""

    data_dir: Path = Field(
        default=Path("data"),
        description="Runtime data directory; the paths below default to files inside it. "
        "Relative paths are taken from the directory that holds the config directory. "
        "Replays keep their own files in <data_dir>/replay.",
    )
    state_db: Path | None = Field(
        default=None, description="SQLite state database; null means <data_dir>/state.db."
    )
    audit_dir: Path | None = Field(
        default=None, description="Audit log directory; null means <data_dir>/audit."
    )
    kill_switch: Path | None = Field(
        default=None,
        description="Kill-switch file: its existence halts trading; null means "
        "<data_dir>/KILL_SWITCH.",
    )
    quarantine_dir: Path | None = Field(
        default=None,
        description="Where corrupted files are copied aside; null means <data_dir>/quarantine.",
    )
    lock_file: Path | None = Field(
        default=None,
        description="Single-instance lock (pid file); null means <data_dir>/vigil.pid.",
    )
    health_dir: Path | None = Field(
        default=None, description="Health snapshots; null means <data_dir>/health."
    )

    def resolved(self, base: Path, *, replay: bool = False) -> ResolvedPaths:
        """Concrete absolute paths. Relative ones are taken relative to `base` (the loader
        passes the directory that holds the config directory, see LoadedConfig.paths); unset
        ones are derived from data_dir. With `replay`, every path is derived from
        <data_dir>/replay instead, whatever the others say: a replay never shares state.db,
        audit log, kill switch or lock with the live daemon."""

        def anchor(p: Path) -> Path:
            return Path(os.path.abspath(p if p.is_absolute() else base / p))

        data = anchor(self.data_dir)
        if replay:
            return PathSettings(data_dir=data / REPLAY_SUBDIR).resolved(base)

        def pick(value: Path | None, default_name: str) -> Path:
            return anchor(value) if value is not None else data / default_name

        return ResolvedPaths(
            data_dir=data,
            state_db=pick(self.state_db, "state.db"),
            audit_dir=pick(self.audit_dir, "audit"),
            kill_switch=pick(self.kill_switch, "KILL_SWITCH"),
            quarantine_dir=pick(self.quarantine_dir, "quarantine"),
            lock_file=pick(self.lock_file, "vigil.pid"),
            health_dir=pick(self.health_dir, "health"),
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


# --------------------------------------------------------------------------- schema walking
# The loader uses these to resolve env var names and to point error messages at a field.


def unwrap(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def model_of(tp: Any) -> type[BaseModel] | None:
    tp = unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def is_mapping(tp: Any) -> bool:
    origin = get_origin(unwrap(tp))
    return origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping))


def type_at(model: Any, loc: tuple[str, ...]) -> Any:
    """The annotation at `loc` below `model`, or None when the path leaves the schema."""
    tp = model
    for key in loc:
        m = model_of(tp)
        if m is not None:
            if key not in m.model_fields:
                return None
            tp = m.model_fields[key].annotation
        elif is_mapping(tp):
            tp = get_args(unwrap(tp))[-1]
        elif get_origin(unwrap(tp)) in (tuple, list):
            tp = get_args(unwrap(tp))[0]
        else:
            return None
    return tp


def default_at(model: type[BaseModel], loc: tuple[str, ...]) -> Any:
    """The default value at `loc` below `model`; KeyError when there is none."""
    obj: Any = model
    for key in loc:
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            info = obj.model_fields.get(key)
            if info is None:
                raise KeyError(loc)
            obj = info.get_default(call_default_factory=True)
        elif isinstance(obj, BaseModel):
            obj = getattr(obj, key)
        elif isinstance(obj, Mapping):
            obj = obj[key]
        else:
            raise KeyError(loc)
    return obj
