"""Universe: which symbols may be traded this cycle, and why the others may not."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from core.clock import DAY_MS
from core.config import UniverseConfig
from core.features import SymbolFeatures
from core.models import Exclusion, Market, Quote, QuoteBoard, UniverseResult
from core.reasons import UniverseReason as R


def volume_key(timeframe_ms: int) -> str:
    """The feature key holding 24h quote volume for this timeframe."""
    return f"qvol:{max(1, DAY_MS // timeframe_ms)}"


def candidates(cfg: UniverseConfig, markets: Mapping[str, Market]) -> list[str]:
    """Configured symbols, or every market in the accounting currency."""
    if cfg.symbols:
        return list(cfg.symbol_list)
    return sorted(s for s, m in markets.items() if m.quote == cfg.quote_currency)


class StaticScreen:
    """The universe checks that depend only on the markets and the config (market known, quote
    currency, red flags, product status), done once per markets rather than for every symbol
    every cycle. Pure data: whoever owns the markets keeps it (the engine, from one markets
    load to the next) and hands it to the cycle, which checks it with `fits`."""

    __slots__ = ("cfg", "degraded", "known", "markets", "rows", "symbols")

    def __init__(
        self, cfg: UniverseConfig, markets: Mapping[str, Market], symbols: Iterable[str]
    ) -> None:
        # A copy: `fits` compares it with the markets of a later cycle by value.
        self.cfg, self.markets, self.symbols = cfg, dict(markets), tuple(symbols)
        red, _core, tradable, _spread, _vol = cfg.screen
        rows: list[tuple[str, Exclusion | None, Exclusion | None]] = []
        known = degraded = 0
        for sym in self.symbols:
            m = markets.get(sym)
            early: Exclusion | None = None  # decided before the ban check
            late: Exclusion | None = None  # decided after it
            if m is None:
                early = Exclusion(sym, R.NO_MARKET)
            else:
                known += 1
                if m.status not in tradable:
                    degraded += 1
                if m.quote != cfg.quote_currency:
                    early = Exclusion(sym, R.WRONG_QUOTE, m.quote)
                elif sym in red:
                    early = Exclusion(sym, R.RED_FLAG)
                elif m.status not in tradable:
                    late = Exclusion(sym, R.DEGRADED_STATUS, m.status.value)
            rows.append((sym, early, late))
        self.rows = tuple(rows)
        self.known, self.degraded = known, degraded

    def fits(self, cfg: UniverseConfig, markets: Mapping[str, Market]) -> bool:
        """Made for this config (a frozen object: the same one) and markets equal to these
        (by value, so markets edited in place are noticed)."""
        return cfg is self.cfg and markets == self.markets


def static_screen(cfg: UniverseConfig, markets: Mapping[str, Market]) -> StaticScreen:
    """The static screen of the candidate symbols (see `candidates`)."""
    return StaticScreen(cfg, markets, candidates(cfg, markets))


def screen_for(
    cfg: UniverseConfig, markets: Mapping[str, Market], kept: StaticScreen | None
) -> StaticScreen:
    """`kept` when it fits these markets and config, else a new screen."""
    if kept is not None and kept.fits(cfg, markets):
        return kept
    return static_screen(cfg, markets)


def select_universe(
    *,
    cfg: UniverseConfig,
    features: Mapping[str, SymbolFeatures],
    quotes: Mapping[str, Quote],
    bans: Mapping[str, int],
    now_ms: int,
    timeframe_ms: int,
    markets: Mapping[str, Market] | None = None,
    symbols: Iterable[str] | None = None,
    screen: StaticScreen | None = None,
) -> UniverseResult:
    """Point in time: only `features` and `quotes` as of now are consulted."""
    vkey = volume_key(timeframe_ms)
    spread_of = QuoteBoard.of(quotes).spread_bps
    _red, core_set, _tradable, max_spread, min_vol = cfg.screen
    if screen is None:
        if markets is None:
            raise TypeError("select_universe needs markets or their screen")
        screen = StaticScreen(
            cfg, markets, symbols if symbols is not None else candidates(cfg, markets)
        )
    rows = screen.rows
    excluded: list[Exclusion] = []
    core_ok: list[str] = []
    rotational: list[tuple[float, str]] = []  # (-volume, symbol)

    for sym, early, late in rows:
        if early is not None:
            excluded.append(early)
            continue
        if bans:
            until = bans.get(sym)
            if until is not None and until > now_ms:
                excluded.append(Exclusion(sym, R.BANNED, f"until {until}"))
                continue
        if late is not None:
            excluded.append(late)
            continue
        f = features.get(sym)
        spread = spread_of(sym)
        if f is None or spread is None:
            excluded.append(Exclusion(sym, R.NO_DATA))
            continue
        if spread > max_spread:
            excluded.append(Exclusion(sym, R.WIDE_SPREAD, f"{spread:.1f}bps"))
            continue
        if sym in core_set:
            core_ok.append(sym)
            continue
        vol = f.values.get(vkey)
        if vol is None:
            excluded.append(Exclusion(sym, R.WARMING_UP, vkey))
            continue
        if vol < min_vol:
            excluded.append(Exclusion(sym, R.LOW_VOLUME, f"{vol:.0f}"))
            continue
        rotational.append((-vol, sym))

    # Highest volume first (volumes are stored negated); the symbol breaks ties so the order
    # never depends on input order.
    rotational.sort()
    max_rank = cfg.rotational_max_rank
    ranked = [sym for _, sym in rotational[:max_rank]]
    for rank, (_, sym) in enumerate(rotational[max_rank:], start=max_rank + 1):
        excluded.append(Exclusion(sym, R.OUT_OF_RANK, f"rank {rank}"))

    eligible = core_ok + ranked
    for sym in eligible[cfg.max_size :]:
        excluded.append(Exclusion(sym, R.UNIVERSE_FULL))
    return UniverseResult(eligible=tuple(eligible[: cfg.max_size]), excluded=tuple(excluded))
