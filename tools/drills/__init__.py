"""Failure drills: the real daemon against the fake exchange in a temporary directory, one
failure each, measured from outside. `vigil drill list|run` runs them (docs/runbook.md)."""
