"""The simulated exchange's account: free and reserved amounts per asset, and its fills.

`SimAccount` is the one owner of the money. Order entry reserves through `shift`, the matcher
settles fills and releases reserves through it, and every fill is recorded here; the exchange
reads `free`, `used` and `fills` and changes them only through these methods.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from decimal import Decimal

from core.models import ZERO, Balance, Fill


def balances(free: Mapping[str, Decimal], used: Mapping[str, Decimal]) -> dict[str, Balance]:
    return {
        a: Balance(asset=a, free=free.get(a, ZERO), used=used.get(a, ZERO))
        for a in sorted(set(free) | set(used))
    }


def _fill_ts(fill: Fill) -> int:
    return fill.ts


class SimAccount:
    """Free and used (reserved by live orders) amounts per asset, and every fill, by ts."""

    def __init__(self, starting_balances: Mapping[str, Decimal]) -> None:
        self.free: dict[str, Decimal] = {}
        self.used: dict[str, Decimal] = {}
        for asset, amount in starting_balances.items():
            if amount < 0:
                raise ValueError(f"starting balance of {asset} is negative ({amount})")
            self.free[asset] = amount
        self._balances: dict[str, Balance] | None = None
        self.fills: list[Fill] = []

    def shift(self, asset: str, free_delta: Decimal, used_delta: Decimal) -> None:
        self._balances = None
        # `or ZERO` keeps an emptied balance at a plain 0 rather than 0E-8 or 0.00000.
        if free_delta:
            self.free[asset] = (self.free.get(asset, ZERO) + free_delta) or ZERO
        if used_delta:
            self.used[asset] = (self.used.get(asset, ZERO) + used_delta) or ZERO

    def set_free(self, asset: str, free: Decimal) -> None:
        """Set an asset's free amount (tests, the fake server's admin hooks); `used` is kept."""
        if free < 0:
            raise ValueError(f"balance of {asset} must not be negative, got {free}")
        self.free[asset] = Decimal(free)
        self._balances = None

    def balances(self) -> dict[str, Balance]:
        # Cached until money moves: engines ask every cycle, money moves on fills only.
        if self._balances is None:
            self._balances = balances(self.free, self.used)
        return dict(self._balances)

    def record(self, fill: Fill) -> None:
        # Kept sorted by ts (stable), so fetch_my_trades(since_ms) finds its start
        # from the end instead of scanning them all.
        insort(self.fills, fill, key=_fill_ts)

    def restore(
        self, free: dict[str, Decimal], used: dict[str, Decimal], fills: Iterable[Fill]
    ) -> None:
        """Take a snapshot's balances and fills (already validated by sim_state)."""
        self.free, self.used = free, used
        self._balances = None
        self.fills = sorted(fills, key=_fill_ts)
