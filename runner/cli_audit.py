"""`vigil audit verify`: its options (key, checkpoints) and output (docs/audit.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.errors import ConfigError
from infra.audit_format import Checkpoint, parse_checkpoint
from infra.audit_startup import VERIFIED_NAME, read_verified
from infra.audit_verify import verify
from infra.secrets import audit_key
from runner import exit_codes


def add_verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="SEQ:HASH",
        help="a checkpoint kept outside the log (the daemon logs `audit checkpoint seq=N "
        "hash=H`); the log must still hold that record. Repeatable",
    )
    p.add_argument(
        "--checkpoints",
        type=Path,
        metavar="FILE",
        help="a file of checkpoints: SEQ:HASH lines or the daemon's checkpoint log lines",
    )


def checkpoints_from(args: argparse.Namespace) -> list[Checkpoint]:
    found: list[Checkpoint] = []
    for text in args.checkpoint:
        cp = parse_checkpoint(text)
        if cp is None:
            raise ConfigError(
                f"--checkpoint {text!r}: not a checkpoint; fix: give SEQ:HASH, e.g. "
                "12:b1967dab876e1630 (16 to 64 hex digits of the hash)"
            )
        found.append(cp)
    if args.checkpoints is not None:
        try:
            lines = args.checkpoints.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"--checkpoints {args.checkpoints}: cannot be read ({exc.strerror}); fix: "
                "give a readable file of SEQ:HASH lines"
            ) from None
        from_file = [cp for cp in map(parse_checkpoint, lines) if cp is not None]
        if not from_file:
            raise ConfigError(
                f"--checkpoints {args.checkpoints}: no checkpoint in it; fix: give SEQ:HASH "
                "lines or `audit checkpoint seq=N hash=H` log lines"
            )
        found += from_file
    return found


def cmd_audit_verify(directory: Path, args: argparse.Namespace) -> int:
    key = audit_key(os.environ)
    marks = checkpoints_from(args)
    try:  # the writer's own last verified point counts as a checkpoint too (docs/audit.md)
        local = read_verified(directory, key)
    except ValueError as exc:
        print(f"note: {VERIFIED_NAME} not used: {exc}", file=sys.stderr)
        local = None
    if local is not None and local.seq:
        marks.append(Checkpoint(local.seq, local.hash))
    res = verify(directory, key=key, checkpoints=marks)
    if res.ok:
        print(res.summary())
        return exit_codes.OK
    print(res.summary(), file=sys.stderr)
    return exit_codes.FAILURE
