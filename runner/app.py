"""The composition root. The daemon (live, paper, replay) and the backtest build their engine
here, from the same parts (`build_engine`); only the clock, the exchange adapter, the feed and
the sinks differ. A replay and a backtest also share their venue (`replay_venue`: the sim
exchange, the adapter the mode selects, the replay feed), so they differ only in the clock and
in what drives the cycles (runner/daemon.py's replay pacer, backtest/runner.py's loop)."""

from __future__ import annotations

import difflib
import logging
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.candles import CandleSeries
from core.clock import Clock
from core.config import PipelineConfig
from core.cycle import StrategySlot, feature_plan, history_needed
from core.errors import ConfigError, DataError
from core.features import FeatureBank, indicator_kinds
from core.indicators import BUILTIN, Indicator
from core.models import Market
from core.ports import CandleFeed, CandleSink, Exchange, Store
from infra.candle_files import DataReport, list_pairs, load_required
from infra.exchange.dry_run import DryRunExchange
from infra.exchange.sim import SimExchange
from infra.exchange.sim_config import SimConfig
from infra.feeds import ReplayFeed
from infra.markets import markets_from_series
from infra.settings import Mode
from runner.engine import Engine
from runner.engine_parts import AccountListener, Telemetry
from runner.recorder import AuditSink, Recorder
from strategy.registry import resolve

log = logging.getLogger("vigil.app")


def build_engine(
    *,
    config: PipelineConfig,
    exchange: Exchange,
    feed: CandleFeed,
    store: Store,
    sink: AuditSink,
    listeners: Sequence[CandleSink] = (),
    telemetry: Telemetry | None = None,
    cycle_summaries: bool = True,
    stage_timing: bool = True,
    on_account: AccountListener | None = None,
) -> Engine:
    """`cycle_summaries`/`stage_timing` off: a backtest, which needs neither one record per
    cycle nor per-stage timings. `on_account` hears the markets and positions after start
    and after each cycle (a live feed polls those symbols)."""
    strategies = resolve(config)  # looked up, validated and built once, outside core
    return Engine(
        config=config,
        strategies=strategies,
        exchange=exchange,
        feed=feed,
        bank=feature_bank(config, strategies),
        store=store,
        recorder=Recorder(sink, cycle_summaries=cycle_summaries),
        candle_listeners=listeners,
        telemetry=telemetry,
        stage_timing=stage_timing,
        on_account=on_account,
    )


def feature_bank(config: PipelineConfig, strategies: Sequence[StrategySlot]) -> FeatureBank:
    """The indicators this config's stages and strategies read, for every symbol."""
    common, extra = feature_plan(config, strategies)
    bank = FeatureBank(
        common,
        kinds=indicator_classes(strategies),
        extra=extra,
        history=history_needed(strategies),
    )
    for kind, why in sorted(bank.unfused.items()):
        log.warning("indicator %r runs unfused (its update is called as it is): %s", kind, why)
    return bank


def indicator_classes(strategies: Sequence[StrategySlot]) -> tuple[type[Indicator], ...]:
    """The indicator kinds a bank knows: the built-ins and the enabled strategies' own."""
    classes = list(BUILTIN)
    for slot in strategies:
        classes += slot.strategy.indicators
    try:
        indicator_kinds(classes)
    except ValueError as exc:
        raise ConfigError(f"strategies: {exc}; fix: rename one of the kinds") from exc
    return tuple(classes)


@dataclass(frozen=True)
class ReplayInputs:
    """Recorded candles prepared identically for `vigil run --replay` and `vigil backtest`."""

    series: dict[str, CandleSeries]
    reports: dict[str, DataReport]
    markets: dict[str, Market]
    timeframe_ms: int
    start_ms: int  # first cycle (every candle closed by then is warm-up history)
    end_ms: int  # last cycle


def check_markets(config: PipelineConfig, known: Collection[str], where: str) -> None:
    """Refuse a config naming markets that `where` (the exchange) lacks: ConfigError, one line
    per field, each with a fix."""
    problems = [p for p in (_index_problem(config, known, where),) if p]
    missing = [s for s in config.universe.symbols if s not in known]
    if missing:
        problems.append(
            f"universe.symbols = {', '.join(missing)}: not a market {where}; fix: remove "
            "them from universe.symbols or correct the spelling"
        )
    if problems:
        raise ConfigError("\n".join(problems))


def _index_problem(config: PipelineConfig, known: Collection[str], where: str) -> str | None:
    index = config.regime.index_symbol
    if index in known:
        return None
    close = difflib.get_close_matches(index, list(known), n=3)
    hint = f"e.g. {', '.join(close)}" if close else "check the spelling"
    return (
        f"regime.index_symbol = {index!r}: not a market {where}, so the regime would stay "
        f"chop and the crash breaker never engage; fix: set it to a market {where} ({hint})"
    )


