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
