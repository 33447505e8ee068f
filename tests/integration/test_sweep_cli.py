"""`vigil sweep` from outside: real subprocesses on generated candles, with and without Ray."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backtest.sweep_pool import ray_available
from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration

SPACE = """parameters:
  strategies.ema_cross.params.fast: {int: [4, 12]}
  strategies.ema_cross.params.slow: {int: [20, 40]}
  exits.stop_loss_pct: {float: [-6, -2], step: 0.5}
"""
# Blocks the import of ray in the child, as if it were not installed.
NO_RAY = (
    "import sys; sys.modules['ray'] = None; from runner.cli import main; "
    "sys.argv[0] = 'vigil'; sys.exit(main())"
)


def sweep_args(ws: Workspace, out: Path, workers: int, *extra: str) -> list[str]:
    space = out.parent / "space.yaml"
    space.write_text(SPACE)
    return [
        "sweep",
        "--strategy",
        "ema_cross",
        "--space",
        str(space),
        "--trials",
        "4",
        "--workers",
        str(workers),
        "--data",
        str(ws.candles),
        "--out",
        str(out),
        "--seed",
        "3",
        "--no-progress",
        *extra,
    ]


def run_sweep(ws: Workspace, out: Path, workers: int, *extra: str) -> str:
    r = ws.vigil(*sweep_args(ws, out, workers, *extra), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def trials(out: Path) -> dict:
    return json.loads((out / "trials.json").read_text())


@pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install '.[sweep]')")
def test_two_ray_workers_match_one_and_best_yaml_runs_a_backtest(ws: Workspace) -> None:
    one, two = ws.data / "one", ws.data / "two"
    ws.data.mkdir(parents=True, exist_ok=True)
    run_sweep(ws, one, 1)
    stdout = run_sweep(ws, two, 2)
    # Same seed and space: the same trials and the same results, byte for byte.
    assert (one / "trials.json").read_bytes() == (two / "trials.json").read_bytes()
    doc = trials(two)
    assert [t["state"] for t in doc["trials"]].count("complete") >= 1
    assert "4 trials completed" in stdout or "failed" in stdout
    for name in ("best_params.yaml", "report.html"):
        assert (two / name).is_file()
    html = (two / "report.html").read_text()
    assert "<svg" in html and "strategies.ema_cross.params.fast" in html

    # Paste the best parameters into a config and backtest it: the same figures as the trial.
    cfg = ws.data / "pasted"
    shutil.copytree(ws.config, cfg)
    shutil.copy(two / "best_params.yaml", cfg / "strategies.yaml")
    policy = yaml.safe_load((cfg / "policy.yaml").read_text()) or {}
    for section, keys in yaml.safe_load((two / "best_policy.yaml").read_text()).items():
        policy.setdefault(section, {}).update(keys)
    (cfg / "policy.yaml").write_text(yaml.safe_dump(policy))
    pasted = dataclasses.replace(ws, config=cfg)
    report = ws.data / "pasted.json"
    r = pasted.vigil(
        "backtest", "--data", str(ws.candles), "--output", str(report), "--no-progress"
    )
    assert r.returncode == 0, r.stderr
    best = next(t for t in doc["trials"] if t["number"] == doc["best"])
    assert json.loads(report.read_text())["summary"] == best["summary"]


def test_without_ray_two_workers_run_serially_with_the_same_results(ws: Workspace) -> None:
    ws.data.mkdir(parents=True, exist_ok=True)
    one, blocked = ws.data / "one", ws.data / "blocked"
    run_sweep(ws, one, 1)
    r = subprocess.run(
        [sys.executable, "-c", NO_RAY, *sweep_args(ws, blocked, 2), "--config", str(ws.config)],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "Ray is not installed" in r.stderr
    assert (one / "trials.json").read_bytes() == (blocked / "trials.json").read_bytes()
    assert (blocked / "best_params.yaml").is_file()


def test_more_trials_continue_the_same_storage(ws: Workspace) -> None:
    ws.data.mkdir(parents=True, exist_ok=True)
    out = ws.data / "grow"
    args = sweep_args(ws, out, 1)
    args[args.index("--trials") + 1] = "2"
    r = ws.vigil(*args, timeout=300)
    assert r.returncode == 0, r.stderr
    first = trials(out)["trials"]
    run_sweep(ws, out, 1)
    grown = trials(out)["trials"]
    assert len(grown) == 4 and grown[:2] == first


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("--strategy", "ema_crss"), "--strategy ema_crss: unknown strategy"),
        (("--metric", "profit"), "invalid choice: 'profit'"),
        (("--trials", "0"), "--trials: must be at least 1"),
        (("--test-to", "2024-01-05"), "--test-to needs --test-from"),
        # Nothing listens on port 1: refused at once (with Ray) or "needs Ray" (without).
        (("--ray-address", "127.0.0.1:1"), "--ray-address"),
    ],
)
def test_bad_arguments_exit_2_in_one_line(
    ws: Workspace, change: tuple[str, str], says: str
) -> None:
    ws.data.mkdir(parents=True, exist_ok=True)
    args = sweep_args(ws, ws.data / "bad", 1)
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    r = ws.vigil(*args)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("strategies.ema_cross.params.fastt: {int: [4, 12]}", "unknown field 'fastt'"),
        ("strategies.ema_cross.params.fast: {int: [1, 12]}", "1 out of bounds"),
        ("risk.max_open_positions: {int: [0, 3]}", "0 out of bounds"),
    ],
)
def test_bad_space_exits_2_naming_the_parameter(ws: Workspace, line: str, says: str) -> None:
    ws.data.mkdir(parents=True, exist_ok=True)
    args = sweep_args(ws, ws.data / "bad", 1)
    space = Path(args[args.index("--space") + 1])
    space.write_text("parameters:\n  " + line + "\n")
    r = ws.vigil(*args)
    assert r.returncode == 2, r.stderr
    name = line.split(":")[0]
    assert f"{space}: {name}" in r.stderr and says in r.stderr
    assert "Traceback" not in r.stderr
