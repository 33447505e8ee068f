"""A Binance-compatible fake spot exchange on 127.0.0.1, for tests and daemon runs.

Unmodified ccxt `binance` (URLs pointed at it) loads markets and trades against it; orders are
matched by the project's own sim engine; faults are switched on at runtime. docs/fake_exchange.md.
"""

from tools.fake_exchange.client import (
    ControlClient,
    ControlError,
    FakeProcess,
    bounded,
    ccxt_for,
    make_ccxt,
    running_fake,
    signed_request,
    spawn_fake,
)
from tools.fake_exchange.faults import FaultSpec
from tools.fake_exchange.server import FakeExchange, FakeStateError

__all__ = [
    "ControlClient",
    "ControlError",
    "FakeExchange",
    "FakeProcess",
    "FakeStateError",
    "FaultSpec",
    "bounded",
    "ccxt_for",
    "make_ccxt",
    "running_fake",
    "signed_request",
    "spawn_fake",
]