def replay_markets_check(config: PipelineConfig, data_dir: Path) -> list[str]:
    """The markets a replay or backtest needs, against its candle files (when there are any:
    an empty directory gets its own message from prepare_replay). A missing file is a data
    error (exit 2) naming the pair, the setting that asks for it and the fix. Returns the
    pairs with candle files (none: nothing was checked)."""
    if not data_dir.is_dir():
        return []
    known = list_pairs(data_dir, config.timeframe)
    if not known:
        return known
    tf = config.timeframe
    problems = [p for p in (_index_problem(config, known, f"with {tf} data in {data_dir}"),) if p]
    problems += [
        f"pair {s} is required but has no candle file ({tf}) in {data_dir}: universe.symbols "
        f"names it; fix: add its candles (vigil download-data --pairs {s} --timeframe {tf}) "
        "or remove it from universe.symbols"
        for s in config.universe.symbols
        if s not in known
    ]
    if problems:
        raise DataError("\n".join(problems))
    return known


def prepare_replay(
    config: PipelineConfig,
    data_dir: Path,
    *,
    pairs: Sequence[str] | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    warmup_candles: int = 300,
) -> ReplayInputs:
    tf = config.timeframe_ms
    symbols = list(pairs or config.universe.symbols or list_pairs(data_dir, config.timeframe))
    if symbols:
        replay_markets_check(config, data_dir)
        if config.regime.index_symbol not in symbols:  # the regime reads it
            symbols.append(config.regime.index_symbol)
    if not symbols:
        raise ConfigError(
            f"{data_dir}: no {config.timeframe} candle files found; download some with "
            f"`vigil download-data --pairs BTC/USDT --timeframe {config.timeframe} --days 30`"
        )
    warm_ms = warmup_candles * tf
    # Every pair must have candles (DataError otherwise, before any cycle), judged with the
    # pipeline's own bad-tick guard so the report's price spikes are the ones it will meet.
    loaded = load_required(
        data_dir,
        symbols,
        config.timeframe,
        from_ms=None if from_ms is None else from_ms - warm_ms,
        to_ms=to_ms,
        guard=config.triggers.outlier,
    )
    series = {s: sr for s, (sr, _) in loaded.items()}
    reports = {s: rep for s, (_, rep) in loaded.items()}
    if not series:
        raise ConfigError(f"{data_dir}: the candle files hold no data in the requested range")
    first = min(sr.first_ts for sr in series.values())
    last = max(sr.last_ts for sr in series.values())
    start = first + tf + warm_ms
    if from_ms is not None:
        start = max(start, from_ms - from_ms % tf)
    end = last + tf
    if start > end:
        raise ConfigError(
            f"{data_dir}: {len(series)} pair(s) hold too little data for {warmup_candles} "
            "warm-up candles; lower loop.warmup_candles or give more data"
        )
    return ReplayInputs(series, reports, markets_from_series(series), tf, start, end)


def sim_exchange(inputs: ReplayInputs, sim: SimConfig, clock: Clock) -> SimExchange:
    return SimExchange(
        markets=inputs.markets,
        config=sim,
        rng=random.Random(sim.seed),
        clock=clock,
        timeframe_ms=inputs.timeframe_ms,
    )


def replay_exchange(mode: Mode, sim: SimExchange, clock: Clock) -> Exchange:
    """The adapter decides the mode: PAPER trades on the sim, DRY_RUN sends nothing."""
    if mode is Mode.PAPER:
        return sim
    if mode is Mode.DRY_RUN:
        return DryRunExchange(sim, now_ms=clock.now_ms)
    raise ConfigError(
        "mode: LIVE cannot replay recorded candles; use PAPER or DRY_RUN with --replay"
    )


def replay_feed(inputs: ReplayInputs) -> ReplayFeed:
    return ReplayFeed(inputs.series, timeframe_ms=inputs.timeframe_ms)


@dataclass(frozen=True)
class ReplayVenue:
    """Recorded candles as a venue: what `vigil run --replay` and `vigil backtest` trade on."""

    sim: SimExchange
    exchange: Exchange  # the sim (PAPER) or a dry run over it
    feed: ReplayFeed
    listeners: tuple[CandleSink, ...]


def replay_venue(
    inputs: ReplayInputs, sim_config: SimConfig, clock: Clock, mode: Mode = Mode.PAPER
) -> ReplayVenue:
    sim = sim_exchange(inputs, sim_config, clock)
    return ReplayVenue(
        sim=sim,
        exchange=replay_exchange(mode, sim, clock),
        feed=replay_feed(inputs),
        listeners=(sim.candle_listener(),),
    )
