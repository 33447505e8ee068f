"""Exit codes of every `vigil` command (documented in docs/cli.md)."""

OK = 0
FAILURE = 1  # a check failed (audit verify, audit replay mismatch, backtest compare) or a crash
CONFIG = 2  # malformed or contradictory configuration, bad arguments
ALREADY_RUNNING = 3  # another vigil holds the instance lock
STATE_CORRUPTED = 4  # state.db failed its integrity check and was quarantined
AUDIT_CORRUPTED = 5  # the audit log does not verify; the daemon refuses to extend it
