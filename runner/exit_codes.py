"""Exit codes of every `vigil` command (documented in docs/cli.md)."""

OK = 0
FAILURE = 1  # a check failed (audit verify, audit replay mismatch, backtest compare) or a crash
CONFIG = 2  # malformed or contradictory configuration, bad arguments
ALREADY_RUNNING = 3  # another vigil holds the instance lock
# state.db failed its integrity check (quarantined), or is missing/empty beside an audit log
STATE_CORRUPTED = 4
AUDIT_CORRUPTED = 5  # the audit log's tail does not verify; the daemon refuses to start
# a file or directory vigil needs cannot be read or written (read-only, disk full, wrong type)
STORAGE = 6
