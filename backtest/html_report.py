"""The backtest report as one self-contained HTML page.

Everything is inline: CSS, SVG charts drawn here in Python, and a few lines of JS that only sort
the trades table (the page reads fine without it). No fonts, scripts or images are fetched, so
it opens on an offline machine and can be mailed as one file. Tooltips are SVG <title>s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Any

from backtest import stats
from backtest.runner import BacktestResult

PRICE_POINTS = 1_500
EQUITY_POINTS = 2_000
MAX_TABLE_TRADES = 10_000
GREEN, RED, BLUE, GRID, MUTED, INK = (
    "#1a7f37",
    "#cf222e",
    "#0969da",
    "#e6e9ed",
    "#656d76",
    "#1f2328",
)

_H, _D = 3_600_000, 86_400_000
_STEPS = (
    5 * 60_000,
    15 * 60_000,
    30 * 60_000,
    _H,
    3 * _H,
    6 * _H,
    12 * _H,
    _D,
    2 * _D,
    3 * _D,
    7 * _D,
)
_MONTHS = (1, 2, 3, 6, 12)


# -- axes -----------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) from at or below lo to at or above hi,
    so a chart whose domain is [ticks[0], ticks[-1]] shows all of its data."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) * 0.01 or 1.0)
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    n = round((last - first) / step)
    return [round(first + i * step, 12) + 0.0 for i in range(n + 1)]


def _value_label(v: float, ticks: Sequence[float], suffix: str = "") -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    dec = 0  # the fewest decimals that still tell neighbouring ticks apart
    while dec < 8 and abs(round(step, dec) - step) > 1e-9 * max(step, 1e-12):
        dec += 1
    return f"{v:,.{dec}f}{suffix}"


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def time_ticks(lo: int, hi: int, target: int = 6) -> list[tuple[int, str]]:
    """(ms, label) ticks on round times: minutes to days, then whole months."""
    span = max(hi - lo, 1)
    for step in _STEPS:
        if span / step <= target:
            first = -(-lo // step) * step
            ticks = list(range(first, hi + 1, step))
            if step >= _D:
                return [(t, _dt(t).strftime("%d %b")) for t in ticks]
            # Intraday: midnights carry the date, other ticks the time of day.
            day = [(t, _dt(t).strftime("%d %b" if t % _D == 0 else "%H:%M")) for t in ticks]
            if day and day[0][0] % _D:  # say which day the first times belong to
                day[0] = (day[0][0], _dt(day[0][0]).strftime("%d %b %H:%M"))
            return day
    start = _dt(lo)
    for months in _MONTHS:
        if span / (months * 30.44 * _D) <= target:
            break
    y, m = start.year, start.month
    out: list[tuple[int, str]] = []
    while True:
        m += 1
        if m > 12:
            y, m = y + 1, 1
        if (m - 1) % months:
            continue
        t = int(datetime(y, m, 1, tzinfo=UTC).timestamp() * 1000)
        if t > hi:
            return out
        out.append((t, _dt(t).strftime("%b %Y" if months < 12 else "%Y")))


# -- charts ---------------------------------------------------------------------------------


class _Frame:
    """Maps data to pixels inside a chart's plotting area."""

    def __init__(self, w: int, h: int, x: tuple[float, float], y: tuple[float, float]) -> None:
        self.w, self.h = w, h
        self.left, self.right, self.top, self.bottom = 64, 14, 10, 24
        self.x0, self.x1 = x[0], x[1] if x[1] > x[0] else x[0] + 1
        self.y0, self.y1 = y[0], y[1] if y[1] > y[0] else y[0] + 1

    def px(self, x: float) -> float:
        span = self.w - self.left - self.right
        return round(self.left + (x - self.x0) / (self.x1 - self.x0) * span, 1)

    def py(self, y: float) -> float:
        span = self.h - self.top - self.bottom
        return round(self.top + (self.y1 - y) / (self.y1 - self.y0) * span, 1)

    def axes(self, yticks: Sequence[float], suffix: str = "", target_x: int = 9) -> str:
        parts = []
        xl, xr = self.left, self.w - self.right
        for v in yticks:
            y = self.py(v)
            parts.append(f'<line x1="{xl}" y1="{y}" x2="{xr}" y2="{y}" stroke="{GRID}"/>')
            parts.append(
                f'<text x="{xl - 6}" y="{y + 4}" text-anchor="end" class="ax">'
                f"{escape(_value_label(v, yticks, suffix))}</text>"
            )
        base = self.h - self.bottom
        for t, label in time_ticks(int(self.x0), int(self.x1), target_x):
            x = self.px(t)
            parts.append(f'<line x1="{x}" y1="{self.top}" x2="{x}" y2="{base}" stroke="{GRID}"/>')
            half = len(label) * 3.3  # about half the label's width at 11px
            anchor = "end" if x + half > self.w else "start" if x - half < 0 else "middle"
            parts.append(
                f'<text x="{x}" y="{base + 16}" text-anchor="{anchor}" class="ax">{label}</text>'
            )
        parts.append(f'<line x1="{xl}" y1="{base}" x2="{xr}" y2="{base}" stroke="#8c959f"/>')
        return "".join(parts)


