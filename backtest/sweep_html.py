"""The sweep report as one self-contained HTML page: best trials (with the out-of-sample score
beside the in-sample one), the metric against each parameter, parameter importance and the best
trial's equity curve. Charts are inline SVG drawn here or by backtest/html_charts.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from backtest.html_charts import BLUE, GREEN, GRID, MUTED, RED, bars_svg, equity_svg, nice_ticks
from backtest.html_report import _CSS
from backtest.report import iso_ms
from backtest.sweep import SweepSpec, TrialRecord
from backtest.sweep_report import test_value

W, H, L, R, T, B = 420, 240, 58, 12, 10, 40


def short(path: str) -> str:
    """A parameter's label: strategies.ema_cross.params.fast -> ema_cross.fast."""
    if path.startswith("strategies."):
        return path.removeprefix("strategies.").replace(".params.", ".", 1)
    return path


def _label(v: float) -> str:
    return f"{v:,.4g}"


def scatter_svg(
    name: str, points: Sequence[tuple[Any, float, int]], best: int | None, log: bool
) -> str:
    """Metric (y) against one parameter (x); categorical values are spread evenly."""
    if not points:
        return f'<p class="muted">no completed trial for {escape(name)}</p>'
    numeric = all(isinstance(p[0], int | float) and not isinstance(p[0], bool) for p in points)
    if numeric:
        xs = [float(p[0]) for p in points]
        cats: list[str] = []
    else:
        cats = sorted({repr(p[0]) for p in points})
        xs = [float(cats.index(repr(p[0]))) for p in points]
    ys = [p[1] for p in points]
    yt = nice_ticks(min(ys), max(ys), 5)
    x0, x1 = (min(xs), max(xs)) if numeric else (-0.5, len(cats) - 0.5)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if numeric:  # room for the dots at either end
        pad = (x1 - x0) * 0.04
        x0, x1 = x0 - pad, x1 + pad
    y0, y1 = yt[0], yt[-1] if yt[-1] > yt[0] else yt[0] + 1

    def px(x: float) -> float:
        return round(L + (x - x0) / (x1 - x0) * (W - L - R), 1)

    def py(y: float) -> float:
        return round(T + (y1 - y) / (y1 - y0) * (H - T - B), 1)

    body = []
    for v in yt:
        body.append(f'<line x1="{L}" y1="{py(v)}" x2="{W - R}" y2="{py(v)}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{L - 6}" y="{py(v) + 4}" text-anchor="end" class="ax">{_label(v)}</text>'
        )
    xticks = nice_ticks(x0, x1, 5) if numeric else list(range(len(cats)))
    for i, v in enumerate(xticks):
        if not x0 <= v <= x1:
            continue
        text = _label(v) if numeric else cats[i]
        body.append(
            f'<text x="{px(v)}" y="{H - B + 16}" text-anchor="middle" class="ax">'
            f"{escape(text)}</text>"
        )
    body.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#8c959f"/>')
    body.append(
        f'<text x="{(L + W - R) / 2}" y="{H - 4}" text-anchor="middle" class="lb">'
        f"{escape(name)}{' (log scale in sampling)' if log else ''}</text>"
    )
    for (raw, y, number), x in zip(points, xs, strict=True):
        color, r = (RED, 5) if number == best else (BLUE, 3.5)
        body.append(
            f'<circle cx="{px(x)}" cy="{py(y)}" r="{r}" fill="{color}" fill-opacity="0.7">'
            f"<title>trial #{number}: {escape(repr(raw))} -&gt; {_label(y)}</title></circle>"
        )
    return (
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{escape(name)}">{"".join(body)}</svg>'
    )


