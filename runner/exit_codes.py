"""Exit codes of every `vigil` command (documented in docs/cli.md)."""

OK = 0
FAILURE = 1  # a check failed (audit verify, audit replay mismatch, backtest compare) or a crash
CONFIG = 2  # malformed or contradictory configuration, bad arguments, a data error
ALREADY_RUNNING = 3  # another vigil holds the instance lock
STATE_CORRUPTED = 4  # state.db failed its integrity check and was quarantined
AUDIT_CORRUPTED = 5  # the audit log's tail does not verify; the daemon refuses to start
NOT_RUNNING = 6  # kill/resume/status: no daemon runs with this config; acted on disk only
CLOCK_SKEW = 7  # LIVE refused to start: the host clock is off by more than clock.max_offset_ms