def _svg(w: int, h: int, label: str, body: str) -> str:
    return (
        f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="{escape(label)}" '
        f'preserveAspectRatio="xMidYMid meet">{body}</svg>'
    )


def _empty(w: int, h: int, label: str, text: str) -> str:
    body = (
        f'<rect x="0.5" y="0.5" width="{w - 1}" height="{h - 1}" fill="#f6f8fa" stroke="{GRID}"/>'
        f'<text x="{w / 2}" y="{h / 2 + 4}" text-anchor="middle" class="ax">{escape(text)}</text>'
    )
    return _svg(w, h, label, body)


def _path(f: _Frame, xs: Sequence[float], ys: Sequence[float]) -> str:
    return "M" + "L".join(f"{f.px(x)},{f.py(y)}" for x, y in zip(xs, ys, strict=True))


def equity_svg(ts: Sequence[int], eq: Sequence[float], start_cash: float) -> str:
    w, h = 1200, 300
    if not eq:
        return _empty(w, h, "equity curve", "no cycles were run")
    _, peak, trough = stats.max_drawdown(eq)
    idx = stats.downsample_indices(eq, EQUITY_POINTS, keep=(peak, trough))
    xs, ys = [ts[i] for i in idx], [eq[i] for i in idx]
    yt = nice_ticks(min(min(ys), start_cash), max(max(ys), start_cash), 6)
    f = _Frame(w, h, (xs[0], xs[-1]), (yt[0], yt[-1]))
    line = _path(f, xs, ys)
    base = f.py(f.y0)
    area = f"{line}L{f.px(xs[-1])},{base}L{f.px(xs[0])},{base}Z"
    sc = f.py(start_cash)
    body = [
        f.axes(yt),
        f'<path d="{area}" fill="{BLUE}" fill-opacity="0.08"/>',
        f'<line x1="{f.left}" y1="{sc}" x2="{w - f.right}" y2="{sc}" stroke="{MUTED}" '
        f'stroke-dasharray="4 4"><title>starting cash {start_cash:,.2f}</title></line>',
        f'<path d="{line}" fill="none" stroke="{BLUE}" stroke-width="1.6"/>',
    ]
    if trough > peak:
        for i, name, col in ((peak, "drawdown peak", INK), (trough, "drawdown trough", RED)):
            body.append(
                f'<circle cx="{f.px(ts[i])}" cy="{f.py(eq[i])}" r="4" fill="#fff" '
                f'stroke="{col}" stroke-width="2"><title>{name}: {eq[i]:,.2f} at '
                f"{_dt(ts[i]):%Y-%m-%d %H:%M} UTC</title></circle>"
            )
    return _svg(w, h, "equity curve", "".join(body))


