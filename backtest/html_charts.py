"""SVG charts for the HTML report, drawn in Python: axes with readable ticks, equity,
drawdown, price with trade markers, horizontal bars. Pure string building, no dependencies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from backtest import stats

if TYPE_CHECKING:
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

HOUR_MS, _D = 3_600_000, 86_400_000
_STEPS = (
    5 * 60_000,
    15 * 60_000,
    30 * 60_000,
    HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    12 * HOUR_MS,
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


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def time_ticks(lo: int, hi: int, target: int = 6) -> list[tuple[int, str]]:
    """(ms, label) ticks on round times: minutes to days, then whole months."""
    span = max(hi - lo, 1)
    for step in _STEPS:
        if span / step <= target:
            first = -(-lo // step) * step
            ticks = list(range(first, hi + 1, step))
            if step >= _D:
                return [(t, dt(t).strftime("%d %b")) for t in ticks]
            # Intraday: midnights carry the date, other ticks the time of day.
            day = [(t, dt(t).strftime("%d %b" if t % _D == 0 else "%H:%M")) for t in ticks]
            if day and day[0][0] % _D:  # say which day the first times belong to
                day[0] = (day[0][0], dt(day[0][0]).strftime("%d %b %H:%M"))
            return day
    start = dt(lo)
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
        out.append((t, dt(t).strftime("%b %Y" if months < 12 else "%Y")))


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
                f"{dt(ts[i]):%Y-%m-%d %H:%M} UTC</title></circle>"
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
            f"{dt(ts):%Y-%m-%d %H:%M} UTC"
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
