"""SIGHUP, SIGQUIT and SIGUSR1 stop the LIVE daemon as SIGTERM does: resting orders canceled
on the fake exchange, a shutdown record, no PID file left, exit 0, also when a second signal
arrives during the shutdown (issue 12, section 5)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.integration.live_helpers import (
    RESTING_ENV,
    make_workspace,
    running,
    wait_until,
    watched_fake,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1])
async def test_stop_signal_cancels_resting_orders_and_exits_zero(
    tmp_path: Path, sig: signal.Signals
) -> None:
    async with asyncio.timeout(90), watched_fake(tmp_path / "data" / "audit") as fake:
        ws = make_workspace(tmp_path, fake.url, mode="LIVE", **RESTING_ENV)
        async with running(ws) as daemon:

            async def resting() -> bool:
                return (await fake.state())["open_orders"] >= 1

            await wait_until(resting, 60, daemon, what="a resting order on the fake")
            assert daemon.proc is not None
            daemon.proc.send_signal(sig)
            await asyncio.sleep(0.05)
            if daemon.proc.returncode is None:
                daemon.proc.send_signal(signal.SIGTERM)  # impatient operator: still exit 0
            rc = await asyncio.wait_for(daemon.proc.wait(), 30)
            assert rc == 0, daemon.stderr()[-3000:]
            assert f"{sig.name} received" in daemon.stderr()
            assert "Traceback" not in daemon.stderr()
        state = await fake.state()

    assert state["open_orders"] == 0
    last = ws.records()[-1]
    assert last["kind"] == "shutdown" and last["data"]["canceled"] >= 1, last
    assert not (ws.data / "vigil.pid").exists()
    assert not list(ws.data.rglob("*.lock"))
