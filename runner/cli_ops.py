"""The operator's incident commands: alert test, debug-bundle, flatten (drills: tools/drills)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from infra.config_loader import LoadedConfig

OPS_COMMANDS = frozenset({"alert", "debug-bundle", "flatten"})


def add_ops_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    from runner.cli_alert import add_alert_commands

    add_alert_commands(sub, common, epilog)
    from runner.cli_debug import add_debug_commands

    add_debug_commands(sub, common, epilog)
    from runner.cli_flatten import add_flatten_commands

    add_flatten_commands(sub, common, epilog)


def dispatch_ops(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    if args.cmd == "alert":
        from runner.cli_alert import cmd_alert_test

        return cmd_alert_test(loaded, args.timeout)
    if args.cmd == "debug-bundle":
        from runner.cli_debug import cmd_debug_bundle

        return cmd_debug_bundle(loaded, args)
    if args.cmd == "flatten":
        from runner.cli_flatten import cmd_flatten

        return cmd_flatten(loaded, args, symbols=args.symbols)
    raise AssertionError(args.cmd)
