"""Where sweep trials run: in this process, one after another, or as Ray tasks.

Both pools run the same function (`backtest.sweep_trial.evaluate`) on the same inputs, so a
sweep's results do not depend on which pool ran it. The Ray pool puts each candle set into Ray's
object store once (`ray.put`); every task gets a reference, not a copy read from disk.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from backtest.sweep_trial import evaluate
from core.errors import ConfigError
from runner.app import ReplayInputs

log = logging.getLogger("vigil.sweep")

Task = tuple[str, dict[str, Any]]  # (inputs key, config data)


class Pool(Protocol):
    workers: int

    def share(self, key: str, inputs: ReplayInputs) -> None: ...

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yields (task index, result) as tasks finish, in any order."""
        ...

    def close(self) -> None: ...


class SerialPool:
    workers = 1

    def __init__(self, strategy_dirs: tuple[str, ...] = ()) -> None:
        self._inputs: dict[str, ReplayInputs] = {}
        self._dirs = strategy_dirs

    def share(self, key: str, inputs: ReplayInputs) -> None:
        self._inputs[key] = inputs

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, (key, config) in enumerate(tasks):
            yield i, evaluate(self._inputs[key], config, self._dirs)

    def close(self) -> None:
        self._inputs.clear()


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class RayPool:
    """A local Ray (started here with `workers` CPUs, no dashboard, no usage report) or an
    existing cluster at `address`. Shut down by `close`, which the sweep always calls."""

    def __init__(
        self, workers: int, address: str | None = None, strategy_dirs: tuple[str, ...] = ()
    ) -> None:
        self._dirs = strategy_dirs
        # Ray would otherwise try to send usage statistics over the network.
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        import ray

        self._ray = ray
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,  # not its notes on token auth and the like
            "configure_logging": True,
        }
        if address is not None:
            check_reachable(address)
        try:
            if address is None:
                # Loopback only: a local Ray's processes talk to each other, never the network.
                ray.init(num_cpus=workers, _node_ip_address="127.0.0.1", **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except Exception as exc:  # Ray raises many kinds (connection, timeout, disk, ...)
            what = f"--ray-address {address}: cannot join Ray" if address else "cannot start Ray"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConfigError(f"{what} ({first}); --workers 1 runs without Ray") from None
        cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]  # untyped in ray
        self.workers = workers if address is None else int(cpus)
        self._task = ray.remote(num_cpus=1, max_retries=0)(evaluate)
        self._refs: dict[str, Any] = {}

    def share(self, key: str, inputs: ReplayInputs) -> None:
        self._refs[key] = self._ray.put(inputs)

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
        ray = self._ray
        pending = {
            self._task.remote(self._refs[key], cfg, self._dirs): i
            for i, (key, cfg) in enumerate(tasks)
        }
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        # A worker died or the task raised outside evaluate's own handling.
                        msg = str(exc).strip().splitlines()[0][:300]
                        result = {"error": f"ray task failed: {type(exc).__name__}: {msg}"}
                    yield i, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        self._refs.clear()
        self._ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A quick TCP connect to HOST:PORT (also ray://HOST:PORT): ray.init would otherwise retry
    an unreachable head for minutes. "auto" (the cluster this machine belongs to) is left to Ray."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray-address {address}: cannot reach it ({exc.strerror or exc}); "
            "is the Ray head running? --workers N starts a local Ray instead"
        ) from None


def make_pool(workers: int, address: str | None, strategy_dirs: tuple[str, ...] = ()) -> Pool:
    """Ray when asked for more than one worker (or a cluster) and installed; serial otherwise.
    Without Ray the results are the same, only slower."""
    if address is None and workers <= 1:
        return SerialPool(strategy_dirs)
    if not ray_available():
        if address is not None:
            raise ConfigError(
                "--ray-address needs Ray: install the sweep extra, pip install 'vigil[sweep]'"
            )
        log.warning("Ray is not installed: running %s workers' trials serially", workers)
        return SerialPool(strategy_dirs)
    return RayPool(workers, address, strategy_dirs)
