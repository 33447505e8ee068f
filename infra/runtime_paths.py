"""Where the daemon's runtime files live: the `paths` config section and the concrete absolute
paths it resolves to (state.db, audit log, kill switch, lock, health), the replay's own set too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from core.config import Frozen


@dataclass(frozen=True, slots=True)
class ResolvedPaths:
    """Every runtime path, made concrete (see PathSettings.resolved)."""

    data_dir: Path
    state_db: Path
    audit_dir: Path
    kill_switch: Path
    quarantine_dir: Path
    lock_file: Path
    health_dir: Path


REPLAY_SUBDIR = "replay"  # `vigil run --replay` keeps its runtime files in <data_dir>/replay


class PathSettings(Frozen):
    """Relative paths are taken relative to the directory that holds the config directory
    (for `--config config` in the repository: the repository root), never the working
    directory, so every command finds the same files from anywhere."""

    data_dir: Path = Field(
        default=Path("data"),
        description="Runtime data directory; the paths below default to files inside it. "
        "Relative paths are taken from the directory that holds the config directory. "
        "Replays keep their own files in <data_dir>/replay.",
    )
    state_db: Path | None = Field(
        default=None, description="SQLite state database; null means <data_dir>/state.db."
    )
    audit_dir: Path | None = Field(
        default=None, description="Audit log directory; null means <data_dir>/audit."
    )
    kill_switch: Path | None = Field(
        default=None,
        description="Kill-switch file: its existence halts trading; null means "
        "<data_dir>/KILL_SWITCH.",
    )
    quarantine_dir: Path | None = Field(
        default=None,
        description="Where corrupted files are copied aside; null means <data_dir>/quarantine.",
    )
    lock_file: Path | None = Field(
        default=None,
        description="Single-instance lock (pid file); null means <data_dir>/vigil.pid.",
    )
    health_dir: Path | None = Field(
        default=None, description="Health snapshots; null means <data_dir>/health."
    )

    def resolved(self, base: Path, *, replay: bool = False) -> ResolvedPaths:
        """Concrete absolute paths. Relative ones are taken relative to `base` (the loader
        passes the directory that holds the config directory, see LoadedConfig.paths); unset
        ones are derived from data_dir. With `replay`, every path is derived from
        <data_dir>/replay instead, whatever the others say: a replay never shares state.db,
        audit log, kill switch or lock with the live daemon."""

        def anchor(p: Path) -> Path:
            return Path(os.path.abspath(p if p.is_absolute() else base / p))

        data = anchor(self.data_dir)
        if replay:
            return PathSettings(data_dir=data / REPLAY_SUBDIR).resolved(base)

        def pick(value: Path | None, default_name: str) -> Path:
            return anchor(value) if value is not None else data / default_name

        return ResolvedPaths(
            data_dir=data,
            state_db=pick(self.state_db, "state.db"),
            audit_dir=pick(self.audit_dir, "audit"),
            kill_switch=pick(self.kill_switch, "KILL_SWITCH"),
            quarantine_dir=pick(self.quarantine_dir, "quarantine"),
            lock_file=pick(self.lock_file, "vigil.pid"),
            health_dir=pick(self.health_dir, "health"),
        )
