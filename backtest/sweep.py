"""Parameter sweeps: optuna suggests configs, each trial is a full backtest (sweep_trial.py).

Determinism. Trials are asked in fixed-size batches (`batch`, independent of the number of
workers); no trial of a batch is asked before every trial of the previous batch is told. Each
ask uses a sampler seeded with (seed, trial number), so what a trial gets depends only on the
seed, its number and the finished trials before its batch, never on completion order, worker
count or the process that asks. Results are told as they finish: within a batch nothing is
asked, so tell order changes nothing.

Resume. Trials live in an optuna SQLite storage. A sweep interrupted mid-batch leaves RUNNING
trials; the next run with the same settings re-runs exactly those (their parameters were already
drawn) and fills the batch up to its boundary, so an interrupted sweep ends with the trials an
uninterrupted one would have. A lock file keeps two sweeps off one storage.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import optuna

from backtest.sweep_names import METRICS
from backtest.sweep_pool import Pool
from backtest.sweep_space import Space, apply_params
from backtest.sweep_trial import metric_value
from core.errors import AlreadyRunning, ConfigError
from runner.app import ReplayInputs

STUDY_NAME = "vigil-sweep"
log = logging.getLogger("vigil.sweep")

Progress = Callable[[int, int, float | None], None]  # (finished, total, best value so far)


@dataclass(frozen=True)
class SweepSpec:
    """Everything that decides a sweep's trials and results (stored with the study)."""

    strategies: tuple[str, ...]
    space: Space
    metric: str
    sampler: str
    seed: int
    batch: int
    base_config: dict[str, Any]  # the loaded config as JSON data, before overrides
    base_hash: str
    train: tuple[int, int]  # first and last cycle (ms)
    pairs: tuple[str, ...]
    data: str = ""  # data_fingerprint of the train candles
    # Directories of user strategies (absolute): every trial process loads them before it
    # validates its config, as `vigil backtest --strategy-path` would.
    strategy_dirs: tuple[str, ...] = ()

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        return METRICS[self.metric]

    def to_json(self) -> dict[str, Any]:
        return {
            "strategies": list(self.strategies),
            "space": self.space.to_json(),
            "metric": self.metric,
            "sampler": self.sampler,
            "seed": self.seed,
            "batch": self.batch,
            "base_config_hash": self.base_hash,
            "train": list(self.train),
            "pairs": list(self.pairs),
            "data": self.data,
            # only when set, so sweeps of built-in strategies keep their identity
            **({"strategy_dirs": list(self.strategy_dirs)} if self.strategy_dirs else {}),
        }

    def digest(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def trial_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The base config with exactly the swept strategies enabled and `params` applied."""
        data = apply_params(self.base_config, {})
        strategies = data.setdefault("strategies", {})
        for name in list(strategies):
            strategies[name]["enabled"] = name in self.strategies
        for name in self.strategies:
            strategies.setdefault(name, {})["enabled"] = True
        return apply_params(data, params)


def data_fingerprint(inputs: ReplayInputs) -> str:
    """A short hash of the candles a sweep scores on: replaced or grown candle files make a
    different sweep, not a resumed one with stale results."""
    h = hashlib.sha256()
    for sym, sr in sorted(inputs.series.items()):
        h.update(f"{sym}:{len(sr)}:{sr.first_ts}:{sr.last_ts}:".encode())
        h.update(sr.close.tobytes())
    return h.hexdigest()[:16]


@dataclass
class TrialRecord:
    number: int
    state: str  # complete, fail, running
    params: dict[str, Any]
    value: float | None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    config_hash: str | None = None
    equity: list[list[float]] = field(default_factory=list)
    start_cash: float = 0.0
    test: dict[str, Any] | None = None  # out-of-sample result, for the top trials


def _quiet_optuna() -> None:
    """optuna logs every trial at INFO and warns about experimental options (constant_liar):
    the sweep prints its own progress."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(spec: SweepSpec, number: int) -> Any:
    """The sampler for trial `number`: seeded from (seed, number) so that a trial's draw does
    not depend on which process or in what order trials were asked."""
    # Hashed, not seed + number: neighbouring seeds can give correlated first draws.
    digest = hashlib.sha256(f"{spec.seed}:{number}".encode()).digest()
    seed = int.from_bytes(digest[:4], "big")
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        # The sweep's own seed: GridSampler shuffles the grid with it, and every trial must see
        # the same order (optuna then gives trial n the n-th point).
        return _Grid(spec.space.grid(), seed=spec.seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class _Grid(optuna.samplers.GridSampler):
    """GridSampler without its stop at the end of the grid: that calls study.stop(), which only
    works inside study.optimize. The sweep caps --trials at the grid size itself."""

    def after_trial(self, *args: Any, **kwargs: Any) -> None:
        return None


class StorageLock:
    """An exclusive lock next to the storage file; a second sweep on it gets AlreadyRunning."""

    def __init__(self, storage: Path) -> None:
        self.path = storage.with_name(storage.name + ".lock")
        self._fh: IO[str] | None = None

    def __enter__(self) -> StorageLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise AlreadyRunning(
                f"another sweep (pid {holder}) is using {self.path.with_suffix('')}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


def open_study(spec: SweepSpec, storage: Path) -> Any:
    """Create the study, or load it when its stored settings are this spec's."""
    _quiet_optuna()
    storage.parent.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            storage=f"sqlite:///{storage}",
            study_name=STUDY_NAME,
            direction=spec.direction,
            load_if_exists=True,
        )
    except Exception as exc:  # sqlalchemy and optuna raise many kinds for a damaged file
        raise ConfigError(
            f"{storage}: cannot open the sweep storage ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})"
        ) from None
    stored = study.user_attrs.get("spec_digest")
    if stored is None:
        study.set_user_attr("spec_digest", spec.digest())
        study.set_user_attr("spec", spec.to_json())
    elif stored != spec.digest():
        raise ConfigError(
            f"{storage}: holds a sweep with other settings (strategy, space, metric, sampler, "
            "seed, batch, config, data window or candles); use another --storage or --out, or "
            "the same settings to resume it"
        )
    return study


def run_trials(
    spec: SweepSpec,
    study: Any,
    pool: Pool,
    trials: int,
    progress: Progress | None = None,
) -> None:
    """Run batches until `trials` trials have finished (resuming RUNNING ones first)."""
    running_state = optuna.trial.TrialState.RUNNING
    dists = spec.space.distributions()
    better = max if spec.direction == "maximize" else min
    while True:
        existing = study.get_trials(deepcopy=False)
        done = [t for t in existing if t.state.is_finished()]
        if len(done) >= trials:
            return
        # Trials left RUNNING by an interrupted run: their parameters are drawn, run them.
        stale = [t for t in existing if t.state == running_state]
        batch = [optuna.trial.Trial(study, t._trial_id) for t in stale]
        n = len(existing)
        # A batch ends on a multiple of `batch` trials, whether or not a run was interrupted.
        boundary = -(-n // spec.batch) * spec.batch if stale else n + spec.batch
        boundary = min(boundary, trials)
        for number in range(n, boundary):
            study.sampler = make_sampler(spec, number)
            batch.append(study.ask(dists))
        tasks = [("train", spec.trial_config(dict(t.params))) for t in batch]
        values = [t.value for t in done if t.state.name == "COMPLETE"]
        best = better(values) if values else None
        finished = len(done)
        for i, result in pool.run(tasks):
            trial = batch[i]
            value = _record(study, trial, result, spec.metric)
            finished += 1
            if value is not None:
                best = value if best is None else better(best, value)
            if progress is not None:
                progress(finished, trials, best)


def _record(study: Any, trial: Any, result: dict[str, Any], metric: str) -> float | None:
    for key in ("config_hash", "summary", "equity", "start_cash", "error"):
        if key in result:
            trial.set_user_attr(key, result[key])
    value = None if "error" in result else metric_value(result, metric)
    if value is None:
        if "error" not in result:
            trial.set_user_attr(
                "error", f"{metric} has no value for this trial (see docs/sweeps.md)"
            )
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        return None
    study.tell(trial.number, value)
    return value


def records(study: Any) -> list[TrialRecord]:
    out = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        out.append(
            TrialRecord(
                number=t.number,
                state=t.state.name.lower(),
                params=dict(t.params),
                value=t.value if t.state.name == "COMPLETE" else None,
                summary=dict(attrs.get("summary") or {}),
                error=attrs.get("error"),
                config_hash=attrs.get("config_hash"),
                equity=list(attrs.get("equity") or []),
                start_cash=float(attrs.get("start_cash") or 0.0),
            )
        )
    return out


def ranked(recs: Sequence[TrialRecord], direction: str) -> list[TrialRecord]:
    """Completed trials, best first; ties go to the lower trial number."""
    sign = -1.0 if direction == "maximize" else 1.0
    done = [r for r in recs if r.state == "complete" and r.value is not None]
    return sorted(done, key=lambda r: (sign * (r.value or 0.0), r.number))


def run_out_of_sample(
    spec: SweepSpec,
    study: Any,
    pool: Pool,
    top: Sequence[TrialRecord],
    test: tuple[int, int],
) -> None:
    """Re-run `top` on the test window (cached in the study) and attach the results."""
    key = f"test:{test[0]}:{test[1]}:"
    cached = study.user_attrs
    todo = [r for r in top if key + str(r.number) not in cached]
    tasks = [("test", spec.trial_config(r.params)) for r in todo]
    for i, result in pool.run(tasks):
        study.set_user_attr(key + str(todo[i].number), result)
    cached = study.user_attrs
    for r in top:
        r.test = cached.get(key + str(r.number))


def importance(study: Any, params: Sequence[str]) -> tuple[dict[str, float], str]:
    """Parameter importance by optuna's PED-ANOVA evaluator (numpy only, no scikit-learn);
    ({}, why) when it cannot be computed (too few completed trials, one parameter, ...)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(params) < 2:
        return {}, "importance needs at least two swept parameters"
    if len(complete) < 10:
        return {}, f"importance needs at least 10 completed trials (have {len(complete)})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            got = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return {}, f"importance could not be computed ({exc})"
    return {k: float(v) for k, v in got.items()}, "PED-ANOVA (optuna)"


def default_workers() -> int:
    return os.cpu_count() or 1
