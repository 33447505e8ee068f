"""The cycle's next state is settled by value (core.stages.settle): a quiet cycle keeps the
prior state object, any field that changes is taken, and fields the cycle does not compute
carry over; a field added to the state takes part without any other edit."""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from core.models import BreakerState, EngineState, EquityMarks, Regime, RegimeState
from core.stages import StateUpdate, settle

# One value per StateUpdate field that differs from PRIOR's. A field added to StateUpdate
# without a sample here fails test_every_field_change_is_taken with its name.
PRIOR = EngineState(
    regime=RegimeState(Regime.BULL, None, 0, 1_000, 5),
    breakers=MappingProxyType({"stale_data": BreakerState("stale_data")}),
    cooldowns=MappingProxyType({"BTC/USDT": 10_000}),
    bans=MappingProxyType({}),
    kill_switch=False,
    kill_reason="",
    marks=EquityMarks(Decimal(100), 0, Decimal(100), 0, Decimal(100)),
)
CHANGED: dict[str, Any] = {
    "regime": RegimeState(Regime.BEAR, None, 0, 2_000, 6),
    "breakers": MappingProxyType(
        {"stale_data": BreakerState("stale_data", True, 5, 0, "data 900s old")}
    ),
    "cooldowns": MappingProxyType({}),
    "bans": MappingProxyType({"SOL/USDT": 99_000}),
    "kill_switch": True,
    "kill_reason": "operator",
    "marks": EquityMarks(Decimal(101), 0, Decimal(100), 0, Decimal(100)),
}


def _copy(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return dataclasses.replace(v)  # type: ignore[type-var]
    return MappingProxyType(dict(v)) if isinstance(v, MappingProxyType) else v


def as_computed(state: EngineState) -> StateUpdate:
    """The update a cycle that changes nothing computes: equal values, new objects."""
    return StateUpdate(**{k: _copy(getattr(state, k)) for k in StateUpdate._fields})


def test_equal_values_keep_the_prior_state_object() -> None:
    update = as_computed(PRIOR)
    assert update.regime is not PRIOR.regime and update.cooldowns is not PRIOR.cooldowns
    assert settle(PRIOR, update) is PRIOR


@pytest.mark.parametrize("name", StateUpdate._fields)
def test_every_field_change_is_taken(name: str) -> None:
    update = as_computed(PRIOR)._replace(**{name: CHANGED[name]})
    new = settle(PRIOR, update)
    assert new is not PRIOR and getattr(new, name) == CHANGED[name]
    for other in StateUpdate._fields:
        if other != name:
            assert getattr(new, other) is getattr(PRIOR, other)  # untouched: the prior's own


def test_the_cycle_computes_fields_the_state_has() -> None:
    state_fields = {f.name for f in dataclasses.fields(EngineState)}
    assert set(StateUpdate._fields) <= state_fields


def test_an_added_state_field_takes_part_without_other_edits() -> None:
    """A state with one more field, and an update computing it: settle compares and takes
    it with no change to settle; the same state updated without it carries it over."""

    @dataclasses.dataclass(frozen=True)
    class Wider(EngineState):
        streak: int = 0

    wider_update: Any = namedtuple("WiderUpdate", [*StateUpdate._fields, "streak"])
    prior = Wider(**{f.name: getattr(PRIOR, f.name) for f in dataclasses.fields(EngineState)})
    prior = dataclasses.replace(prior, streak=3)
    same = wider_update(*as_computed(prior), streak=3)
    assert settle(prior, same) is prior
    new = settle(prior, wider_update(*as_computed(prior), streak=4))
    assert isinstance(new, Wider) and new.streak == 4
    # A field the cycle does not compute is the runner's: carried over, never reset.
    moved = settle(prior, as_computed(prior)._replace(kill_switch=True))
    assert isinstance(moved, Wider) and moved.streak == 3 and moved.kill_switch
