from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from runner.flatten import Flattener, FlattenPacer, FlattenRequest, FlattenResult, SymbolOutcome


def test_request_round_trips_and_bad_ones_are_refused() -> None:
    req = FlattenRequest.new(("BTC/USDT",), "why", passive_seconds=2.0)
    assert FlattenRequest.parse(req.to_json()) == req
    for bad, match in (
        ("[]", "JSON object"),
        ('{"id": ""}', "non-empty id"),
        ('{"id": "x", "symbols": "BTC/USDT"}', "list of strings"),
        ('{"id": "x", "passive_seconds": -1}', "passive_seconds"),
        ('{"id": "x", "slippage_bps": 0}', "slippage_bps"),
    ):
        with pytest.raises(ValueError, match=match):
            FlattenRequest.parse(bad)


def test_result_ok_only_when_nothing_tradeable_is_left() -> None:
    flat = SymbolOutcome("BTC/USDT", "flat", "1", "0")
    dust = SymbolOutcome("ETH/USDT", "dust", "0.0001", "0.0001", "dust: below min")
    left = SymbolOutcome("SOL/USDT", "left", "3", "1", "orders did not fill in time")
    assert FlattenResult("a", (flat, dust), 1.0).ok
    assert not FlattenResult("a", (flat, left), 1.0).ok
    again = FlattenResult.parse(FlattenResult("a", (flat, left), 1.5).to_json())
    assert (
        again.outcomes[1].line() == "SOL/USDT: left (held 3, left 1): orders did not fill in time"
    )


class NoEngine:
    """A flattener that must never be reached: only refusals are exercised here."""


def test_a_damaged_request_is_refused_in_the_result_file(tmp_path: Path) -> None:
    (tmp_path / "FLATTEN").write_text("{not json")
    f = Flattener(engine=NoEngine(), now_ms=lambda: 0, data_dir=tmp_path)  # type: ignore[arg-type]
    assert f.pending() is None
    assert not (tmp_path / "FLATTEN").exists()
    assert json.loads((tmp_path / "FLATTEN.result").read_text())["error"]


def test_the_pacer_hands_on_the_inner_pacers_cycles(tmp_path: Path) -> None:
    class Inner:
        def __init__(self) -> None:
            self.n = 0

        async def next_cycle(self, stop: asyncio.Event) -> int | None:
            self.n += 1
            return None if self.n > 3 else self.n

    f = Flattener(engine=NoEngine(), now_ms=lambda: 0, data_dir=tmp_path)  # type: ignore[arg-type]
    pacer = FlattenPacer(Inner(), f, poll_s=0.01)

    async def go() -> list[int | None]:
        stop = asyncio.Event()
        return [await pacer.next_cycle(stop) for _ in range(4)]

    assert asyncio.run(go()) == [1, 2, 3, None]
    once = FlattenPacer(Inner(), f, once=True)
    assert asyncio.run(once.next_cycle(asyncio.Event())) is None


def test_trim_request_keeps_each_position_at_its_cap() -> None:
    from decimal import Decimal
    from types import SimpleNamespace

    from core.models import Market
    from runner.trim import TrimRule, trim_request

    def market(sym: str) -> Market:
        return Market(
            sym, sym[:3], "USDT", Decimal("0.01"), Decimal("0.001"), Decimal(0), Decimal(5)
        )

    close = SimpleNamespace
    engine = SimpleNamespace(
        last_decision=SimpleNamespace(equity=Decimal(10_000)),
        bank=SimpleNamespace(
            latest=lambda: {"BTC/USDT": close(close=100.0), "ETH/USDT": close(close=10.0)}
        ),
        portfolio=SimpleNamespace(
            positions={
                "BTC/USDT": SimpleNamespace(quantity=Decimal("6")),  # 600 > 500 * 1.1
                "ETH/USDT": SimpleNamespace(quantity=Decimal("54")),  # 540 within 550
            }
        ),
        markets={"BTC/USDT": market("BTC/USDT"), "ETH/USDT": market("ETH/USDT")},
    )
    req = trim_request(engine, TrimRule(Decimal(5), Decimal(10)))
    assert req is not None and req.symbols == ("BTC/USDT",)
    assert req.kept("BTC/USDT") == Decimal("5.000") and req.kept("ETH/USDT") == 0
    assert FlattenRequest.parse(req.to_json()) == req
    engine.portfolio.positions["BTC/USDT"] = SimpleNamespace(quantity=Decimal("5.4"))
    assert trim_request(engine, TrimRule(Decimal(5), Decimal(10))) is None
    with pytest.raises(ValueError, match="keep"):
        FlattenRequest.parse('{"id": "x", "keep": {"BTC/USDT": "-1"}}')
