"""The sweep loop in process: determinism against completion order, resume, failures, locks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from backtest import sweep
from backtest.sweep_pool import SerialPool, Task
from backtest.sweep_space import parse_space
from backtest.synthetic import generate_candles
from core.errors import AlreadyRunning, ConfigError
from infra.candle_files import write_candles
from infra.settings import VigilConfig
from runner.app import ReplayInputs, prepare_replay

START = 1_704_067_200_000
PAIRS = ("BTC/USDT", "ETH/USDT")
SPACE = {
    "strategies.ema_cross.params.fast": {"int": [6, 20]},
    "strategies.ema_cross.params.slow": {"int": [8, 30]},  # some trials have fast >= slow
    "exits.stop_loss_pct": {"float": [-6, -2]},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> ReplayInputs:
    d = tmp_path_factory.mktemp("candles")
    for i, (pair, px) in enumerate(zip(PAIRS, (42_000.0, 2_300.0), strict=True)):
        series = generate_candles(
            pair,
            "5m",
            START,
            900,
            seed=5 + i,
            start_price=px,
            volatility=0.004,
            base_volume=2_000_000 / px,
        )
        write_candles(d / f"{pair.replace('/', '_')}-5m.feather", series)
    return prepare_replay(base_config(), d, warmup_candles=300)


def base_config() -> VigilConfig:
    return VigilConfig.model_validate(
        {"universe": {"symbols": PAIRS, "min_quote_volume_24h": 1_000_000}}
    )


def spec(inputs: ReplayInputs, *, sampler: str = "tpe", batch: int = 3) -> sweep.SweepSpec:
    cfg = base_config()
    return sweep.SweepSpec(
        strategies=("ema_cross",),
        space=parse_space(SPACE, ("ema_cross",), label="test"),
        metric="total_pnl_pct",
        sampler=sampler,
        seed=7,
        batch=batch,
        base_config=cfg.model_dump(mode="json"),
        base_hash="test",
        train=(inputs.start_ms, inputs.end_ms),
        pairs=PAIRS,
    )


class ReversedPool(SerialPool):
    """Finishes a batch's trials last-first, as a parallel pool might."""

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        results = list(super().run(tasks))
        yield from reversed(results)


class InterruptedPool(SerialPool):
    """Stops (as Ctrl-C would) after `after` results."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.left = after

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        for item in super().run(tasks):
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            yield item


def sweep_with(pool: SerialPool, s: sweep.SweepSpec, inputs: ReplayInputs, db: Path, n: int):
    pool.share("train", inputs)
    with sweep.StorageLock(db):
        study = sweep.open_study(s, db)
        sweep.run_trials(s, study, pool, n)
    return study


def outcome(study: Any) -> list[tuple]:
    return [(r.number, r.state, r.params, r.value, r.summary) for r in sweep.records(study)]


def test_completion_order_does_not_change_trials(inputs: ReplayInputs, tmp_path: Path) -> None:
    s = spec(inputs)
    a = sweep_with(SerialPool(), s, inputs, tmp_path / "a.db", 7)
    b = sweep_with(ReversedPool(), s, inputs, tmp_path / "b.db", 7)
    assert outcome(a) == outcome(b)
    assert len(outcome(a)) == 7
    states = {r.state for r in sweep.records(a)}
    assert "complete" in states


def test_invalid_combination_fails_the_trial_with_the_reason(
    inputs: ReplayInputs, tmp_path: Path
) -> None:
    study = sweep_with(SerialPool(), spec(inputs, sampler="random"), inputs, tmp_path / "r.db", 8)
    failed = [r for r in sweep.records(study) if r.state == "fail"]
    assert failed, "the space allows fast >= slow: some random trial must fail"
    for r in failed:
        assert (
            r.params["strategies.ema_cross.params.fast"]
            >= r.params["strategies.ema_cross.params.slow"]
        )
        assert "invalid config" in (r.error or "") and "fast" in (r.error or "")


def test_interrupted_sweep_resumes_to_the_same_trials(inputs: ReplayInputs, tmp_path: Path) -> None:
    s = spec(inputs)
    whole = sweep_with(SerialPool(), s, inputs, tmp_path / "whole.db", 7)
    db = tmp_path / "cut.db"
    with pytest.raises(KeyboardInterrupt):
        sweep_with(InterruptedPool(after=4), s, inputs, db, 7)  # mid second batch
    partial = sweep.records(sweep.open_study(s, db))
    assert [r.state for r in partial].count("running") == 2
    resumed = sweep_with(SerialPool(), s, inputs, db, 7)
    assert outcome(resumed) == outcome(whole)


def test_storage_refuses_other_settings_and_a_second_sweep(
    inputs: ReplayInputs, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    sweep_with(SerialPool(), spec(inputs), inputs, db, 1)
    with pytest.raises(ConfigError, match="holds a sweep with other settings"):
        sweep.open_study(spec(inputs, batch=4), db)
    with sweep.StorageLock(db), pytest.raises(AlreadyRunning), sweep.StorageLock(db):
        pass


def test_out_of_sample_results_are_cached(inputs: ReplayInputs, tmp_path: Path) -> None:
    s = spec(inputs, sampler="random")
    pool = SerialPool()
    study = sweep_with(pool, s, inputs, tmp_path / "o.db", 4)
    pool.share("test", inputs)
    top = sweep.ranked(sweep.records(study), s.direction)[:2]
    window = (inputs.start_ms, inputs.end_ms)
    sweep.run_out_of_sample(s, study, pool, top, window)
    # Same window, same config: the out-of-sample run equals the trial itself.
    assert [r.test["summary"] for r in top] == [r.summary for r in top]  # type: ignore[index]

    class Refuse(SerialPool):
        def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
            assert not tasks, "cached results must not be recomputed"
            return iter(())

    again = sweep.ranked(sweep.records(study), s.direction)[:2]
    sweep.run_out_of_sample(s, study, Refuse(), again, window)
    assert [r.test for r in again] == [r.test for r in top]


def test_grid_visits_every_combination_once(inputs: ReplayInputs, tmp_path: Path) -> None:
    grid = {
        "strategies.ema_cross.params.fast": {"int": [6, 8], "step": 2},
        "strategies.ema_cross.params.slow": {"choices": [20, 30]},
    }
    s = dataclasses.replace(
        spec(inputs, sampler="grid", batch=4),
        space=parse_space(grid, ("ema_cross",), label="test"),
    )
    study = sweep_with(ReversedPool(), s, inputs, tmp_path / "g.db", s.space.grid_size())
    seen = sorted(tuple(sorted(r.params.values())) for r in sweep.records(study))
    assert seen == [(6, 20), (6, 30), (8, 20), (8, 30)]


def test_ranking_follows_the_metric_direction_and_ties_go_to_the_first() -> None:
    recs = [
        sweep.TrialRecord(number=n, state=st, params={}, value=v)
        for n, st, v in [(0, "complete", 2.0), (1, "fail", None), (2, "complete", 5.0),
                         (3, "complete", 2.0), (4, "running", None)]
    ]  # fmt: skip
    assert [r.number for r in sweep.ranked(recs, "maximize")] == [2, 0, 3]
    assert [r.number for r in sweep.ranked(recs, "minimize")] == [0, 3, 2]
