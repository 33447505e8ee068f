"""`vigil shadow report` over a real audit log; every expected number is worked out by hand."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.clock import SimClock
from infra.audit import AuditLog
from runner.shadow_report import (
    build_shadow_report,
    cmd_shadow_report,
    format_shadow_report,
    median,
    percentile,
)

D = Decimal
QUOTE = {"bid": "99.90", "ask": "100.00", "ts": 0}


def order(
    coid: str,
    side: str,
    typ: str,
    *,
    intended: str | None,
    qty: str = "1.000",
    quote: dict[str, Any] | None = QUOTE,
    post_only: bool = False,
    live: tuple[str, str, str | None, str, int | None, int | None],
    sim: tuple[str, str, str | None, str, int | None],
    slip: tuple[str | None, str | None, str | None] = (None, None, None),
    reason: str = "",
) -> dict[str, Any]:
    """live = (status, filled, avg, fee, ack ms, first fill ms); sim = (status, filled, avg,
    fee, first fill ms); slip = (slippage, sim slippage, sim vs live) in bps."""
    return {
        "client_order_id": coid,
        "symbol": "BTC/USDT",
        "side": side,
        "type": typ,
        "post_only": post_only,
        "strategy": "s",
        "submitted_ms": 1_000,
        "ended_ms": 2_000,
        "intended_price": intended,
        "intended_qty": qty,
        "quote": quote,
        "live": dict(
            zip(
                ("status", "filled", "avg_price", "fee", "ack_latency_ms", "first_fill_latency_ms"),
                live,
                strict=True,
            ),
            fills=1,
            error="",
        ),
        "sim": dict(
            zip(
                ("status", "filled", "avg_price", "fee", "first_fill_latency_ms"), sim, strict=True
            ),
            reason=reason,
        ),
        "slippage_bps": slip[0],
        "sim_slippage_bps": slip[1],
        "sim_vs_live_bps": slip[2],
    }


ORDERS = [
    # 1 market buy: 10 bps live, 2 in the sim
    order(
        "1", "buy", "market", intended="100.00",
        live=("FILLED", "1.000", "100.10", "0.2002", 250, 0),
        sim=("FILLED", "1.000", "100.02", "0.20004", 0),
        slip=("10.00", "2.00", "8.00"),
    ),
    # 2 market sell at the bid 100.00
    order(
        "2", "sell", "market", intended="100.00", qty="2.000",
        quote={"bid": "100.00", "ask": "100.10", "ts": 0},
        live=("FILLED", "2.000", "99.90", "0.3996", 150, 0),
        sim=("FILLED", "2.000", "99.98", "0.39992", 0),
        slip=("10.00", "2.00", "8.00"),
    ),
    # 3 market buy that opened under the ask: better than intended
    order(
        "3", "buy", "market", intended="100.00",
        live=("FILLED", "1.000", "99.60", "0.1992", 350, 0),
        sim=("FILLED", "1.000", "99.52", "0.19904", 0),
        slip=("-40.00", "-48.00", "8.00"),
    ),
    # 4 post-only limit that never filled, canceled
    order(
        "4", "buy", "limit", intended="95.00", post_only=True,
        live=("CANCELED", "0", None, "0", 50, None),
        sim=("CANCELED", "0", None, "0", None),
    ),
    # 5 post-only limit filled live, half in the sim (participation cap)
    order(
        "5", "buy", "limit", intended="99.50", post_only=True,
        live=("FILLED", "1.000", "99.50", "0.0995", 40, 60_000),
        sim=("CANCELED", "0.500", "99.50", "0.04975", 60_000),
        slip=("0.00", "0.00", "0.00"),
    ),
    # 6 market buy the sim refused
    order(
        "6", "buy", "market", intended=None, quote=None,
        live=("FILLED", "1.000", "50.05", "0.1001", 200, 0),
        sim=("REFUSED", "0", None, "0", None),
        reason="InvalidOrder: ETH/USDT: no price yet for a market order",
    ),
    # 7 limit the venue refused
    order(
        "7", "buy", "limit", intended="99.00", qty="5000.000",
        live=("REJECTED", "0", None, "0", 2, None),
        sim=("CANCELED", "0", None, "0", None),
    ),
    # 8 post-only limit filled live, touched but not traded through in the sim
    order(
        "8", "buy", "limit", intended="99.00", post_only=True,
        live=("FILLED", "1.000", "99.00", "0.099", 60, 120_000),
        sim=("CANCELED", "0", None, "0", None),
        slip=("0.00", None, None),
    ),
]  # fmt: skip


def write_log(directory: Path, orders: list[dict[str, Any]], *, start_ms: int = 0) -> None:
    clock = SimClock(start_ms)
    with AuditLog(directory, config_hash="cafe", clock=clock, fsync=False) as log:
        log.append("cycle", {"cycle_ts": start_ms})  # other kinds are ignored
        for data in orders:
            clock.advance(1_000)
            log.append("shadow_order", data)
            log.append("shadow_fill", {"client_order_id": data["client_order_id"]})


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    write_log(tmp_path, ORDERS)
    return build_shadow_report(tmp_path)


def test_counts_and_fill_rates(report: dict[str, Any]) -> None:
    assert report["records"] == 8
    assert report["skipped"] == 0
    assert report["live_status"] == {"CANCELED": 1, "FILLED": 6, "REJECTED": 1}
    assert report["sim_status"] == {"CANCELED": 4, "FILLED": 3, "REFUSED": 1}
    assert report["sim_refusals"] == {"InvalidOrder": 1}
    # Compared = both took it: 1 2 3 4 5 8. Live filled 1 2 3 5 8, the sim 1 2 3 5.
    assert report["fill_rate"]["all"] == {
        "compared": 6,
        "live_filled": 5,
        "sim_filled": 4,
        "live_rate": 0.8333,
        "sim_rate": 0.6667,
        "both": 4,
        "live_only": 1,
        "sim_only": 0,
        "neither": 1,
        "live_not_placed": 1,
        "sim_not_placed": 1,
    }
    limit = report["fill_rate"]["limit"]  # 4 5 8 compared, 7 refused live
    assert (limit["compared"], limit["live_rate"], limit["sim_rate"]) == (3, 0.6667, 0.3333)
    assert (limit["both"], limit["live_only"], limit["neither"]) == (1, 1, 1)
    market = report["fill_rate"]["market"]  # 1 2 3 compared, 6 refused by the sim
    assert (market["compared"], market["live_rate"], market["sim_rate"]) == (3, 1.0, 1.0)
    assert market["sim_not_placed"] == 1


def test_slippage_by_side_and_type(report: dict[str, Any]) -> None:
    slip = report["slippage_bps"]
    # [-40, 0, 0, 10, 10]: median 0, mean -20/5, p90 = 5th of 5 (rank ceil(4.5))
    assert slip["all"] == {"n": 5, "median": 0.0, "mean": -4.0, "p90": 10.0}
    assert slip["buy/market"] == {"n": 2, "median": -15.0, "mean": -15.0, "p90": 10.0}
    assert slip["sell/market"] == {"n": 1, "median": 10.0, "mean": 10.0, "p90": 10.0}
    assert slip["buy/limit"] == {"n": 2, "median": 0.0, "mean": 0.0, "p90": 0.0}
    assert slip["sell/limit"] == {"n": 0, "median": None, "mean": None, "p90": None}
    # sim: [-48, 0, 2, 2] -> median 1, mean -44/4
    assert report["sim_slippage_bps"]["all"] == {"n": 4, "median": 1.0, "mean": -11.0, "p90": 2.0}
    # live minus sim: [0, 8, 8, 8]
    gap = report["sim_vs_live_bps"]
    assert gap["all"] == {"n": 4, "median": 8.0, "mean": 6.0, "p90": 8.0}
    assert gap["buy/limit"]["median"] == 0.0


def test_latency(report: dict[str, Any]) -> None:
    lat = report["latency_ms"]
    # acks [2, 40, 50, 60, 150, 200, 250, 350]: median (60+150)/2, mean 1102/8, p95 rank 8
    assert lat["ack"] == {"n": 8, "median": 105.0, "mean": 137.75, "p95": 350.0}
    # first fills [0, 0, 0, 0, 60000, 120000]
    assert lat["first_fill"] == {"n": 6, "median": 0.0, "mean": 30000.0, "p95": 120000.0}
    assert lat["sim_first_fill"] == {"n": 4, "median": 0.0, "mean": 15000.0, "p95": 60000.0}


def test_fees(report: dict[str, Any]) -> None:
    fees = report["fees"]["all"]
    live_fee = D("0.2002") + D("0.3996") + D("0.1992") + D("0.0995") + D("0.1001") + D("0.099")
    live_notional = D("100.10") + 2 * D("99.90") + D("99.60") + D("99.50") + D("50.05") + D("99")
    assert D(fees["live"]["fee"]) == live_fee == D("1.0976")
    assert D(fees["live"]["notional"]) == live_notional == D("648.05")
    assert fees["live"]["bps"] == 16.94  # 1.0976 / 648.05 x 10000 = 16.937...
    sim_fee = D("0.20004") + D("0.39992") + D("0.19904") + D("0.04975")
    sim_notional = D("100.02") + 2 * D("99.98") + D("99.52") + D("0.5") * D("99.50")
    assert D(fees["sim"]["fee"]) == sim_fee == D("0.84875")
    assert D(fees["sim"]["notional"]) == sim_notional == D("449.25")
    assert fees["sim"]["bps"] == 18.89  # 0.84875 / 449.25 x 10000 = 18.892...
    assert D(report["fees"]["limit"]["live"]["fee"]) == D("0.1985")


def test_calibration(report: dict[str, Any]) -> None:
    cal = report["calibration"]
    # From the mid: order 1 (100.10-99.95)/99.95 = 15.0075, order 2 (100.05-99.90)/100.05 =
    # 14.9925, order 3 (99.60-99.95)/99.95 = -35.0175 bps; order 6 had no quote. Median 14.9925.
    assert cal["slippage_bps"]["value"] == 14.99
    assert cal["slippage_bps"]["n"] == 3
    assert cal["slippage_bps"]["adjust_bps"] == 8.0  # market gaps 8, 8, 8
    assert "median" in cal["slippage_bps"]["formula"]
    assert cal["latency_ms"]["value"] == 105
    # Only order 5 can have been capped: live 1.000 / sim 0.500.
    assert cal["participation_cap"] == {
        "factor": 2.0,
        "n": 1,
        "formula": cal["participation_cap"]["formula"],
    }
    # Taker: (0.2002+0.3996+0.1992+0.1001) / (100.10+199.80+99.60+50.05) = 0.8991 / 449.55
    assert cal["taker_fee"]["value"] == "0.002000"
    assert cal["taker_fee"]["n"] == 4
    # Maker (post-only limits that filled): (0.0995+0.099) / (99.50+99.00)
    assert cal["maker_fee"]["value"] == "0.001000"
    assert cal["maker_fee"]["n"] == 2
    notes = " ".join(cal["notes"])
    assert "only 6 orders" in notes
    assert "67% live vs 33% in the sim" in notes


def test_since_filters_by_record_time(tmp_path: Path) -> None:
    write_log(tmp_path, ORDERS)  # records at ts 1000 .. 8000
    report = build_shadow_report(tmp_path, since_ms=7_000)
    assert report["records"] == 2  # orders 7 and 8
    assert report["live_status"] == {"FILLED": 1, "REJECTED": 1}


def test_stat_helpers() -> None:
    assert median([D(3), D(1), D(2)]) == D(2)
    assert median([D(4), D(1), D(2), D(3)]) == D("2.5")
    values = [D(i) for i in range(1, 21)]
    assert percentile(values, 90) == D(18)
    assert percentile(values, 95) == D(19)
    assert percentile([D(7)], 95) == D(7)


def test_text_and_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, ORDERS)
    text = format_shadow_report(build_shadow_report(tmp_path))
    assert "shadow report: 8 orders" in text
    assert "buy/market" in text
    assert "slippage_bps =" in text
    assert cmd_shadow_report(tmp_path, as_json=True) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["records"] == 8
    assert cmd_shadow_report(tmp_path, as_json=False) == 0
    assert "calibration" in capsys.readouterr().out


def test_no_shadow_records_says_shadow_mode_must_run_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(tmp_path / "audit", [])
    assert cmd_shadow_report(tmp_path / "audit", as_json=False) == 1
    err = capsys.readouterr().err
    assert "shadow mode must run first" in err
    assert cmd_shadow_report(tmp_path / "missing", as_json=True) == 1


def test_records_of_another_shape_are_counted_not_fatal(tmp_path: Path) -> None:
    write_log(tmp_path, [*ORDERS[:2], {"client_order_id": "odd"}])
    report = build_shadow_report(tmp_path)
    assert (report["records"], report["skipped"]) == (2, 1)