def _top_table(spec: SweepSpec, top: Sequence[TrialRecord], tested: bool) -> str:
    names = [p.path for p in spec.space.params]
    head = ["Trial", spec.metric] + ([f"test {spec.metric}"] if tested else [])
    head += ["trades", "max drawdown %", "total PnL %", *map(short, names)]
    rows = []
    for r in top:
        cells = [f"#{r.number}", r.value]
        if tested:
            cells.append(test_value(r, spec.metric))
        cells += [r.summary.get(k) for k in ("trades", "max_drawdown_pct", "total_pnl_pct")]
        cells += [r.params.get(n) for n in names]
        rows.append("".join(f"<td>{escape(_cell(c))}</td>" for c in cells))
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return (
        f'<div class="scroll"><table class="grid-t"><thead><tr>{th}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return _label(v)
    return str(v)


def render_sweep_html(
    spec: SweepSpec,
    recs: Sequence[TrialRecord],
    top: Sequence[TrialRecord],
    test: tuple[int, int] | None,
    importance: Mapping[str, float],
    importance_note: str,
    best_yaml: str,
) -> str:
    done = [r for r in recs if r.state == "complete" and r.value is not None]
    failed = [r for r in recs if r.state == "fail"]
    best = top[0] if top else None
    scatters = "".join(
        f"<figure><figcaption>{escape(p.path)}</figcaption>"
        + scatter_svg(
            p.path,
            [(r.params.get(p.path), float(r.value or 0.0), r.number) for r in done],
            best.number if best else None,
            p.log,
        )
        + "</figure>"
        for p in spec.space.params
    )
    if importance:
        imp = bars_svg({short(k): round(v * 1000) for k, v in importance.items()}, "importance")
        imp_html = f'<p class="muted">{escape(importance_note)}; in thousandths.</p>{imp}'
    else:
        imp_html = f'<p class="muted">{escape(importance_note)}</p>'
    equity = '<p class="muted">no completed trial</p>'
    if best is not None and best.equity:
        ts = [int(p[0]) for p in best.equity]
        eq = [float(p[1]) for p in best.equity]
        equity = equity_svg(ts, eq, best.start_cash or eq[0])
    window = f"{iso_ms(spec.train[0])[:16]}Z to {iso_ms(spec.train[1])[:16]}Z"
    test_line = f" &middot; test {iso_ms(test[0])[:16]}Z to {iso_ms(test[1])[:16]}Z" if test else ""
    failed_html = "".join(
        f"<pre>#{r.number}: {escape(r.error or r.state)}</pre>" for r in failed[:50]
    )
    title = f"vigil sweep: {', '.join(spec.strategies)} by {spec.metric}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>Sweep report</h1>
<div class="sub">{escape(", ".join(spec.strategies))} &middot; {escape(spec.metric)}
({escape(spec.direction)}) &middot; sampler {escape(spec.sampler)}, seed {spec.seed} &middot;
train {escape(window)}{test_line} &middot; {len(done)} completed, {len(failed)} failed</div>
<section><h2>Best trials</h2>{_top_table(spec, top, test is not None)}
<p class="muted">With a test window, each top trial was re-run out of sample; a test score far
below the train score is over-fitting.</p></section>
<section><h2>{escape(spec.metric)} against each parameter</h2>
<div class="legend muted"><span style="color:{BLUE}">&#9679; trial</span>
<span style="color:{RED}">&#9679; best trial</span></div>
<div class="multi">{scatters}</div></section>
<section class="two"><div><h2>Parameter importance</h2>{imp_html}</div>
<div><h2>Best parameters (best_params.yaml, best_policy.yaml)</h2>
<pre>{escape(best_yaml)}</pre></div></section>
<section><h2>Best trial's equity (train window)</h2>
<div class="legend muted"><span style="color:{BLUE}">&#9644; equity</span>
<span style="color:{MUTED}">&#8943; starting cash</span>
<span style="color:{GREEN}">trial #{best.number if best else "-"}</span></div>{equity}</section>
{f"<section><h2>Failed trials</h2>{failed_html}</section>" if failed else ""}
</main></body></html>
"""
