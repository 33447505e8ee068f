"""Configuration: files, environment overrides, errors, secrets, hash, generated docs."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel

from core.config import PipelineConfig
from core.errors import ConfigError
from infra.config_loader import HOME, load_config
from infra.config_sources import DEPRECATED
from infra.schema_walk import model_of, unwrap
from infra.secrets import (
    RedactingFilter,
    Secrets,
    audit_key,
    load_secrets,
    redact,
    require_live_credentials,
    url_credentials,
)
from infra.settings import Mode, VigilConfig, config_hash, redacted_dump, schema_text
from runner.strategy_loader import STRATEGIES
from strategy.registry import resolve_params
from tools.export_schema import BEGIN, END, render_reference

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config"
PAIRS = (
    "ATOM",
    "AVAX",
    "BCH",
    "BTC",
    "DOGE",
    "ETH",
    "LINK",
    "LTC",
    "MATIC",
    "NEAR",
    "SHIB",
    "SOL",
    "TRX",
    "UNI",
    "XRP",
)


def write(
    tmp_path: Path,
    policy: str | None = "",  # a config dir holds at least one of the files
    universe: str | None = None,
    strategies: str | None = None,
) -> Path:
    d = tmp_path / "config"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in (("policy", policy), ("universe", universe), ("strategies", strategies)):
        if text is not None:
            (d / f"{name}.yaml").write_text(text)
    return d


def error_of(tmp_path: Path, env: dict[str, str] | None = None, **files: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, **files), env or {}, strategies=STRATEGIES)
    return str(info.value)


# --------------------------------------------------------------------------- shipped config


def test_shipped_config_loads_with_empty_env() -> None:
    loaded = load_config(SHIPPED, {}, strategies=STRATEGIES)
    cfg = loaded.config
    assert isinstance(cfg, PipelineConfig)  # run_cycle takes it as is
    assert cfg.mode is Mode.DRY_RUN and cfg.read_only is True
    assert cfg.exchange.id == "binance" and cfg.timeframe == "5m"
    assert cfg.universe.symbols == tuple(sorted(f"{p}/USDT" for p in PAIRS))
    assert cfg.universe.core_symbols == ("BTC/USDT", "ETH/USDT")
    assert set(cfg.universe.themes) == set(PAIRS)
    assert cfg.universe.theme_of("SHIB") == "memes" and cfg.universe.theme_of("BTC") == (
        "store_of_value"
    )
    assert [n for n, _ in cfg.enabled_strategies()] == ["rules"]
    ema = cfg.strategies["ema_cross"]
    params = resolve_params("ema_cross", ema.params)
    assert not ema.enabled and (params.fast, params.slow) == (12, 26)
    assert loaded.warnings == ()
    assert {Path(s).name for s in loaded.sources} == {
        "policy.yaml",
        "universe.yaml",
        "strategies.yaml",
    }


def test_shipped_values_equal_model_defaults() -> None:
    shipped = load_config(SHIPPED, {}, strategies=STRATEGIES).config.model_dump(mode="json")
    defaults = VigilConfig().model_dump(mode="json")
    for key in ("symbols", "themes"):  # only the YAML sets these
        shipped["universe"].pop(key)
        defaults["universe"].pop(key)
    shipped["strategies"].pop("ema_cross")  # only the YAML defines it
    assert shipped == defaults


def test_every_config_key_has_exactly_one_home_file() -> None:
    assert set(HOME) == set(VigilConfig.model_fields)


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        tp = unwrap(info.annotation)
        for candidate in (tp, *getattr(tp, "__args__", ())):
            sub = model_of(candidate)
            if sub is not None:
                _models(sub, seen)


def test_every_field_is_described_and_every_model_forbids_extras() -> None:
    seen: set[type[BaseModel]] = set()
    _models(VigilConfig, seen)
    assert len(seen) > 15
    for model in seen:
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("frozen") is True, model
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"


def test_empty_files_mean_defaults(tmp_path: Path) -> None:
    d = write(tmp_path, policy="", universe="# nothing\n", strategies="strategies:\n")
    loaded = load_config(d, {}, strategies=STRATEGIES)
    assert loaded.config == VigilConfig()
    assert len(loaded.sources) == 3


@pytest.mark.parametrize("what", ["missing", "file", "empty"])
def test_a_config_dir_that_is_not_one_is_refused(tmp_path: Path, what: str) -> None:
    # Each would otherwise load "all defaults" and trade every USDT market.
    target = tmp_path / "cfg"
    if what == "file":
        target.write_text("mode: PAPER\n")
    elif what == "empty":
        target.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(target, {}, strategies=STRATEGIES)
    text = str(info.value)
    assert text.startswith(f"--config {target}:")
    assert {"missing": "no such directory", "file": "is a file", "empty": "holds none"}[
        what
    ] in text


def test_relative_paths_are_taken_from_the_config_dirs_parent(tmp_path: Path) -> None:
    d = write(tmp_path, policy="paths:\n  data_dir: var\n")
    loaded = load_config(d, {}, strategies=STRATEGIES)
    assert loaded.config_dir == d
    assert loaded.paths().data_dir == tmp_path / "var"
    assert loaded.paths().kill_switch == tmp_path / "var" / "KILL_SWITCH"
    assert loaded.paths(replay=True).data_dir == tmp_path / "var" / "replay"


def test_flags_override_env_and_are_named_in_errors(tmp_path: Path) -> None:
    d = write(tmp_path)
    env = {"VIGIL_TIMEFRAME": "1h", "VIGIL_MODE": "LIVE"}
    loaded = load_config(
        d,
        env,
        [("timeframe", "--timeframe", "15m"), ("mode", "--mode", "paper")],
        strategies=STRATEGIES,
    )
    assert loaded.config.timeframe == "15m"
    assert loaded.config.mode is Mode.PAPER  # any case, as in YAML
    assert loaded.origins["timeframe"] == "--timeframe"
    with pytest.raises(ConfigError) as info:
        load_config(d, env, [("timeframe", "--timeframe", "5min")], strategies=STRATEGIES)
    assert str(info.value).startswith("--timeframe: timeframe = '5min'")
    assert "VIGIL_TIMEFRAME" not in str(info.value)


# --------------------------------------------------------------------------- hash


def test_hash_is_stable_across_runs_and_processes() -> None:
    first, second = (
        load_config(SHIPPED, {}, strategies=STRATEGIES),
        load_config(SHIPPED, {}, strategies=STRATEGIES),
    )
    assert first.config_hash == second.config_hash == config_hash(first.config)
    assert len(first.config_hash) == 16 and int(first.config_hash, 16) >= 0
    code = (
        "from pathlib import Path; from infra.config_loader import load_config; "
        "from runner.strategy_loader import STRATEGIES; "
        f"print(load_config(Path({str(SHIPPED)!r}), {{}}, strategies=STRATEGIES).config_hash)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == first.config_hash


@pytest.mark.parametrize(
    "name,value",
    [
        ("VIGIL_MODE", "PAPER"),
        ("VIGIL_RISK__MAX_OPEN_POSITIONS", "4"),
        ("VIGIL_RISK__POSITION_SIZE_PCT", "4.5"),
        ("VIGIL_UNIVERSE__THEMES__BTC", "gold"),
        ("VIGIL_UNIVERSE__SYMBOLS", "[BTC/USDT]"),
        ("VIGIL_STRATEGIES__EMA_CROSS__PARAMS__FAST", "10"),
        ("VIGIL_STRATEGIES__RULES__ENABLED", "false"),
        ("VIGIL_SIM__SEED", "7"),
        ("VIGIL_PATHS__STATE_DB", "/var/lib/vigil/state.db"),
        ("VIGIL_EXCHANGE__TIMEOUT_MS", "10001"),
        ("VIGIL_TRIGGERS__OUTLIER__MAX_DEVIATION_PCT", "7.5"),
    ],
)
def test_hash_changes_when_any_value_changes(name: str, value: str) -> None:
    base = load_config(SHIPPED, {}, strategies=STRATEGIES).config_hash
    assert load_config(SHIPPED, {name: value}, strategies=STRATEGIES).config_hash != base


# --------------------------------------------------------------------------- precedence


def test_environment_beats_yaml_beats_defaults(tmp_path: Path) -> None:
    assert (
        load_config(write(tmp_path), {}, strategies=STRATEGIES).config.risk.max_open_positions == 5
    )
    d = write(tmp_path, policy="risk:\n  max_open_positions: 4\n  max_drawdown_pct: -12\n")
    from_yaml = load_config(d, {}, strategies=STRATEGIES)
    assert from_yaml.config.risk.max_open_positions == 4
    assert from_yaml.origins["risk.max_open_positions"] == str(d / "policy.yaml")
    both = load_config(d, {"VIGIL_RISK__MAX_OPEN_POSITIONS": "3"}, strategies=STRATEGIES)
    assert both.config.risk.max_open_positions == 3
    assert both.config.risk.max_drawdown_pct == Decimal(-12)  # the sibling keeps its YAML value
    assert both.origins["risk.max_open_positions"] == "env VIGIL_RISK__MAX_OPEN_POSITIONS"
    assert "env VIGIL_RISK__MAX_OPEN_POSITIONS" in both.sources
    assert load_config(d, {"VIGIL_MODE": "PAPER"}, strategies=STRATEGIES).config.mode is Mode.PAPER


def test_nested_and_case_insensitive_env_overrides(tmp_path: Path) -> None:
    d = write(
        tmp_path,
        policy="risk:\n  max_open_positions: 4\n  cooldown_after_fill_minutes: 5\n",
        universe="universe:\n  themes: {BTC: store_of_value}\n",
    )
    env = {
        "VIGIL_REGIME__MULTIPLIERS__CHOP": "0.3",
        "vigil_loop__jitter_pct": "5",
        "VIGIL_STRATEGIES__EMA_CROSS__ENABLED": "true",
        "VIGIL_STRATEGIES__EMA_CROSS__PARAMS__SLOW": "40",
        "VIGIL_UNIVERSE__THEMES__btc": "gold",  # matches the existing BTC key
        "VIGIL_UNIVERSE__THEMES__SOL": "layer1",
        "VIGIL_RISK": "{max_open_positions: 2}",  # merges into the YAML mapping
        "VIGIL_EXCHANGE__BASE_URL": "http://127.0.0.1:8080",
        "VIGIL_API_KEY": "k",
        "VIGIL_CONFIG": "elsewhere",  # not config keys
    }
    cfg = load_config(d, env, strategies=STRATEGIES).config
    assert cfg.regime.multipliers.chop == Decimal("0.3")
    assert cfg.loop.jitter_pct == 5
    assert cfg.strategies["ema_cross"].enabled
    assert resolve_params("ema_cross", cfg.strategies["ema_cross"].params).slow == 40
    assert dict(cfg.universe.themes) == {"BTC": "gold", "SOL": "layer1"}
    assert cfg.risk.max_open_positions == 2 and cfg.risk.cooldown_after_fill_minutes == 5
    assert cfg.exchange.base_url == "http://127.0.0.1:8080"


# --------------------------------------------------------------------------- errors


def test_cross_field_error_message_matches_the_spec(tmp_path: Path) -> None:
    msg = error_of(tmp_path, policy="risk:\n  max_asset_exposure_pct: 30\n")
    assert msg == (
        f"{tmp_path / 'config' / 'policy.yaml'}: risk.max_asset_exposure_pct = 30: "
        "max_asset_exposure_pct (30) is above max_total_exposure_pct (25); lower it"
    )


def test_unknown_key_suggests_the_right_name_without_echoing_the_value(tmp_path: Path) -> None:
    msg = error_of(tmp_path, policy="risk:\n  max_open_positon: 3141\n")
    assert msg == (
        f"{tmp_path / 'config' / 'policy.yaml'}: risk.max_open_positon: unknown key; "
        "did you mean max_open_positions?"
    )


def test_env_error_names_variable_field_value_and_fix(tmp_path: Path) -> None:
    msg = error_of(tmp_path, env={"VIGIL_RISK__MAX_OPEN_POSITIONS": "abc"})
    assert msg.startswith("env VIGIL_RISK__MAX_OPEN_POSITIONS: risk.max_open_positions = 'abc': ")
    assert "Input should be a valid integer" in msg and msg.endswith("fix: give a whole number")


@pytest.mark.parametrize(
    "file,text,field,value,fix",
    [
        ("policy", "risk:\n  max_total_exposure_pct: 3\n", "risk.max_total_exposure_pct", "3",
         "lower it"),
        ("policy", "risk:\n  position_size_pct: lots\n", "risk.position_size_pct", "'lots'",
         "fix: give a number"),
        ("policy", "risk:\n  max_open_positions: 2.5\n", "risk.max_open_positions", "2.5",
         "fix: give a whole number"),
        ("policy", "exits:\n  stop_loss_pct: 5\n", "exits.stop_loss_pct", "5",
         "fix: use a value below 0"),
        ("policy", "exchange:\n  timeout_ms: 5\n", "exchange.timeout_ms", "5",
         "fix: use at least 100"),
        ("policy", "loop:\n  jitter_pct: 80\n", "loop.jitter_pct", "80", "fix: use at most 50"),
        ("policy", "mode: WILD\n", "mode", "'WILD'",
         "fix: use one of 'DRY_RUN', 'PAPER' or 'LIVE'"),
        ("policy", "execution:\n  entry_order_type: stop\n", "execution.entry_order_type",
         "'stop'", "fix: use one of limit, market"),
        ("policy", "breakers:\n  rejections: {action: PANIC}\n", "breakers.rejections.action",
         "'PANIC'", "fix: use one of REDUCING, HALTED"),
        ("policy", "read_only: maybe\n", "read_only", "'maybe'", "fix: use true or false"),
        ("policy", "regime:\n  ema_fast: 300\n", "regime.ema_fast", "300",
         "fix: change the values so the rule holds"),
        ("policy", "regime:\n  ema_slow: 400\n", "regime.ema_slow", "400",
         "raise it to at least 400"),
        ("policy", "timeframe: 7x\n", "timeframe", "'7x'", "use forms like 1s, 1m"),
        ("policy", "exchange:\n  id: binanse\n", "exchange.id", "'binanse'",
         "did you mean binance"),
        ("universe", "universe:\n  symbols: BTC/USDT\n", "universe.symbols", "'BTC/USDT'",
         "fix: give a list"),
        ("universe", "universe:\n  themes: [a]\n", "universe.themes", '["a"]',
         "fix: give a mapping"),
        ("strategies", "strategies:\n  ema_cross:\n    params: {fast: 30}\n",
         "strategies.ema_cross.params.fast", "30", "fix: change the values so the rule holds"),
        ("strategies", "strategies:\n  ema_cross:\n    params: {slow: 1}\n",
         "strategies.ema_cross.params.slow", "1", "fix: use at least 3"),
        ("strategies", "strategies:\n  rules:\n    enabled: perhaps\n",
         "strategies.rules.enabled", "'perhaps'", "fix: use true or false"),
    ],
)  # fmt: skip
def test_every_error_names_file_field_value_and_fix(
    tmp_path: Path, file: str, text: str, field: str, value: str, fix: str
) -> None:
    msg = error_of(tmp_path, **{file: text})
    assert msg.startswith(f"{tmp_path / 'config' / file}.yaml: {field} = {value}: "), msg
    assert fix in msg, msg
    assert "\n" not in msg


def test_several_problems_are_reported_one_per_line(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path,
        policy="risk:\n  max_open_positions: x\nexits:\n  stop_loss_pct: 3\n",
        strategies="strategies:\n  ema_cross:\n    params: {fsat: 3}\n  emacross: {}\n",
    )
    lines = msg.splitlines()
    assert len(lines) == 4, msg
    assert any(
        "strategies.yaml: strategies.ema_cross.params.fsat: unknown key; did you mean fast?" in line
        for line in lines
    )
    assert any(
        "strategies.yaml: strategies.emacross: unknown strategy; did you mean ema_cross?" in line
        for line in lines
    )


def test_unknown_env_variable_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    msg = error_of(tmp_path, env={"VIGIL_RISK__MAX_OPEN_POSITON": "3", "VIGIL_MODDE": "PAPER"})
    assert (
        "env VIGIL_RISK__MAX_OPEN_POSITON: risk.max_open_positon: unknown key; did you mean "
        "max_open_positions?" in msg
    )
    assert "env VIGIL_MODDE: modde: unknown key; did you mean mode?" in msg
    msg = error_of(tmp_path, env={"VIGIL_RISK__MAX_OPEN_POSITIONS__X": "3"})
    assert "risk.max_open_positions is a single value, not a section" in msg


def test_two_env_variables_for_one_key_are_refused(tmp_path: Path) -> None:
    msg = error_of(tmp_path, env={"VIGIL_MODE": "PAPER", "vigil_mode": "LIVE"})
    assert msg == "env vigil_mode: mode: also set by VIGIL_MODE; unset one"


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    msg = error_of(tmp_path, policy="risk:\n  max_open_positions: 3\n   cooldown: 4\n")
    assert msg.startswith(f"{tmp_path / 'config' / 'policy.yaml'}: line 3, column ")
    assert "fix: check indentation" in msg
    msg = error_of(tmp_path, universe="universe:\n  max_size: 3\n  max_size: 4\n")
    assert "universe.yaml: line 3, column 3: duplicate key 'max_size'; fix: keep only one" in msg


def test_top_level_key_in_two_files_or_the_wrong_file_is_refused(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    msg = error_of(a, policy="universe: {max_size: 3}\n", universe="universe: {}\n")
    assert msg == (
        f"{a / 'config' / 'policy.yaml'} and {a / 'config' / 'universe.yaml'}: universe: "
        "set in both files; keep it only in universe.yaml"
    )
    msg = error_of(b, universe="risk: {max_open_positions: 3}\n")
    universe = b / "config" / "universe.yaml"
    assert msg == f"{universe}: risk: belongs in policy.yaml, not universe.yaml; move it there"
    msg = error_of(c, policy="rsik: {}\n")
    assert msg == f"{c / 'config' / 'policy.yaml'}: rsik: unknown key; did you mean risk?"


# --------------------------------------------------------------------------- modes


def test_live_with_read_only_is_refused(tmp_path: Path) -> None:
    msg = error_of(tmp_path, policy="mode: LIVE\n", env={"VIGIL_EXCHANGE__LIVE_CONFIRM": "binance"})
    assert "policy.yaml: mode = 'LIVE': mode LIVE needs read_only: false" in msg


def test_live_needs_the_confirmation_and_then_loads(tmp_path: Path) -> None:
    d = write(tmp_path, policy="mode: LIVE\nread_only: false\n")
    with pytest.raises(ConfigError, match="VIGIL_EXCHANGE__LIVE_CONFIRM=binance"):
        load_config(d, {}, strategies=STRATEGIES)
    with pytest.raises(ConfigError, match="live_confirm"):
        load_config(d, {"VIGIL_EXCHANGE__LIVE_CONFIRM": "coinbase"}, strategies=STRATEGIES)
    cfg = load_config(d, {"VIGIL_EXCHANGE__LIVE_CONFIRM": "binance"}, strategies=STRATEGIES).config
    assert cfg.mode is Mode.LIVE and not cfg.read_only
    assert load_config(d, {"VIGIL_MODE": "paper"}, strategies=STRATEGIES).config.mode is Mode.PAPER


def test_live_needs_credentials_from_the_environment(tmp_path: Path) -> None:
    d = write(tmp_path, policy="mode: LIVE\nread_only: false\n")
    cfg = load_config(d, {"VIGIL_EXCHANGE__LIVE_CONFIRM": "binance"}, strategies=STRATEGIES).config
    with pytest.raises(ConfigError, match="VIGIL_API_KEY and VIGIL_API_SECRET"):
        require_live_credentials(cfg, load_secrets({}))
    with pytest.raises(ConfigError, match="env VIGIL_API_SECRET: mode LIVE needs"):
        require_live_credentials(cfg, load_secrets({"VIGIL_API_KEY": "k"}))
    require_live_credentials(cfg, load_secrets({"VIGIL_API_KEY": "k", "VIGIL_API_SECRET": "s"}))
    require_live_credentials(VigilConfig(), load_secrets({}))  # DRY_RUN needs none


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "text,env_name",
    [
        ("exchange:\n  api_key: AKIA-super-secret-1\n", "VIGIL_API_KEY"),
        ("exchange:\n  secret: AKIA-super-secret-1\n", "VIGIL_API_SECRET"),
        ("exchange:\n  password: AKIA-super-secret-1\n", "VIGIL_API_PASSWORD"),
        ("alerts:\n  telegram:\n    bot_token: AKIA-super-secret-1\n", "VIGIL_API_KEY"),
        ("sim:\n  extra:\n    - {private_key: AKIA-super-secret-1}\n", None),
    ],
)
def test_a_secret_in_yaml_is_refused_without_echoing_it(
    tmp_path: Path, text: str, env_name: str | None
) -> None:
    msg = error_of(tmp_path, policy=text)
    assert "secrets only from environment variables: set" in msg
    if env_name:
        assert f"set {env_name}" in msg
    assert "AKIA-super-secret-1" not in msg


def test_a_secret_looking_env_override_is_refused_without_echoing_it(tmp_path: Path) -> None:
    msg = error_of(tmp_path, env={"VIGIL_EXCHANGE__API_SECRET": "AKIA-super-secret-1"})
    assert "set VIGIL_API_SECRET instead" in msg and "AKIA" not in msg


def test_asset_named_like_a_secret_is_not_a_secret(tmp_path: Path) -> None:
    d = write(tmp_path, universe="universe:\n  themes: {TOKEN: memes}\n")
    assert load_config(d, {}, strategies=STRATEGIES).config.universe.theme_of("TOKEN") == "memes"


def test_secrets_come_from_env_and_repr_never_shows_values() -> None:
    env = {
        "VIGIL_API_KEY": " key-AAAA1111 ",
        "VIGIL_API_SECRET": "sec-BBBB2222",
        "VIGIL_ALERT_URLS": "tgram://bot123456789:tokenCCCC3333/12345, mailto://u:pw@x.org  json://h",
    }
    s = load_secrets(env)
    assert s.api_key == "key-AAAA1111" and s.api_password is None and s.has_credentials
    assert len(s.alert_urls) == 3
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert "AAAA" not in text and "BBBB" not in text and "CCCC" not in text
    assert repr(s) == (
        "Secrets(api_key=set, api_secret=set, api_password=unset, alert_urls=3 set, "
        "audit_key=unset, "
        "escalate_urls=0 set)"
    )
    assert not load_secrets({}).has_credentials and load_secrets({}).alert_urls == ()


def test_redact_replaces_every_secret_value() -> None:
    s = load_secrets(
        {"VIGIL_API_KEY": "key-AAAA1111", "VIGIL_ALERT_URLS": "tgram://tokenCCCC3333/99"}
    )
    text = "key=key-AAAA1111 url=tgram://tokenCCCC3333/99 token alone: tokenCCCC3333"
    out = redact(text, s)
    assert "AAAA" not in out and "CCCC" not in out and out.count("***") == 3
    assert redact("nothing here", Secrets()) == "nothing here"


def test_redacting_filter_scrubs_messages_args_and_tracebacks() -> None:
    secrets = load_secrets({"VIGIL_API_SECRET": "sec-BBBB2222", "VIGIL_API_KEY": "key-AAAA1111"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger("vigil.test.redact")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("signing with %s", "sec-BBBB2222")
        logger.error("key is key-AAAA1111 and %d", 5)
        try:
            raise RuntimeError("auth failed for key-AAAA1111")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "BBBB" not in out and "AAAA" not in out
    assert "signing with ***" in out and "key is *** and 5" in out
    assert "RuntimeError: auth failed for ***" in out


# --------------------------------------------------------------------------- deprecations


def test_deprecated_key_warns_and_maps(tmp_path: Path) -> None:
    assert DEPRECATED["risk.max_positions"] == "risk.max_open_positions"
    d = write(tmp_path, policy="risk:\n  max_positions: 3\nloop:\n  interval: 30\n")
    loaded = load_config(d, {}, strategies=STRATEGIES)
    assert loaded.config.risk.max_open_positions == 3
    assert loaded.config.loop.interval_seconds == 30
    assert len(loaded.warnings) == 2
    assert (
        "risk.max_positions is deprecated; renamed to risk.max_open_positions"
        in (loaded.warnings[0])
    )
    from_env = load_config(
        write(tmp_path / "e"), {"VIGIL_RISK__MAX_POSITIONS": "2"}, strategies=STRATEGIES
    )
    assert from_env.config.risk.max_open_positions == 2
    assert "deprecated" in from_env.warnings[0]


def test_deprecated_and_new_key_together_is_an_error(tmp_path: Path) -> None:
    msg = error_of(tmp_path, policy="risk:\n  max_positions: 3\n  max_open_positions: 4\n")
    assert "policy.yaml: risk.max_positions = 3: deprecated name of risk.max_open_positions" in msg
    assert "fix: delete risk.max_positions" in msg


# --------------------------------------------------------------------------- outputs


def test_redacted_dump_masks_url_credentials() -> None:
    cfg = VigilConfig(exchange={"base_url": "http://user:pa55@127.0.0.1:8080/api"})
    dumped = redacted_dump(cfg)
    assert dumped["exchange"]["base_url"] == "http://***@127.0.0.1:8080/api"
    assert "pa55" not in str(dumped)
    assert redacted_dump(VigilConfig())["exchange"]["base_url"] is None


def test_paths_are_derived_from_data_dir(tmp_path: Path) -> None:
    cfg = VigilConfig(paths={"data_dir": "var", "audit_dir": "/srv/audit"})
    paths = cfg.paths.resolved(tmp_path)
    assert paths.data_dir == tmp_path / "var"
    assert paths.state_db == tmp_path / "var" / "state.db"
    assert paths.kill_switch == tmp_path / "var" / "KILL_SWITCH"
    assert paths.lock_file == tmp_path / "var" / "vigil.pid"
    assert paths.audit_dir == Path("/srv/audit")
    assert VigilConfig().paths.resolved(tmp_path).health_dir == tmp_path / "data" / "health"
    replay = cfg.paths.resolved(tmp_path, replay=True)
    assert replay.state_db == tmp_path / "var" / "replay" / "state.db"
    assert replay.audit_dir == tmp_path / "var" / "replay" / "audit"


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "docs" / "config.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), "stale: run python tools/export_schema.py"


def test_committed_reference_docs_are_current() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    start, end = doc.index(BEGIN), doc.index(END) + len(END) + 1
    assert doc[start:end] == render_reference(), "stale: run python tools/export_schema.py"
    for section in ("`risk`", "`exchange`", "`strategies.ema_cross.params`", "`paths`"):
        assert f"### {section}" in doc


def test_url_credentials_are_masked_in_any_text() -> None:
    url = "http://vigil%40ops:Sup3r%2Fsecret@127.0.0.1:8080/api"
    secrets = Secrets(url_credentials=url_credentials(url))
    assert set(url_credentials(url)) >= {"vigil%40ops:Sup3r%2Fsecret", "Sup3r/secret"}
    text = f"GET {url}/v3/time failed; password Sup3r/secret"
    assert redact(text, secrets) == (
        "GET http://***@127.0.0.1:8080/api/v3/time failed; password ***"
    )
    # Any URL's user:password is masked, whoever's it is.
    assert redact("see https://a:b@host/x", Secrets()) == "see https://***@host/x"
    assert url_credentials("http://127.0.0.1:1") == () and url_credentials(None) == ()


def test_audit_key_comes_from_the_environment_and_must_be_long() -> None:
    assert audit_key({}) is None
    assert audit_key({"VIGIL_AUDIT_KEY": " " + "k" * 20 + " "}) == b"k" * 20
    with pytest.raises(ConfigError, match="too short \\(5 characters\\)") as caught:
        audit_key({"VIGIL_AUDIT_KEY": "short"})
    assert "short" not in str(caught.value).replace("too short", "")
    assert "k" * 20 in load_secrets({"VIGIL_AUDIT_KEY": "k" * 20}).values()


def test_yaml_aliases_are_refused_with_file_line_and_fix(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("risk: &r\n  max_open_positions: 3\nexits: *r\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {}, strategies=STRATEGIES)
    assert str(caught.value) == (
        f"{tmp_path / 'policy.yaml'}: line 3, column 8: YAML alias *r is not accepted in vigil "
        "config; fix: write the value out where the alias stands, and drop the &anchor"
    )