def drawdown_svg(ts: Sequence[int], eq: Sequence[float]) -> str:
    w, h = 1200, 150
    if not eq:
        return _empty(w, h, "drawdown", "no cycles were run")
    dd = stats.drawdown_pct_series(eq)
    worst = min(dd)
    idx = stats.downsample_indices(dd, EQUITY_POINTS, keep=(dd.index(worst),))
    xs, ys = [ts[i] for i in idx], [dd[i] for i in idx]
    yt = nice_ticks(min(worst, -0.1), 0.0, 4)
    f = _Frame(w, h, (xs[0], xs[-1]), (yt[0], 0.0))
    line = _path(f, xs, ys)
    zero = f.py(0.0)
    area = f"{line}L{f.px(xs[-1])},{zero}L{f.px(xs[0])},{zero}Z"
    body = f.axes(yt, " %") + (
        f'<path d="{area}" fill="{RED}" fill-opacity="0.25" stroke="{RED}" stroke-width="1"/>'
    )
    return _svg(w, h, "drawdown from peak", body)


def _tri(x: float, y: float, up: bool, color: str, tip: str) -> str:
    # The apex sits on the price; the body hangs below (entries) or above (exits).
    d = 9 if up else -9
    return (
        f'<path d="M{x},{y}L{x - 5},{round(y + d, 1)}L{x + 5},{round(y + d, 1)}Z" fill="{color}" '
        f'stroke="#fff" stroke-width="0.8"><title>{escape(tip)}</title></path>'
    )


