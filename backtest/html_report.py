"""The backtest report as one self-contained HTML page.

Everything is inline: CSS, SVG charts drawn here in Python, and a few lines of JS that only sort
the trades table (the page reads fine without it). No fonts, scripts or images are fetched, so
it opens on an offline machine and can be mailed as one file. Tooltips are SVG <title>s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Any

from backtest.html_charts import (  # nice_ticks, time_ticks: re-exported for callers
    BLUE,
    GREEN,
    HOUR_MS,
    MAX_TABLE_TRADES,
    RED,
    bars_svg,
    drawdown_svg,
    dt,
    equity_svg,
    nice_ticks,
    price_svg,
    time_ticks,
)
from backtest.runner import BacktestResult

__all__ = ["nice_ticks", "render_html", "time_ticks"]


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
        hold = (t["exit_ts"] - t["entry_ts"]) / HOUR_MS
        cls = _sign_class(t["pnl"])
        cells = [
            ("", escape(t["symbol"])),
            ("", escape(t["strategy"])),
            (f' data-v="{t["entry_ts"]}"', f"{dt(t['entry_ts']):%Y-%m-%d %H:%M}"),
            (f' data-v="{t["exit_ts"]}"', f"{dt(t['exit_ts']):%Y-%m-%d %H:%M}"),
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
