"""Universe selection: every exclusion reason, core vs rotational, rank and size cuts, order."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import UniverseConfig
from core.features import SymbolFeatures
from core.models import Market, MarketStatus, Quote, UniverseResult
from core.reasons import UniverseReason as R
from core.universe import candidates, screen_for, select_universe, static_screen, volume_key
from tests.core.helpers import T0, TF, make_features, market, quote, volume_features

VKEY = "qvol:288"
NOW = T0 + TF
MIN_VOL = 5_000_000.0


def feats(symbol: str, vol: float | None) -> SymbolFeatures:
    return make_features(symbol, values={VKEY: vol})


def select(
    cfg: UniverseConfig,
    *,
    mkts: Mapping[str, Market] | None = None,
    vols: Mapping[str, float | None] | None = None,
    quotes: Mapping[str, Quote] | None = None,
    bans: Mapping[str, int] | None = None,
    symbols: Sequence[str] | None = None,
    now_ms: int = NOW,
) -> UniverseResult:
    """Every market and quote exist unless given; `vols` are 24h quote volumes."""
    vols = dict(vols or {})
    syms = list(symbols if symbols is not None else (cfg.symbols or vols))
    if mkts is None:
        mkts = {s: market(s) for s in syms}
    if quotes is None:
        quotes = {s: quote(s) for s in syms}
    return select_universe(
        cfg=cfg,
        markets=mkts,
        features={s: feats(s, v) for s, v in vols.items()},
        quotes=quotes,
        bans=bans or {},
        now_ms=now_ms,
        timeframe_ms=TF,
        symbols=symbols,
    )


def reasons(res: UniverseResult) -> dict[str, str]:
    return {e.symbol: e.reason for e in res.excluded}


def cfg_of(**kw: Any) -> UniverseConfig:
    kw.setdefault("core_symbols", ())
    return UniverseConfig(**kw)


# --------------------------------------------------------------------------- volume key


@pytest.mark.parametrize(
    ("tf_ms", "key"),
    [(60_000, "qvol:1440"), (TF, "qvol:288"), (3_600_000, "qvol:24"), (86_400_000, "qvol:1")],
)
def test_volume_key_spans_24h(tf_ms: int, key: str) -> None:
    assert volume_key(tf_ms) == key


def test_volume_key_of_a_weekly_timeframe_is_one_bar() -> None:
    assert volume_key(7 * 86_400_000) == "qvol:1"


def test_real_feature_bank_volume_is_read() -> None:
    cfg = cfg_of(symbols=("A/USDT", "B/USDT"))
    res = select_universe(
        cfg=cfg,
        markets={s: market(s) for s in cfg.symbols},
        features={
            "A/USDT": volume_features("A/USDT", 8e6),
            "B/USDT": volume_features("B/USDT", 1e6),
        },
        quotes={s: quote(s) for s in cfg.symbols},
        bans={},
        now_ms=NOW,
        timeframe_ms=TF,
    )
    assert res.eligible == ("A/USDT",)
    assert reasons(res) == {"B/USDT": R.LOW_VOLUME}


# --------------------------------------------------------------------------- every reason


def test_no_market() -> None:
    cfg = cfg_of(symbols=("GONE/USDT",))
    res = select(cfg, mkts={}, vols={"GONE/USDT": 1e9})
    assert res.eligible == () and reasons(res) == {"GONE/USDT": R.NO_MARKET}


def test_wrong_quote() -> None:
    cfg = cfg_of(symbols=("BTC/EUR",))
    res = select(cfg, vols={"BTC/EUR": 1e9})
    assert reasons(res) == {"BTC/EUR": R.WRONG_QUOTE}
    assert res.excluded[0].detail == "EUR"


@pytest.mark.parametrize(
    "status",
    [
        MarketStatus.POST_ONLY,
        MarketStatus.LIMIT_ONLY,
        MarketStatus.CANCEL_ONLY,
        MarketStatus.OFFLINE,
    ],
)
def test_degraded_status(status: MarketStatus) -> None:
    cfg = cfg_of(symbols=("A/USDT",))
    res = select(cfg, mkts={"A/USDT": market("A/USDT", status=status)}, vols={"A/USDT": 1e9})
    assert reasons(res) == {"A/USDT": R.DEGRADED_STATUS}
    assert res.excluded[0].detail == status.value


def test_tradable_statuses_are_configurable() -> None:
    cfg = cfg_of(
        symbols=("A/USDT",), tradable_statuses=(MarketStatus.ONLINE, MarketStatus.POST_ONLY)
    )
    res = select(
        cfg,
        mkts={"A/USDT": market("A/USDT", status=MarketStatus.POST_ONLY)},
        vols={"A/USDT": 1e9},
    )
    assert res.eligible == ("A/USDT",)


def test_red_flag() -> None:
    cfg = cfg_of(symbols=("A/USDT", "B/USDT"), red_flags=("A/USDT",))
    res = select(cfg, vols={"A/USDT": 1e9, "B/USDT": 1e9})
    assert res.eligible == ("B/USDT",) and reasons(res) == {"A/USDT": R.RED_FLAG}


def test_ban_until_the_future_excludes() -> None:
    cfg = cfg_of(symbols=("A/USDT",))
    res = select(cfg, vols={"A/USDT": 1e9}, bans={"A/USDT": NOW + 1})
    assert reasons(res) == {"A/USDT": R.BANNED}
    assert str(NOW + 1) in res.excluded[0].detail


@pytest.mark.parametrize("until", [NOW, NOW - 1, 0])
def test_expired_ban_does_not_exclude(until: int) -> None:
    cfg = cfg_of(symbols=("A/USDT",))
    res = select(cfg, vols={"A/USDT": 1e9}, bans={"A/USDT": until})
    assert res.eligible == ("A/USDT",) and res.excluded == ()


def test_no_data_without_features_or_quote() -> None:
    cfg = cfg_of(symbols=("NOFEAT/USDT", "NOQUOTE/USDT"))
    res = select(
        cfg,
        vols={"NOQUOTE/USDT": 1e9},
        quotes={"NOFEAT/USDT": quote("NOFEAT/USDT")},
        symbols=cfg.symbols,
    )
    assert reasons(res) == {"NOFEAT/USDT": R.NO_DATA, "NOQUOTE/USDT": R.NO_DATA}


def test_warming_up_without_24h_volume() -> None:
    cfg = cfg_of(symbols=("NONE/USDT", "MISSING/USDT"))
    fs = {"NONE/USDT": feats("NONE/USDT", None), "MISSING/USDT": make_features("MISSING/USDT")}
    res = select_universe(
        cfg=cfg,
        markets={s: market(s) for s in cfg.symbols},
        features=fs,
        quotes={s: quote(s) for s in cfg.symbols},
        bans={},
        now_ms=NOW,
        timeframe_ms=TF,
    )
    assert reasons(res) == {"NONE/USDT": R.WARMING_UP, "MISSING/USDT": R.WARMING_UP}
    assert res.excluded[0].detail == VKEY


def test_low_volume_just_below_the_minimum() -> None:
    cfg = cfg_of(symbols=("AT/USDT", "BELOW/USDT"))
    res = select(cfg, vols={"AT/USDT": MIN_VOL, "BELOW/USDT": MIN_VOL - 0.01})
    assert res.eligible == ("AT/USDT",)
    assert reasons(res) == {"BELOW/USDT": R.LOW_VOLUME}


def test_wide_spread_just_above_the_maximum() -> None:
    cfg = cfg_of(symbols=("AT/USDT", "ABOVE/USDT"))
    qs = {
        "AT/USDT": quote("AT/USDT", 100, spread_bps=20),
        "ABOVE/USDT": quote("ABOVE/USDT", 100, spread_bps="20.01"),
    }
    res = select(cfg, vols={"AT/USDT": 1e9, "ABOVE/USDT": 1e9}, quotes=qs)
    assert res.eligible == ("AT/USDT",)
    assert reasons(res) == {"ABOVE/USDT": R.WIDE_SPREAD}
    assert res.excluded[0].detail == "20.0bps"


def test_out_of_rank() -> None:
    vols = {f"S{i}/USDT": 1e7 * (i + 1) for i in range(5)}  # S4 is the largest
    res = select(cfg_of(symbols=tuple(vols), rotational_max_rank=3), vols=vols)
    assert res.eligible == ("S4/USDT", "S3/USDT", "S2/USDT")
    assert reasons(res) == {"S1/USDT": R.OUT_OF_RANK, "S0/USDT": R.OUT_OF_RANK}
    assert [e.detail for e in res.excluded] == ["rank 4", "rank 5"]


def test_universe_full() -> None:
    vols = {f"S{i}/USDT": 1e7 * (i + 1) for i in range(5)}
    res = select(cfg_of(symbols=tuple(vols), max_size=2), vols=vols)
    assert res.eligible == ("S4/USDT", "S3/USDT")
    assert reasons(res) == {s: R.UNIVERSE_FULL for s in ("S2/USDT", "S1/USDT", "S0/USDT")}


def test_the_first_failing_check_names_the_reason() -> None:
    # Red-flagged, banned, degraded, no data and low volume all at once: one exclusion.
    cfg = cfg_of(symbols=("A/USDT",), red_flags=("A/USDT",))
    res = select(
        cfg,
        mkts={"A/USDT": market("A/USDT", status=MarketStatus.OFFLINE)},
        vols={},
        quotes={},
        bans={"A/USDT": NOW + 1},
        symbols=cfg.symbols,
    )
    assert [(e.symbol, e.reason) for e in res.excluded] == [("A/USDT", R.RED_FLAG)]


# --------------------------------------------------------------------------- core tier


def test_core_is_eligible_regardless_of_volume_and_rank() -> None:
    cfg = UniverseConfig(
        symbols=("BTC/USDT", "ETH/USDT", "R1/USDT"),
        core_symbols=("BTC/USDT", "ETH/USDT"),
        rotational_max_rank=1,
    )
    res = select(cfg, vols={"BTC/USDT": 0.0, "ETH/USDT": None, "R1/USDT": 1e9})
    assert res.eligible == ("BTC/USDT", "ETH/USDT", "R1/USDT")
    assert res.excluded == ()


@pytest.mark.parametrize("problem", ["banned", "red_flag", "degraded", "wide_spread", "no_data"])
def test_core_is_still_subject_to_safety_checks(problem: str) -> None:
    sym = "BTC/USDT"
    kw: dict[str, Any] = {"symbols": (sym,), "core_symbols": (sym,)}
    if problem == "red_flag":
        kw["red_flags"] = (sym,)
    cfg = UniverseConfig(**kw)
    status = MarketStatus.CANCEL_ONLY if problem == "degraded" else MarketStatus.ONLINE
    mkts = {sym: market(sym, status=status)}
    qs = {sym: quote(sym, spread_bps=50 if problem == "wide_spread" else 2)}
    res = select(
        cfg,
        mkts=mkts,
        vols={} if problem == "no_data" else {sym: 1e12},
        quotes=qs,
        bans={sym: NOW + 60_000} if problem == "banned" else {},
        symbols=cfg.symbols,
    )
    expected = {
        "banned": R.BANNED,
        "red_flag": R.RED_FLAG,
        "degraded": R.DEGRADED_STATUS,
        "wide_spread": R.WIDE_SPREAD,
        "no_data": R.NO_DATA,
    }[problem]
    assert res.eligible == () and reasons(res) == {sym: expected}


def test_max_size_keeps_core_first() -> None:
    rot = {f"R{i}/USDT": 1e9 * (i + 1) for i in range(3)}
    cfg = UniverseConfig(
        symbols=("R0/USDT", "R1/USDT", "R2/USDT", "ETH/USDT", "BTC/USDT"),
        core_symbols=("BTC/USDT", "ETH/USDT"),
        max_size=3,
    )
    # Core symbols trade far less than the rotational ones and still come first.
    res = select(cfg, vols={**rot, "ETH/USDT": 1.0, "BTC/USDT": 1.0})
    assert res.eligible == ("ETH/USDT", "BTC/USDT", "R2/USDT")
    assert reasons(res) == {"R1/USDT": R.UNIVERSE_FULL, "R0/USDT": R.UNIVERSE_FULL}


def test_core_symbols_count_toward_max_size_but_not_rank() -> None:
    cfg = UniverseConfig(
        symbols=("BTC/USDT", "A/USDT", "B/USDT"),
        core_symbols=("BTC/USDT",),
        rotational_max_rank=2,
        max_size=10,
    )
    res = select(cfg, vols={"BTC/USDT": 1e12, "A/USDT": 2e7, "B/USDT": 1e7})
    assert res.eligible == ("BTC/USDT", "A/USDT", "B/USDT")


# --------------------------------------------------------------------------- candidates


def test_candidates_from_markets_when_symbols_is_empty() -> None:
    mkts = {s: market(s) for s in ("ZZ/USDT", "AA/USDT", "BTC/EUR", "MM/USDT")}
    cfg = cfg_of()
    assert candidates(cfg, mkts) == ["AA/USDT", "MM/USDT", "ZZ/USDT"]
    res = select_universe(
        cfg=cfg,
        markets=mkts,
        features={s: feats(s, 1e9) for s in mkts},
        quotes={s: quote(s) for s in mkts},
        bans={},
        now_ms=NOW,
        timeframe_ms=TF,
    )
    # Other quote currencies are not candidates at all, so they are not "excluded" either.
    assert res.eligible == ("AA/USDT", "MM/USDT", "ZZ/USDT") and res.excluded == ()


def test_repeated_configured_symbols_are_refused() -> None:
    with pytest.raises(ValueError, match="B/USDT listed more than once"):
        cfg_of(symbols=("B/USDT", "A/USDT", "B/USDT"))


def test_explicit_symbols_override_candidates() -> None:
    cfg = cfg_of(symbols=("A/USDT", "B/USDT"))
    res = select(cfg, vols={"A/USDT": 1e9, "B/USDT": 1e9}, symbols=["B/USDT"])
    assert res.eligible == ("B/USDT",) and res.excluded == ()


# --------------------------------------------------------------------------- determinism


def test_volume_ties_break_by_symbol_whatever_the_input_order() -> None:
    vols = {s: 1e8 for s in ("C/USDT", "A/USDT", "D/USDT", "B/USDT")}
    cfg = cfg_of(rotational_max_rank=3)
    first = select(cfg, vols=vols, symbols=list(vols))
    assert first.eligible == ("A/USDT", "B/USDT", "C/USDT")
    assert reasons(first) == {"D/USDT": R.OUT_OF_RANK}
    rng = random.Random(0)
    for _ in range(20):
        order = list(vols)
        rng.shuffle(order)
        assert select(cfg, vols=vols, symbols=order) == first


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    entries=st.dictionaries(
        st.sampled_from([f"S{i}/USDT" for i in range(12)] + ["X/EUR", "BTC/USDT", "ETH/USDT"]),
        st.tuples(
            st.one_of(st.none(), st.sampled_from([0.0, 1e6, 5e6, 1e7, 1e8])),
            st.sampled_from(list(MarketStatus)),
            st.sampled_from([1, 10, 25]),
            st.booleans(),  # banned
            st.booleans(),  # red flag
        ),
        max_size=15,
    ),
    rank=st.integers(1, 6),
    size=st.integers(1, 8),
    seed=st.integers(0, 1000),
)
def test_every_candidate_is_eligible_or_excluded_exactly_once(
    entries: dict[str, tuple[float | None, MarketStatus, int, bool, bool]],
    rank: int,
    size: int,
    seed: int,
) -> None:
    syms = list(entries)
    cfg = UniverseConfig(
        symbols=tuple(syms),
        red_flags=tuple(s for s, e in entries.items() if e[4]),
        rotational_max_rank=rank,
        max_size=size,
    )
    mkts = {s: market(s, status=e[1]) for s, e in entries.items()}
    qs = {s: quote(s, spread_bps=e[2]) for s, e in entries.items()}
    bans = {s: NOW + 1 for s, e in entries.items() if e[3]}
    vols = {s: e[0] for s, e in entries.items()}
    res = select(cfg, mkts=mkts, vols=vols, quotes=qs, bans=bans)
    excluded = [e.symbol for e in res.excluded]
    assert sorted(list(res.eligible) + excluded) == sorted(syms)
    assert len(res.eligible) <= size
    rotational = [s for s in res.eligible if s not in cfg.core_symbols]
    assert len(rotational) <= rank
    for s in res.eligible:
        assert mkts[s].status is MarketStatus.ONLINE and s not in bans and s not in cfg.red_flags
    # The outcome does not depend on the order symbols are checked in (core symbols keep
    # their configured order, so shuffle only the rotational ones).
    shuffled = [s for s in syms if s not in cfg.core_symbols]
    random.Random(seed).shuffle(shuffled)
    order = [s for s in syms if s in cfg.core_symbols] + shuffled
    again = select(cfg, mkts=mkts, vols=vols, quotes=qs, bans=bans, symbols=order)
    assert again.eligible == res.eligible
    assert sorted((e.symbol, e.reason) for e in again.excluded) == sorted(
        (e.symbol, e.reason) for e in res.excluded
    )


# --------------------------------------------------------------------------- static screen


def test_static_checks_follow_each_new_markets_object() -> None:
    """The market-only checks are reused while the markets object stays the same, and
    redone for a new one (the engine replaces markets, never edits them)."""
    cfg = cfg_of(symbols=("AAA/USDT", "BBB/USDT"), max_size=5, rotational_max_rank=5)
    vols = {"AAA/USDT": 9e6, "BBB/USDT": 8e6}
    online = {s: market(s) for s in vols}
    halted = dict(online)
    halted["BBB/USDT"] = market("BBB/USDT", status=MarketStatus.CANCEL_ONLY)
    assert select(cfg, mkts=online, vols=vols).eligible == ("AAA/USDT", "BBB/USDT")
    assert select(cfg, mkts=online, vols=vols).eligible == ("AAA/USDT", "BBB/USDT")
    res = select(cfg, mkts=halted, vols=vols)
    assert res.eligible == ("AAA/USDT",)
    assert reasons(res) == {"BBB/USDT": R.DEGRADED_STATUS}
    assert select(cfg, mkts=online, vols=vols).eligible == ("AAA/USDT", "BBB/USDT")
    other = cfg_of(symbols=("AAA/USDT", "BBB/USDT"), red_flags=("AAA/USDT",))
    assert reasons(select(other, mkts=online, vols=vols)) == {"AAA/USDT": R.RED_FLAG}


def test_static_screen_counts_known_and_degraded() -> None:
    cfg = cfg_of(symbols=("AAA/USDT", "BBB/USDT", "CCC/USDT"))
    mkts = {
        "AAA/USDT": market("AAA/USDT"),
        "BBB/USDT": market("BBB/USDT", status=MarketStatus.POST_ONLY),
    }
    screen = static_screen(cfg, mkts)
    assert (screen.known, screen.degraded) == (2, 1)
    assert screen.symbols == cfg.symbol_list


def test_a_kept_screen_is_reused_only_for_equal_markets_and_the_same_config() -> None:
    cfg = cfg_of(symbols=("AAA/USDT", "BBB/USDT"))
    mkts = {"AAA/USDT": market("AAA/USDT"), "BBB/USDT": market("BBB/USDT")}
    screen = static_screen(cfg, mkts)
    assert screen_for(cfg, dict(mkts), screen) is screen  # equal by value: reused
    mkts["BBB/USDT"] = market("BBB/USDT", status=MarketStatus.POST_ONLY)  # edited in place
    fresh = screen_for(cfg, mkts, screen)
    assert fresh is not screen and fresh.degraded == 1
    assert screen_for(cfg_of(symbols=("AAA/USDT",)), mkts, fresh) is not fresh
    assert screen_for(cfg, mkts, None).degraded == 1
