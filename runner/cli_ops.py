"""The operator's incident commands: `vigil alert test` and `vigil debug-bundle`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from infra.config_loader import LoadedConfig

OPS_COMMANDS = frozenset({"alert", "debug-bundle"})


def add_ops_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    from runner.cli_alert import add_alert_commands

    add_alert_commands(sub, common, epilog)
    from runner.cli_debug import add_debug_commands

    add_debug_commands(sub, common, epilog)


def dispatch_ops(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    if args.cmd == "alert":
        from runner.cli_alert import cmd_alert_test

        return cmd_alert_test(loaded, args.timeout)
    if args.cmd == "debug-bundle":
        from runner.cli_debug import cmd_debug_bundle

        return cmd_debug_bundle(loaded, args)
    raise AssertionError(args.cmd)
