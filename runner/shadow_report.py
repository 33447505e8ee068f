"""`vigil shadow report`: what shadow mode measured, and what it says about the sim's settings.

Reads the `shadow_order` records (infra/exchange/shadow.py) from the audit log and summarises
fill rates live vs sim, slippage, latency and fees, then suggests SimConfig values with the
formula behind each. docs/shadow.md explains the numbers and how to use them.

Statistics are exact over Decimals and rounded only for display: the median is the middle value
(the mean of the two middle ones for an even count), p90/p95 are nearest-rank (the smallest
value with at least that share of the sample at or below it).
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from infra.audit_format import format_ts
from infra.audit_verify import iter_records
from runner import exit_codes

KIND = "shadow_order"
BPS = Decimal(10_000)
LIVE_NOT_PLACED = frozenset({"REJECTED", "FAILED"})
SIM_NOT_PLACED = frozenset({"REFUSED", "NOT_PLACED"})
FEW_ORDERS = 30  # below this, suggestions are indicative only
TYPES = ("all", "limit", "market")
GROUPS = ("buy/market", "sell/market", "buy/limit", "sell/limit")

SLIPPAGE_FORMULA = (
    "median over live market-order fills of (avg_price - mid) / mid x 10000 (sells: mid - "
    "avg_price), mid = (bid + ask) / 2 of the quote seen at submit; floored at 0. The sim "
    "prices market fills from the candle open, so this includes the half spread"
)
ADJUST_FORMULA = (
    "current slippage_bps + median over market orders of sim_vs_live_bps (the live slippage "
    "minus the sim's, from the same intended price); use this while keeping slippage_vol_mult"
)
LATENCY_FORMULA = (
    "median submit-to-ack latency (a round trip: an upper bound of the time until the venue "
    "has the order); it only matters when it carries an order past a candle boundary"
)
PARTICIPATION_FORMULA = (
    "current participation_cap x factor (at most 1), factor = sum(live filled) / sum(sim "
    "filled) over orders both filled in part, where at least one side stopped short of the "
    "full quantity (where the cap can have bound)"
)
FEE_FORMULA = "sum(live fee) / sum(live filled x avg_price)"


@dataclass(frozen=True, slots=True)
class _Row:
    ts: int
    side: str
    type: str
    post_only: bool
    submitted_ms: int
    intended_qty: Decimal
    bid: Decimal | None
    ask: Decimal | None
    live_status: str
    live_filled: Decimal
    live_avg: Decimal | None
    live_fee: Decimal
    ack_ms: int | None
    first_fill_ms: int | None
    sim_status: str
    sim_reason: str
    sim_filled: Decimal
    sim_avg: Decimal | None
    sim_fee: Decimal
    sim_first_fill_ms: int | None
    slippage: Decimal | None
    sim_slippage: Decimal | None
    gap: Decimal | None

    @property
    def compared(self) -> bool:
        """Both the venue and the sim took the order, so their fills can be compared."""
        return self.live_status not in LIVE_NOT_PLACED and self.sim_status not in SIM_NOT_PLACED


def _dec(x: Any) -> Decimal | None:
    return None if x is None else Decimal(str(x))


def _int(x: Any) -> int | None:
    return None if x is None else int(x)


def _row(ts: int, d: Mapping[str, Any]) -> _Row:
    live, sim, quote = d["live"], d["sim"], d.get("quote") or {}
    return _Row(
        ts=ts,
        side=str(d["side"]),
        type=str(d["type"]),
        post_only=bool(d.get("post_only", False)),
        submitted_ms=int(d["submitted_ms"]),
        intended_qty=Decimal(d["intended_qty"]),
        bid=_dec(quote.get("bid")),
        ask=_dec(quote.get("ask")),
        live_status=str(live["status"]),
        live_filled=Decimal(live["filled"]),
        live_avg=_dec(live["avg_price"]),
        live_fee=Decimal(live["fee"]),
        ack_ms=_int(live["ack_latency_ms"]),
        first_fill_ms=_int(live["first_fill_latency_ms"]),
        sim_status=str(sim["status"]),
        sim_reason=str(sim.get("reason", "")),
        sim_filled=Decimal(sim["filled"]),
        sim_avg=_dec(sim["avg_price"]),
        sim_fee=Decimal(sim["fee"]),
        sim_first_fill_ms=_int(sim.get("first_fill_latency_ms")),
        slippage=_dec(d["slippage_bps"]),
        sim_slippage=_dec(d["sim_slippage_bps"]),
        gap=_dec(d["sim_vs_live_bps"]),
    )


# ---- statistics ---------------------------------------------------------------------------


def median(values: Sequence[Decimal]) -> Decimal:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def percentile(values: Sequence[Decimal], pct: int) -> Decimal:
    """Nearest rank: the value at position ceil(pct/100 x n) of the sorted sample."""
    s = sorted(values)
    rank = (Decimal(pct) / 100 * len(s)).to_integral_value(ROUND_CEILING)
    return s[max(int(rank), 1) - 1]


def _num(x: Decimal | None, places: str = "0.01") -> float | None:
    return None if x is None else float(x.quantize(Decimal(places), ROUND_HALF_UP))


def _stats(values: Iterable[Decimal], *, pcts: tuple[int, ...] = (90,)) -> dict[str, Any]:
    v = list(values)
    out: dict[str, Any] = {"n": len(v), "median": None, "mean": None}
    out.update({f"p{p}": None for p in pcts})
    if v:
        out["median"] = _num(median(v))
        out["mean"] = _num(sum(v, Decimal(0)) / len(v))
        out.update({f"p{p}": _num(percentile(v, p)) for p in pcts})
    return out


def _rate(k: int, n: int) -> float | None:
    return None if n == 0 else _num(Decimal(k) / n, "0.0001")


# ---- the report ----------------------------------------------------------------------------


def build_shadow_report(audit_dir: Path, *, since_ms: int | None = None) -> dict[str, Any]:
    """Summary of the `shadow_order` records written at or after `since_ms` (record time)."""
    rows: list[_Row] = []
    skipped = 0
    for rec in iter_records(Path(audit_dir)):
        if rec["kind"] != KIND or (since_ms is not None and rec["ts"] < since_ms):
            continue
        try:
            rows.append(_row(rec["ts"], rec["data"]))
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError):
            skipped += 1  # a record of another shape (an older version); counted, not fatal
    by_type = {t: [r for r in rows if t == "all" or r.type == t] for t in TYPES}
    return {
        "audit_dir": str(audit_dir),
        "since_ms": since_ms,
        "records": len(rows),
        "skipped": skipped,
        "first_ms": min((r.submitted_ms for r in rows), default=None),
        "last_ms": max((r.ts for r in rows), default=None),
        "live_status": dict(sorted(Counter(r.live_status for r in rows).items())),
        "sim_status": dict(sorted(Counter(r.sim_status for r in rows).items())),
        "sim_refusals": dict(
            sorted(Counter(_refusal(r) for r in rows if r.sim_status in SIM_NOT_PLACED).items())
        ),
        "fill_rate": {t: _fill_rate(rs) for t, rs in by_type.items()},
        "slippage_bps": _grouped(rows, lambda r: r.slippage),
        "sim_slippage_bps": _grouped(rows, lambda r: r.sim_slippage),
        "sim_vs_live_bps": _grouped(rows, lambda r: r.gap),
        "latency_ms": {
            "ack": _stats((Decimal(r.ack_ms) for r in rows if r.ack_ms is not None), pcts=(95,)),
            "first_fill": _stats(
                (Decimal(r.first_fill_ms) for r in rows if r.first_fill_ms is not None),
                pcts=(95,),
            ),
            "sim_first_fill": _stats(
                (Decimal(r.sim_first_fill_ms) for r in rows if r.sim_first_fill_ms is not None),
                pcts=(95,),
            ),
        },
        "fees": {t: _fees(rs) for t, rs in by_type.items()},
        "calibration": _calibration(rows, by_type),
    }


def _refusal(r: _Row) -> str:
    """The error class of a sim refusal (its message holds prices: not a bucket)."""
    if r.sim_status != "REFUSED":
        return r.sim_status
    return r.sim_reason.split(":", 1)[0] or r.sim_status


def _fill_rate(rows: list[_Row]) -> dict[str, Any]:
    pairs = [r for r in rows if r.compared]
    live = [r.live_filled > 0 for r in pairs]
    sim = [r.sim_filled > 0 for r in pairs]
    both = sum(1 for a, b in zip(live, sim, strict=True) if a and b)
    return {
        "compared": len(pairs),
        "live_filled": sum(live),
        "sim_filled": sum(sim),
        "live_rate": _rate(sum(live), len(pairs)),
        "sim_rate": _rate(sum(sim), len(pairs)),
        "both": both,
        "live_only": sum(live) - both,
        "sim_only": sum(sim) - both,
        "neither": len(pairs) - sum(live) - sum(sim) + both,
        "live_not_placed": sum(1 for r in rows if r.live_status in LIVE_NOT_PLACED),
        "sim_not_placed": sum(1 for r in rows if r.sim_status in SIM_NOT_PLACED),
    }


def _grouped(rows: list[_Row], value: Any) -> dict[str, Any]:
    out = {"all": _stats(v for r in rows if (v := value(r)) is not None)}
    for g in GROUPS:
        side, typ = g.split("/")
        vals = [v for r in rows if r.side == side and r.type == typ and (v := value(r)) is not None]
        out[g] = _stats(vals)
    return out


def _fees(rows: list[_Row]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fee, notional in (
        ("live", _sum(r.live_fee for r in rows), _notional(rows, live=True)),
        ("sim", _sum(r.sim_fee for r in rows if r.compared), _notional(rows, live=False)),
    ):
        out[name] = {
            "fee": str(fee),
            "notional": str(notional),
            "bps": _num(fee / notional * BPS) if notional else None,
        }
    return out


def _sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))


def _notional(rows: Iterable[_Row], *, live: bool) -> Decimal:
    if live:
        return _sum(r.live_filled * r.live_avg for r in rows if r.live_avg is not None)
    return _sum(r.sim_filled * r.sim_avg for r in rows if r.sim_avg is not None and r.compared)


def _from_mid(r: _Row) -> Decimal | None:
    if r.live_avg is None or r.bid is None or r.ask is None:
        return None
    mid = (r.bid + r.ask) / 2
    diff = r.live_avg - mid if r.side == "buy" else mid - r.live_avg
    return diff / mid * BPS


def _fee_rate(rows: list[_Row]) -> dict[str, Any]:
    notional = _notional(rows, live=True)
    fee = _sum(r.live_fee for r in rows if r.live_avg is not None)
    rate = None if not notional else str((fee / notional).quantize(Decimal("0.000001")))
    n = sum(1 for r in rows if r.live_avg is not None)
    return {"value": rate, "n": n, "formula": FEE_FORMULA}


def _calibration(rows: list[_Row], by_type: Mapping[str, list[_Row]]) -> dict[str, Any]:
    market = by_type["market"]
    mids = [x for r in market if (x := _from_mid(r)) is not None]
    gaps = [r.gap for r in market if r.gap is not None]
    acks = [Decimal(r.ack_ms) for r in rows if r.ack_ms is not None]
    capped = [
        r
        for r in rows
        if r.compared
        and r.live_filled > 0
        and r.sim_filled > 0
        and min(r.live_filled, r.sim_filled) < r.intended_qty
    ]
    sim_qty = _sum(r.sim_filled for r in capped)
    factor = _sum(r.live_filled for r in capped) / sim_qty if sim_qty else None
    notes: list[str] = []
    compared = sum(1 for r in rows if r.compared)
    if compared < FEW_ORDERS:
        notes.append(
            f"only {compared} orders were placed on both sides; treat these as indicative and "
            f"let shadow mode run until there are at least {FEW_ORDERS}"
        )
    limit_rate = _fill_rate(by_type["limit"])
    lr, sr = limit_rate["live_rate"], limit_rate["sim_rate"]
    if lr is not None and sr is not None and lr != sr:
        notes.append(
            f"limit orders filled {lr:.0%} live vs {sr:.0%} in the sim; no setting changes "
            "the sim's trade-through rule (docs/sim_exchange.md, Known limits), so weigh "
            "backtested limit-order strategies by this difference"
        )
    return {
        "slippage_bps": {
            "value": _num(max(median(mids), Decimal(0))) if mids else None,
            "n": len(mids),
            "formula": SLIPPAGE_FORMULA,
            "adjust_bps": _num(median(gaps)) if gaps else None,
            "adjust_n": len(gaps),
            "adjust_formula": ADJUST_FORMULA,
        },
        "latency_ms": {
            "value": int(median(acks).to_integral_value(ROUND_HALF_UP)) if acks else None,
            "n": len(acks),
            "formula": LATENCY_FORMULA,
        },
        "participation_cap": {
            "factor": _num(factor, "0.0001"),
            "n": len(capped),
            "formula": PARTICIPATION_FORMULA,
        },
        "taker_fee": _fee_rate(market),
        "maker_fee": _fee_rate([r for r in by_type["limit"] if r.post_only]),
        "notes": notes,
    }


# ---- output --------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def _stat_line(label: str, s: Mapping[str, Any], keys: Sequence[str]) -> str:
    cells = "".join(f"{_fmt(s.get(k)):>10}" for k in keys)
    return f"  {label:<14}{s['n']:>6}{cells}"


def format_shadow_report(report: Mapping[str, Any]) -> str:
    """A readable summary for the terminal."""
    lines = [f"shadow report: {report['records']} orders from {report['audit_dir']}"]
    if report["first_ms"] is not None:
        lines.append(f"  {format_ts(report['first_ms'])} .. {format_ts(report['last_ms'])}")
    if report["skipped"]:
        lines.append(f"  {report['skipped']} records of another shape skipped")
    lines.append(f"  live status: {_pairs(report['live_status'])}")
    lines.append(f"  sim status:  {_pairs(report['sim_status'])}")
    if report["sim_refusals"]:
        lines.append(f"  sim refusals: {_pairs(report['sim_refusals'])}")
    lines += ["", "fill rate (orders both sides took)", _hdr("type", ("live", "sim", "agree"))]
    for t, fr in report["fill_rate"].items():
        agree = fr["both"] + fr["neither"]
        lines.append(
            f"  {t:<14}{fr['compared']:>6}{_fmt(fr['live_rate']):>10}{_fmt(fr['sim_rate']):>10}"
            f"{agree:>10}"
        )
    for key, title in (
        ("slippage_bps", "live slippage vs intended price (bps, + = worse for us)"),
        ("sim_slippage_bps", "sim slippage vs intended price (bps)"),
        ("sim_vs_live_bps", "live minus sim (bps, + = the sim is optimistic)"),
    ):
        lines += ["", title, _hdr("group", ("median", "mean", "p90"))]
        for g, s in report[key].items():
            lines.append(_stat_line(g, s, ("median", "mean", "p90")))
    lines += ["", "latency (ms)", _hdr("what", ("median", "p95"))]
    for k, s in report["latency_ms"].items():
        lines.append(_stat_line(k, s, ("median", "p95")))
    lines += [
        "",
        "fees (quote currency)",
        f"  {'type':<14}{'live':>14}{'bps':>8}{'sim':>14}{'bps':>8}",
    ]
    for t, f in report["fees"].items():
        lv, sm = f["live"], f["sim"]
        lines.append(
            f"  {t:<14}{lv['fee']:>14}{_fmt(lv['bps']):>8}{sm['fee']:>14}{_fmt(sm['bps']):>8}"
        )
    cal = report["calibration"]
    sl, lat, pc = cal["slippage_bps"], cal["latency_ms"], cal["participation_cap"]
    lines += ["", "calibration (the sim: section of policy.yaml; docs/shadow.md)"]
    for label, value, n, formula in (
        ("slippage_bps =", sl["value"], sl["n"], sl["formula"]),
        ("or adjust by", sl["adjust_bps"], sl["adjust_n"], sl["adjust_formula"]),
        ("latency_ms =", lat["value"], lat["n"], lat["formula"]),
        ("participation_cap x", pc["factor"], pc["n"], pc["formula"]),
        ("taker_fee =", cal["taker_fee"]["value"], cal["taker_fee"]["n"], FEE_FORMULA),
        ("maker_fee =", cal["maker_fee"]["value"], cal["maker_fee"]["n"], FEE_FORMULA),
    ):
        lines.append(f"  {label:<20}{_fmt(value):>10}   n={n}")
        lines += [f"      {part}" for part in textwrap.wrap(formula, 90)]
    for note in cal["notes"]:
        lines += textwrap.wrap(note, 96, initial_indent="  note: ", subsequent_indent="        ")
    return "\n".join(lines)


def _hdr(first: str, cols: Sequence[str]) -> str:
    return f"  {first:<14}{'n':>6}" + "".join(f"{c:>10}" for c in cols)


def _pairs(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def cmd_shadow_report(audit_dir: Path, as_json: bool, *, since_ms: int | None = None) -> int:
    report = build_shadow_report(audit_dir, since_ms=since_ms)
    if report["records"] == 0:
        print(
            f"no shadow_order records in {audit_dir}: shadow mode must run first (LIVE mode "
            "with exchange.shadow: true); see docs/shadow.md",
            file=sys.stderr,
        )
        return exit_codes.FAILURE
    print(json.dumps(report, indent=2) if as_json else format_shadow_report(report))
    return exit_codes.OK
