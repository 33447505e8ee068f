"""Command groups that other packages plug into `vigil`, through the `vigil.commands` group.

runner composes core, strategy and infra, and may not import backtest (tools/check_layers.py):
backtest drives runner, not the other way round. So the backtest package's commands (`vigil
backtest`, `backtest compare`, `download-data`, `data`, `sweep`) reach the command line as
entry points: each of backtest/cli_backtest.py, cli_data.py and cli_sweep.py exposes a
`CommandGroup` named in pyproject.toml under `[project.entry-points."vigil.commands"]`, and
`pip install` (the Makefile's `make .venv/.installed-stamp`) registers them. Any installed
package may add its own group the same way.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENTRY_POINT_GROUP = "vigil.commands"
OWN_DISTRIBUTION = "vigil"  # pyproject's [project] name

# add(subparsers, common, epilog): the BRIEF's `add_<topic>_commands` shape; `common` adds
# --config, --log-level and --log-format to a parser.
AddCommands = Callable[[Any, Callable[[argparse.ArgumentParser], None], str], None]


@dataclass(frozen=True, slots=True)
class CommandGroup:
    """One package's commands: how to add them to the parser, and how to run one."""

    add: AddCommands
    dispatch: Callable[[argparse.Namespace], int]
    # Two-word spellings of a command: ("backtest", "compare") -> "backtest-compare".
    aliases: Mapping[tuple[str, str], str] = field(default_factory=dict)


def installed_groups() -> dict[str, CommandGroup]:
    """The command groups installed packages offer, by entry-point name. One that cannot be
    loaded is left out with one line on stderr, so it cannot take the other commands (kill,
    status) down with it."""
    out: dict[str, CommandGroup] = {}
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(eps, key=lambda e: (e.name, e.value)):
        if ep.name in out:
            continue  # the same package seen twice on sys.path: the first wins
        try:
            group = ep.load()
        except Exception as exc:
            _skip(ep.name, ep.value, f"{type(exc).__name__}: {exc}")
            continue
        if not isinstance(group, CommandGroup):
            _skip(ep.name, ep.value, f"is a {type(group).__name__}, not a CommandGroup")
            continue
        out[ep.name] = group
    return out


def missing_install(command: str) -> str | None:
    """Why `command` may be unknown when vigil's own groups are absent: entry points exist
    only once an install registered them, so a checkout run from source, or an install older
    than the checkout, lacks its backtest commands. None when vigil's groups are installed."""
    try:
        dist = importlib.metadata.distribution(OWN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        state = "vigil is not installed in this Python"
    else:
        if any(ep.group == ENTRY_POINT_GROUP for ep in dist.entry_points):
            return None
        state = f"the installed vigil {dist.version} is older than its entry points"
    return (
        f"no command {command!r} here: part of vigil's commands are registered when it is "
        f"installed, and {state}; run `make` (or `pip install -e .`) in the checkout"
    )


def _skip(name: str, value: str, why: str) -> None:
    print(
        f"warning: commands {name} = {value} not loaded: {' '.join(why.split())}", file=sys.stderr
    )


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """`names` in the given order; names the order does not know follow, sorted."""
    known = [n for n in order if n in set(names)]
    return known + sorted(set(names) - set(order))


def expand_aliases(argv: list[str], groups: Mapping[str, CommandGroup]) -> list[str]:
    """`vigil backtest compare A B` -> `vigil backtest-compare A B`."""
    for group in groups.values():
        for words, command in group.aliases.items():
            if tuple(argv[: len(words)]) == words:
                return [command, *argv[len(words) :]]
    return argv
