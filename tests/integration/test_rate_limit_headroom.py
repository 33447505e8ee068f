"""Rate-limit headroom on /metrics (the dashboard's "rate-limit headroom"): the real daemon in
PAPER against the fake exchange, read from outside. Requests use part of the weight budget;
a 429 with Retry-After pauses every request and the headroom reads 0 until the pause ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.live_helpers import (
    cycles,
    make_workspace,
    running,
    wait_until,
    watched_fake,
)
from tests.integration.test_guards_live import sample

pytestmark = pytest.mark.integration

NAME = "vigil_rate_limit_headroom_ratio"


async def test_headroom_shows_the_budget_left_and_zero_while_paused(tmp_path: Path) -> None:
    async with asyncio.timeout(120), watched_fake(tmp_path / "data" / "audit") as fake:
        # a small budget, so one-second cycles use a visible share of it
        ws = make_workspace(tmp_path, fake.url, VIGIL_EXCHANGE__WEIGHT_PER_MINUTE="2000")
        async with running(ws) as daemon:
            await wait_until(lambda: len(cycles(ws.records())) >= 3, 60, daemon, what="cycles")
            _, text = await daemon.get("/metrics")
            weight = sample(text, NAME, budget="weight")
            orders = sample(text, NAME, budget="orders")
            assert f'{NAME}{{budget="weight"}}' in text and f'{NAME}{{budget="orders"}}' in text
            assert 0.0 < weight < 1.0, text
            assert 0.0 <= orders <= 1.0

            fake.add_fault(kind="rate_limit", retry_after_s=4, count=1)

            async def paused() -> bool:
                _, body = await daemon.get("/metrics")
                return sample(body, NAME, budget="weight") == 0.0

            await wait_until(paused, 20, daemon, what="headroom 0 during the Retry-After pause")

            async def back() -> bool:
                _, body = await daemon.get("/metrics")
                return sample(body, NAME, budget="weight") > 0.0

            await wait_until(back, 20, daemon, what="headroom back after the pause")
            assert await daemon.terminate() == 0
