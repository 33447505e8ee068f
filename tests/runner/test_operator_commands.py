"""Operator command pieces without a daemon: finding one, the status page, argument checks."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from backtest.cli_backtest import _pairs
from core.errors import ConfigError
from core.models import BreakerState, EngineState
from infra.runtime_paths import PathSettings
from infra.settings_sections import HttpSettings
from runner import daemon_link, ops
from runner.cli import build_parser, check_range, parse_date_ms
from runner.ops_status import format_facts, path_facts, state_facts

ROOT = Path(__file__).resolve().parents[2]


def test_no_lock_or_a_dead_pid_is_no_daemon(tmp_path: Path) -> None:
    paths = PathSettings().resolved(tmp_path)
    assert daemon_link.find(paths, HttpSettings()) is None
    paths.data_dir.mkdir()
    paths.lock_file.write_text(json.dumps({"pid": 2**22 + 12345}))
    assert daemon_link.find(paths, HttpSettings()) is None


def test_a_live_pid_without_a_matching_status_has_no_url(tmp_path: Path) -> None:
    # Our own pid holds the "lock"; the port file points where nothing listens: the process
    # is found, but nothing that answers is believed to be it.
    paths = PathSettings().resolved(tmp_path)
    paths.health_dir.mkdir(parents=True)
    paths.lock_file.write_text(json.dumps({"pid": os.getpid()}))
    (paths.health_dir / "http_port").write_text("1\n")
    found = daemon_link.find(paths, HttpSettings())
    assert found == daemon_link.Daemon(os.getpid(), None)
    assert daemon_link.status(found) is None
    assert daemon_link.base_url(paths, HttpSettings(enabled=False)) is None
    assert daemon_link.base_url(paths, HttpSettings(host="0.0.0.0", allow_remote=True)) == (
        "http://127.0.0.1:1"
    )


def test_status_facts_read_for_a_person() -> None:
    state = EngineState(
        kill_switch=True,
        kill_reason="exchange incident",
        breakers={"api_errors": BreakerState("api_errors", tripped=True, reason="burst")},
    )
    facts = {
        "mode": "PAPER",
        "config_hash": "0123456789abcdef",
        "trading_state": "HALTED",
        **state_facts(state, {}, [], cash="9500.0088027515", last_cycle_ms=1_704_067_200_000),
        "paths": path_facts(PathSettings().resolved(Path("/srv/vigil"))),
    }
    text = format_facts(facts)
    assert "ENGAGED" in text and "exchange incident" in text
    assert "api_errors (burst)" in text
    assert "2024-01-01 00:00:00 UTC" in text
    assert "9,500.01" in text
    assert "/srv/vigil/data/KILL_SWITCH" in text


def test_every_audit_kind_written_in_the_sources_is_known() -> None:
    # The literal kind of every audit write in the daemon's code (metrics events and the
    # "missing" lists use the same verbs, so only audit writers are scanned).
    writer = re.compile(
        r"(?:recorder\.event|sink\.append|audit\.append|log\.append|self\.append|"
        r"(?<![\w.])append|_guarded_record|_audit_event|out\.append)"
        r"\(\s*(?:\(|loaded, paths, )?\"([a-z_]+)\""
    )
    written: set[str] = set()
    for folder in ("runner", "infra"):
        for path in (ROOT / folder).rglob("*.py"):
            written |= set(writer.findall(path.read_text()))
    assert {"cycle", "fill", "kill_switch", "shadow_order", "audit_recovered"} <= written
    missing = written - ops.AUDIT_KINDS
    assert not missing, f"add to ops.AUDIT_KINDS (and docs/audit.md): {sorted(missing)}"
    with pytest.raises(ConfigError, match=r"known kinds: .*fill"):
        ops.check_kinds(["fills"])
    assert ops.check_kinds(["fill", "cycle"]) == {"fill", "cycle"}


@pytest.mark.parametrize(
    ("text", "hint"),
    [("btcusdt", "BTC/USDT"), ("BTC-USDT", "BTC/USDT"), ("eth_btc", "ETH/BTC"), ("x", "BTC/USDT")],
)
def test_pairs_are_checked_and_a_spelling_suggested(text: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        _pairs(text)
    assert str(info.value).startswith(f"--pairs {text!r}: not a pair") and hint in str(info.value)
    assert _pairs("btc/usdt, ETH/USDT") == ["BTC/USDT", "ETH/USDT"]


def test_reversed_or_empty_ranges_are_refused() -> None:
    a, b = parse_date_ms("2024-01-01"), parse_date_ms("2024-02-01")
    check_range(a, b)
    check_range(None, b)
    with pytest.raises(ConfigError, match="--from 2024-02-01 is after --to 2024-01-01"):
        check_range(b, a)
    with pytest.raises(ConfigError, match="equals"):
        check_range(a, a)


def test_mode_flag_takes_any_case_and_ops_commands_take_replay() -> None:
    p = build_parser()
    assert p.parse_args(["run", "--mode", "paper"]).mode == "paper"  # validated by the loader
    for cmd in ("kill", "resume", "status"):
        assert p.parse_args([cmd, "--replay"]).replay is True
    assert p.parse_args(["audit", "verify", "--replay"]).replay is True


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_lock_is_not_taken_for_no_daemon(tmp_path: Path) -> None:
    paths = PathSettings().resolved(tmp_path)
    paths.data_dir.mkdir()
    paths.lock_file.write_text(json.dumps({"pid": os.getpid()}))
    paths.lock_file.chmod(0)
    with pytest.raises(PermissionError):
        daemon_link.find(paths, HttpSettings())
