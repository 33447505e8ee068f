"""The HTML report: one offline file, a chart per figure, every trade listed, text escaped."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from backtest.html_report import nice_ticks, render_html, time_ticks
from backtest.report import build_report
from backtest.runner import BacktestResult
from core.models import Position
from tests.backtest.test_report import PAIRS, T0, make_result

GREEN_MARK = 'fill="#1a7f37" stroke="#fff"'
RED_MARK = 'fill="#cf222e" stroke="#fff"'
VOID = {"meta", "line", "path", "rect", "circle"}


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")


def result_with_open_position() -> BacktestResult:
    res = make_result()
    last = res.trades[-1]
    res.trades[-1] = dataclasses.replace(last, exit_reason="<b>odd & reason</b>")
    res.positions = {
        "ETH/USDT": Position(
            symbol="ETH/USDT",
            quantity=Decimal("1.5"),
            avg_entry_price=Decimal("201.25"),
            entry_fees=Decimal("0.1"),
            opened_ms=res.equity_ts[150],
            peak_price=Decimal("205"),
            strategy="rules",
        )
    }
    return res


def render(res: BacktestResult) -> str:
    return render_html(build_report(res, version="9.9.9", wall_clock=False), res)


def test_page_is_one_self_contained_file(tmp_path: Path) -> None:
    html = render(result_with_open_position())
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    for external in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert external not in text, external
    checker = _Balance()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == []


def test_a_chart_per_figure() -> None:
    html = render(result_with_open_position())
    labels = re.findall(r'<svg [^>]*aria-label="([^"]+)"', html)
    assert labels == [
        "equity curve",
        "drawdown from peak",
        *(f"{p} close price with trades" for p in PAIRS),
        "no-trade reasons",
        "rejection reasons",
    ]
    assert html.count("<svg") == html.count("</svg>") == 6


def test_trades_are_listed_and_marked_on_price() -> None:
    res = result_with_open_position()
    html = render(res)
    assert html.count('<tr class="trade">') == len(res.trades) == 3
    assert html.count(GREEN_MARK) == 3 + 1  # entries and the open position
    assert html.count(RED_MARK) == 3
    assert "still open at the end" in html
    assert "Still open at the end" in html and "201.25" in html
    assert build_report(res, version="1", wall_clock=False)["final_positions"] == {
        "ETH/USDT": "1.5"
    }
    assert 'data-v="-10"' in html  # the losing trade's sortable PnL
    assert '<table class="sortable trades">' in html and "<script>" in html


def test_text_is_escaped() -> None:
    html = render(result_with_open_position())
    assert "<b>odd & reason</b>" not in html
    assert "&lt;b&gt;odd &amp; reason&lt;/b&gt;" in html


def test_header_cards_axes_and_reason_bars() -> None:
    html = render(result_with_open_position())
    for needle in ("9.9.9", "0123456789abcdef", "seed 7", "Profit factor", "Sortino",
                   "Max drawdown", "Exposure time", "Final equity", "10,015.30 USDT"):  # fmt: skip
        assert needle in html, needle
    equity = html[html.index('aria-label="equity curve"') : html.index("</svg>")]
    assert "01 Jan" in equity  # date labels on the time axis
    assert "10,000" in equity  # value labels on the y axis
    assert "NO_SIGNAL" in html and "150 " in html and "COOLDOWN" in html
    assert "BTC_USDT-5m.feather: 400/400 rows kept; OK" in html


def test_an_empty_run_still_renders() -> None:
    res = make_result()
    res.trades, res.fills, res.equity, res.equity_ts, res.exposed = [], [], [], [], []
    res.no_trade, res.rejections = Counter(), Counter()
    html = render(res)
    assert "no cycles were run" in html
    assert "No round trips were completed." in html
    assert html.count("<svg") == 6
    assert GREEN_MARK not in html


@pytest.mark.parametrize(
    ("lo", "hi"), [(9_812.3, 10_315.7), (0.000123, 0.000131), (-2.37, 0.0), (5.0, 5.0)]
)
def test_nice_ticks_cover_the_data(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi, 5)
    assert ticks[0] <= lo and ticks[-1] >= hi
    assert 2 <= len(ticks) <= 12
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1


@pytest.mark.parametrize("days", [0.2, 1, 4, 20, 180, 366, 1500])
def test_time_ticks_are_inside_the_range_and_increasing(days: float) -> None:
    lo, hi = T0 + 12_345, T0 + int(days * 86_400_000)
    ticks = time_ticks(lo, hi, 8)
    assert 2 <= len(ticks) <= 9
    times = [t for t, _ in ticks]
    assert times == sorted(times) and lo <= times[0] and times[-1] <= hi
    labels = [label for _, label in ticks]
    assert all(a != b for a, b in itertools.pairwise(labels))
    if days < 1:
        assert labels[0].startswith("01 Jan ")  # the first intraday tick names its day
