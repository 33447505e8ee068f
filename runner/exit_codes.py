"""Exit codes of every `vigil` command (documented in docs/cli.md)."""

OK = 0
FAILURE = 1  # a check failed (audit verify, audit replay mismatch, backtest compare), could
# not be completed (config check --markets: exchange unreachable), or a crash
CONFIG = 2  # malformed or contradictory configuration, bad arguments, a data error
ALREADY_RUNNING = 3  # another vigil holds the instance lock
# state.db failed its integrity check (quarantined), or is missing/empty beside an audit log
STATE_CORRUPTED = 4
AUDIT_CORRUPTED = 5  # the audit log does not verify; the daemon refuses to extend it
NOT_RUNNING = 6  # kill/resume/status: no daemon runs with this config; acted on disk only
CLOCK_SKEW = 7  # LIVE refused to start: the host clock is off by more than clock.max_offset_ms
# a file or directory vigil needs cannot be read or written (read-only, disk full, wrong type)
STORAGE = 8
