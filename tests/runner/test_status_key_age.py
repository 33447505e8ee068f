"""The API key's age in `vigil status`: days, deadline, and the overdue wording."""

from __future__ import annotations

from runner.checks import key_issued_ms
from runner.ops_status import DAY_MS, format_facts, key_age_facts


def test_key_age_counts_whole_days_and_says_when_rotation_is_overdue() -> None:
    issued = key_issued_ms({"VIGIL_API_KEY_ISSUED": "2026-10-01"})
    assert issued is not None
    assert key_age_facts(None, 90, issued) is None
    fresh = key_age_facts(issued, 90, issued + 41 * DAY_MS + 5_000)
    assert fresh == {
        "issued": "2026-10-01",
        "age_days": 41,
        "max_age_days": 90,
        "rotate_by": "2026-12-30",
        "overdue": False,
    }
    assert "api key age        41 days (rotate by 2026-12-30)" in format_facts({"api_key": fresh})
    late = key_age_facts(issued, 90, issued + 95 * DAY_MS)
    assert late is not None and late["overdue"] is True
    text = format_facts({"api_key": late})
    assert "api key age        95 days (rotation overdue since 2026-12-30)" in text
    assert "api key" not in format_facts({"api_key": None, "mode": "LIVE"})