def price_svg(
    result: BacktestResult,
    symbol: str,
    trades: Sequence[Mapping[str, Any]],
    still_open: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Close prices with a green triangle at each entry and a red one at each exit;
    `still_open` are report open_positions (entry markers only)."""
    w, h = 620, 230
    series = result.inputs.series.get(symbol)
    tf = result.inputs.timeframe_ms
    if series is None or not len(series):
        return _empty(w, h, f"{symbol} price", "no candles")
    shown = series.slice(result.inputs.start_ms - tf, result.inputs.end_ms)
    if not len(shown):
        shown = series
    close = shown.close.tolist()
    idx = stats.downsample_indices(close, PRICE_POINTS)
    xs = [int(shown.ts[i]) + tf for i in idx]  # a close is known when its candle closes
    ys = [close[i] for i in idx]
    marks = [
        (t[f"{side}_ts"], float(t[f"{side}_price"]), side, t)
        for t in trades
        for side in ("entry", "exit")
    ] + [(p["entry_ts"], float(p["avg_entry_price"]), "open", p) for p in still_open]
    lo = min([*ys, *(m[1] for m in marks)])
    hi = max([*ys, *(m[1] for m in marks)])
    yt = nice_ticks(lo, hi, 4)
    f = _Frame(
        w,
        h,
        (min(xs[0], *(m[0] for m in marks)) if marks else xs[0], xs[-1]),
        (yt[0], yt[-1]),
    )
    body = [
        f.axes(yt, target_x=5),
        f'<path d="{_path(f, xs, ys)}" fill="none" stroke="#57606a" stroke-width="1.1"/>',
    ]
    for ts, px, side, t in marks:
        up = side != "exit"
        tip = (
            f"{'BUY' if up else 'SELL'} {t['quantity']} {symbol} @ {px:g} "
            f"{_dt(ts):%Y-%m-%d %H:%M} UTC"
            + (" (still open at the end)" if side == "open" else "")
            + (f" ({t['exit_reason']}, PnL {t['pnl']}, {t['pnl_pct']:+.2f} %)" if not up else "")
        )
        body.append(_tri(f.px(ts), f.py(px), up, GREEN if up else RED, tip))
    return _svg(w, h, f"{symbol} close price with trades", "".join(body))


def bars_svg(counts: Mapping[str, int], label: str) -> str:
    w = 560
    if not counts:
        return _empty(w, 60, label, "none")
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    row, lab, top = 24, 210, 6
    h = top * 2 + row * len(items)
    biggest = max(v for _, v in items) or 1
    span = w - lab - 70
    total = sum(v for _, v in items) or 1
    body = []
    for i, (k, v) in enumerate(items):
        y = top + i * row
        bw = max(1.0, round(v / biggest * span, 1))
        body.append(
            f'<text x="{lab - 8}" y="{y + 16}" text-anchor="end" class="lb">{escape(k)}</text>'
            f'<rect x="{lab}" y="{y + 4}" width="{bw}" height="{row - 8}" rx="2" fill="{BLUE}" '
            f'fill-opacity="0.75"><title>{escape(k)}: {v:,}</title></rect>'
            f'<text x="{lab + bw + 6}" y="{y + 16}" class="lb">{v:,} '
            f'<tspan fill="{MUTED}">({v / total * 100:.0f}%)</tspan></text>'
        )
    return _svg(w, h, label, "".join(body))


# -- page -----------------------------------------------------------------------------------


def _money(v: Any, dec: int = 2) -> str:
    try:
        return f"{Decimal(str(v)):,.{dec}f}"
    except (InvalidOperation, ValueError):
        return escape(str(v))


def _sign_class(v: Any) -> str:
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        return ""
    return "pos" if d > 0 else "neg" if d < 0 else ""


def _cards(s: Mapping[str, Any], quote: str) -> str:
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{v:,.2f} %"

    def plain(v: Any) -> str:
        return "n/a" if v is None else f"{v:,.2f}"

    items = [
        ("Total PnL", f"{_money(s['total_pnl'])} {quote}", _sign_class(s["total_pnl"])),
        ("Total PnL %", pct(s["total_pnl_pct"]), _sign_class(s["total_pnl_pct"])),
        ("Max drawdown", pct(s["max_drawdown_pct"]), "neg" if s["max_drawdown_pct"] else ""),
        ("Trades", f"{s['trades']:,}", ""),
        ("Win rate", pct(s["win_rate_pct"]), ""),
        ("Profit factor", plain(s["profit_factor"]), ""),
        ("Sharpe", plain(s["sharpe"]), ""),
        ("Sortino", plain(s["sortino"]), ""),
        ("Exposure time", pct(s["exposure_time_pct"]), ""),
        ("Fees paid", f"{_money(s['fees_paid'])} {quote}", ""),
        ("Final equity", f"{_money(s['final_equity'])} {quote}", ""),
        ("Avg trade", pct(s["avg_trade_pct"]), _sign_class(s["avg_trade_pct"])),
        ("Best / worst trade", f"{pct(s['best_trade_pct'])} / {pct(s['worst_trade_pct'])}", ""),
        ("Avg holding", f"{(s['avg_holding_minutes'] or 0) / 60:,.1f} h", ""),
    ]
    return "".join(
        f'<div class="card"><div class="k">{escape(k)}</div>'
        f'<div class="v {c}">{escape(v)}</div></div>'
        for k, v, c in items
    )


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_text(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _trades_table(trades: Sequence[Mapping[str, Any]]) -> str:
    cols = [
        ("Symbol", "txt"),
        ("Strategy", "txt"),
        ("Entry (UTC)", "txt"),
        ("Exit (UTC)", "txt"),
        ("Qty", "num"),
        ("Entry px", "num"),
        ("Exit px", "num"),
        ("Fees", "num"),
        ("PnL", "num"),
        ("PnL %", "num"),
        ("Hold h", "num"),
        ("Exit reason", "txt"),
    ]
    head = "".join(f'<th data-type="{t}" title="click to sort">{escape(n)}</th>' for n, t in cols)
    rows = []
    for t in trades[:MAX_TABLE_TRADES]:
        hold = (t["exit_ts"] - t["entry_ts"]) / _H
        cls = _sign_class(t["pnl"])
        cells = [
            ("", escape(t["symbol"])),
            ("", escape(t["strategy"])),
            (f' data-v="{t["entry_ts"]}"', f"{_dt(t['entry_ts']):%Y-%m-%d %H:%M}"),
            (f' data-v="{t["exit_ts"]}"', f"{_dt(t['exit_ts']):%Y-%m-%d %H:%M}"),
            ("", escape(t["quantity"])),
            ("", escape(t["entry_price"])),
            ("", escape(t["exit_price"])),
            (f' data-v="{t["fees"]}"', _money(t["fees"], 4)),
            (f' data-v="{t["pnl"]}" class="{cls}"', _money(t["pnl"])),
            (f' data-v="{t["pnl_pct"]}" class="{cls}"', f"{t['pnl_pct']:+.2f}"),
            (f' data-v="{hold:.4f}"', f"{hold:,.1f}"),
            ("", escape(t["exit_reason"])),
        ]
        rows.append('<tr class="trade">' + "".join(f"<td{a}>{c}</td>" for a, c in cells) + "</tr>")
    more = len(trades) - MAX_TABLE_TRADES
    note = f'<p class="muted">{more:,} more trades are in the JSON report.</p>' if more > 0 else ""
    if not trades:
        return '<p class="muted">No round trips were completed.</p>'
    return (
        f'<div class="scroll"><table class="sortable trades"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def _pair_table(per_pair: Mapping[str, Mapping[str, Any]], quote: str) -> str:
    rows = "".join(
        f"<tr><td>{escape(sym)}</td><td>{p['trades']:,}</td><td>{p['win_rate_pct']:.1f}</td>"
        f'<td class="{_sign_class(p["pnl"])}">{_money(p["pnl"])}</td>'
        f"<td>{_money(p['fees'])}</td></tr>"
        for sym, p in per_pair.items()
    )
    return (
        '<table class="grid-t"><thead><tr><th>Pair</th><th>Trades</th><th>Win %</th>'
        f"<th>PnL ({escape(quote)})</th><th>Fees ({escape(quote)})</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


_CSS = """
*{box-sizing:border-box}body{margin:0;background:#f6f8fa;color:#1f2328;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:24px;margin:0 0 2px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:#656d76;margin-bottom:14px}.muted{color:#656d76}
section,.panel{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 16px}
section{margin-top:18px}section h2{margin-top:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;
margin-top:16px}.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;
padding:10px 12px}.card .k{color:#656d76;font-size:12px;text-transform:uppercase;
letter-spacing:.03em}.card .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
.pos{color:#1a7f37}.neg{color:#cf222e}
svg{width:100%;height:auto;display:block}svg .ax{font-size:11px;fill:#656d76}
svg .lb{font-size:12px;fill:#1f2328}
.multi{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
.multi figure{margin:0}.multi figcaption{font-weight:600;margin-bottom:4px}
.two{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:18px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
.kv th{text-align:left;color:#656d76;font-weight:500;padding:2px 14px 2px 0;vertical-align:top}
.kv td{padding:2px 0;word-break:break-word}
.grid-t,.trades{width:100%}.grid-t th,.grid-t td,.trades th,.trades td{padding:5px 8px;
border-bottom:1px solid #e6e9ed;text-align:right;white-space:nowrap}
.grid-t th:first-child,.grid-t td:first-child,.trades td:nth-child(-n+4),
.trades th:nth-child(-n+4),.trades td:last-child,.trades th:last-child{text-align:left}
thead th{background:#f6f8fa;position:sticky;top:0}
.sortable th{cursor:pointer;user-select:none}
.sortable th[data-dir=asc]::after{content:" \\25B2"}
.sortable th[data-dir=desc]::after{content:" \\25BC"}
.trades tbody tr:hover{background:#f3f7ff}
.scroll{max-height:640px;overflow:auto}
.legend span{margin-right:16px}.meta{display:grid;grid-template-columns:1fr 1fr;gap:18px}
details summary{cursor:pointer;font-weight:600}pre{white-space:pre-wrap;margin:6px 0}
"""

_JS = """
document.querySelectorAll("table.sortable th").forEach(function(th,i){
 th.addEventListener("click",function(){
  var t=th.closest("table"),b=t.tBodies[0],asc=th.dataset.dir!=="asc";
  var num=th.dataset.type==="num";
  t.querySelectorAll("th").forEach(function(h){delete h.dataset.dir});
  th.dataset.dir=asc?"asc":"desc";
  var key=function(r){var c=r.cells[i],v=c.dataset.v!==undefined?c.dataset.v:c.textContent;
   return num?parseFloat(v):v};
  Array.from(b.rows).sort(function(x,y){var a=key(x),c=key(y);return (a<c?-1:a>c?1:0)*(asc?1:-1)})
   .forEach(function(r){b.appendChild(r)});});});
"""


def render_html(report: Mapping[str, Any], result: BacktestResult) -> str:
    """The whole page as one string: write it with UTF-8."""
    m, s = report["metadata"], report["summary"]
    quote = m.get("quote_currency", "")
    rng = m["data_range"]
    a, b = (rng[k]["iso"][:16].replace("T", " ") for k in ("from", "to"))
    span = f"{a} to {b} UTC"
    by_pair: dict[str, list[Mapping[str, Any]]] = {}
    for t in report["trades"]:
        by_pair.setdefault(t["symbol"], []).append(t)
    held: dict[str, list[Mapping[str, Any]]] = {}
    for p in report.get("open_positions", []):
        held.setdefault(p["symbol"], []).append(p)
    multiples = "".join(
        f'<figure><figcaption>{escape(sym)} <span class="muted">'
        f"{len(by_pair.get(sym, []))} trades{', position open' if sym in held else ''}"
        f"</span></figcaption>"
        f"{price_svg(result, sym, by_pair.get(sym, []), held.get(sym, []))}</figure>"
        for sym in m["pairs"]
    )
    open_note = "".join(
        f'<p class="muted">Still open at the end (valued at the last close in final equity): '
        f"{escape(p['symbol'])} {escape(p['quantity'])} @ {escape(p['avg_entry_price'])} "
        f"since {escape(p['entry_time'][:16])}Z</p>"
        for p in report.get("open_positions", [])
    )
    run = m.get("run") or {}
    meta_rows = [
        ("Version", m["version"]),
        ("Config hash", m["config_hash"]),
        ("Seed", m["seed"]),
        ("Timeframe", m["timeframe"]),
        ("Pairs", ", ".join(m["pairs"])),
        ("Range", span),
        ("Cycles", f"{m['cycles']:,}"),
        ("Candles", f"{m['candles']:,}"),
        ("Starting cash", f"{_money(m['starting_cash'])} {quote}"),
        ("Strategies", ", ".join(m["strategies"]) or "none"),
    ]
    if run:
        wall = run.get("wall_s") or 0.0
        meta_rows.append(("Generated", f"{run.get('generated_at')} in {wall:,.2f} s"))
    fill = [(k, v) for k, v in sorted(m["fill_model"].items())]
    strat = "".join(
        f"<pre><b>{escape(n)}</b> {escape(_text(p))}</pre>" for n, p in m["strategies"].items()
    )
    quality = "".join(f"<pre>{escape(v)}</pre>" for v in m["data_quality"].values())
    start_cash = float(Decimal(m["starting_cash"]))
    title = f"vigil backtest: {', '.join(m['pairs'])} {m['timeframe']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>Backtest report</h1>
<div class="sub">{escape(", ".join(m["pairs"]))} &middot; {escape(m["timeframe"])} &middot;
{escape(span)} &middot; seed {m["seed"]} &middot; config {escape(m["config_hash"])}</div>
<div class="panel meta"><div>{_kv_table(meta_rows[:6])}</div>
<div>{_kv_table(meta_rows[6:])}</div></div>
<div class="cards">{_cards(s, quote)}</div>
<section><h2>Equity ({escape(quote)})</h2>
<div class="legend muted"><span style="color:{BLUE}">&#9644; equity</span>
<span>&#8943; starting cash</span><span>&#9675; max drawdown peak and trough</span></div>
{equity_svg(result.equity_ts, result.equity, start_cash)}
<h2 style="margin-top:14px">Drawdown from peak</h2>
{drawdown_svg(result.equity_ts, result.equity)}</section>
<section><h2>Trades on price</h2>
<div class="legend muted"><span style="color:{GREEN}">&#9650; entry</span>
<span style="color:{RED}">&#9660; exit</span><span>hover a marker for details</span></div>
<div class="multi">{multiples}</div></section>
<section class="two"><div><h2>Why cycles ended without a trade</h2>
{bars_svg(report["no_trade_reasons"], "no-trade reasons")}</div>
<div><h2>Risk rejections</h2>{bars_svg(report["rejections"], "rejection reasons")}</div></section>
<section><h2>Per pair</h2>{_pair_table(report["per_pair"], quote)}</section>
<section><h2>Trades ({len(report["trades"]):,})</h2>
{_trades_table(report["trades"])}{open_note}</section>
<section><details><summary>Fill model, strategies and data quality</summary>
<div class="two"><div><h2>Fill model</h2>{_kv_table(fill)}</div>
<div><h2>Strategies</h2>{strat or '<p class="muted">none enabled</p>'}
<h2>Data quality</h2>{quality}</div></div></details></section>
</main><script>{_JS}</script></body></html>
"""
